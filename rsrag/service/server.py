"""Run the API under uvicorn (one worker: the process holds the index and its models in memory)."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def serve(index: str, root: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000,
          log_level: str = "info", access_log: bool = False) -> None:
    """Open index NAME under ROOT and serve it until interrupted (the access log costs time per
    request, so it is off unless asked for)."""
    import uvicorn

    from rsrag.index import Library
    from rsrag.service.app import create_app

    app = create_app(Library.open(root, index))
    uvicorn.run(app, host=host, port=port, workers=1, log_level=log_level, access_log=access_log)


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
