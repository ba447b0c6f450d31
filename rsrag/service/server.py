"""Run the API under uvicorn (one worker: the process holds the index and its models in memory)."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


TEXT_PRECISIONS = ("auto", "fp32", "int8")


def serve(index: str, root: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000,
          log_level: str = "info", access_log: bool = False, text_precision: str = "auto") -> None:
    """Open index NAME under ROOT and serve it until interrupted (the access log costs time per
    request, so it is off unless asked for).

    Query texts are encoded with int8 text weights where the encoder has them (`text_precision`
    "auto"; rs-lite does): encoding is most of a text search's CPU, and int8 cuts it 2.4x, which is
    what keeps /search fast under concurrent load on a small CPU, at the same quality (mR 17.73 / 50.65 against 17.82 / 50.19 on
    RSICD / UCM test; README, "Service"). "fp32" keeps full precision; "int8" insists on it."""
    import uvicorn

    from rsrag.index import Library
    from rsrag.service.app import create_app

    app = create_app(Library.open(root, index, encoder_options=query_encoder_options(root, index, text_precision)))
    uvicorn.run(app, host=host, port=port, workers=1, log_level=log_level, access_log=access_log)


def query_encoder_options(root: str | Path | None, index: str, text_precision: str) -> dict:
    """`encoder_options` for the served index's encoder under the `text_precision` policy."""
    from rsrag.encoders import encoder_accepts
    from rsrag.index import Library

    if text_precision not in TEXT_PRECISIONS:
        raise ValueError(f"text_precision must be one of {TEXT_PRECISIONS}, not {text_precision!r}")
    if text_precision == "fp32":
        return {}
    manifest = next((m for m in Library.list(root) if m.get("name") == index), None)
    name = (manifest or {}).get("encoder", {}).get("name")
    if name is None:  # no such index: Library.open says so with the indexes that exist
        return {}
    if encoder_accepts(name, "text_precision"):
        return {"text_precision": "int8"}
    if text_precision == "int8":
        raise ValueError(f"encoder {name!r} of index {index!r} has no int8 text path; use text_precision 'fp32'")
    return {}


@contextmanager
def running_server(app, host: str = "127.0.0.1", timeout: float = 20.0) -> Iterator[str]:
    """Run `app` under uvicorn in a background thread on a free port; yields its base URL.

    The socket is bound before uvicorn starts (port 0), so there is no race for the port. Used by
    the tests, which want a real HTTP server in the same process as their injected components.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
