"""Run the API under uvicorn (one worker: the process holds the index and its models in memory).

Connection guards (`ServerLimits`), so slow or many clients cannot hold the server:
- a client has `header_timeout` seconds from connecting (or from the previous response on a
  kept-alive connection) to send a complete request head, else the connection is closed
  (uvicorn itself times out only idle kept-alive connections, and any byte resets that timer);
- the request body must arrive within `UploadLimits.body_timeout` (the app answers 408);
- an idle kept-alive connection is closed after `keep_alive` seconds;
- above `max_connections` open connections (or requests in progress) uvicorn answers 503;
- a request head larger than `max_header_bytes` is refused (h11's incomplete-event limit).
In production put a reverse proxy (nginx, Caddy) in front for TLS and its own client timeouts.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

TEXT_PRECISIONS = ("auto", "fp32", "int8")


@dataclass(frozen=True)
class ServerLimits:
    """Connection-level limits of `serve` (see the module doc)."""

    header_timeout: float = 10.0
    keep_alive: int = 5
    max_connections: int = 256
    max_header_bytes: int = 16 * 1024


def _protocol_class(header_timeout: float) -> type:
    """uvicorn's h11 protocol with a deadline for each request head."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutProtocol(H11Protocol):
        """Closes a connection on which no complete request head arrived within `header_timeout`
        of connecting or of the previous response (a client dribbling a head, or still sending
        the rest of a body the server already answered)."""

        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_head_timer()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._request_in_progress():
                self._cancel_head_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_head_timer()  # the next request on this connection gets its own deadline

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

        def _request_in_progress(self) -> bool:
            return self.cycle is not None and not self.cycle.response_complete

        def _arm_head_timer(self) -> None:
            self._cancel_head_timer()
            self._head_timer = self.loop.call_later(header_timeout, self._head_timed_out)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if not self._request_in_progress() and not self.transport.is_closing():
                self.logger.info("closing a connection that sent no complete request head in %gs", header_timeout)
                self.transport.close()

    return HeaderTimeoutProtocol


def server_options(limits: ServerLimits = ServerLimits()) -> dict[str, Any]:
    """uvicorn options for `limits` (one worker, the timeouts and connection limits), shared by
    `serve` and the tests' `running_server`."""
    return {"workers": 1, "http": _protocol_class(limits.header_timeout), "timeout_keep_alive": limits.keep_alive,
            "limit_concurrency": limits.max_connections, "h11_max_incomplete_event_size": limits.max_header_bytes}


def serve(index: str, root: str | Path | None = None, host: str = "127.0.0.1", port: int = 8000,
          log_level: str = "info", access_log: bool = False, text_precision: str = "auto",
          allowed_hosts: Sequence[str] | None = None, limits: ServerLimits = ServerLimits(),
          generators: Sequence[str] | Mapping[str, Mapping[str, Any]] = ("extractive",)) -> None:
    """Open index NAME under ROOT and serve it until interrupted (the access log costs time per
    request, so it is off unless asked for). `allowed_hosts`: see `create_app`.

    Query texts are encoded with int8 text weights where the encoder has them (`text_precision`
    "auto"; rs-lite does): encoding is most of a text search's CPU, and int8 cuts it 2.4x, which is
    what keeps /search fast under concurrent load on a small CPU, at the same quality (mR 17.73 / 50.65 against 17.82 / 50.19 on
    RSICD / UCM test; README, "Service"). "fp32" keeps full precision; "int8" insists on it."""
    import uvicorn

    from rsrag.index import Library
    from rsrag.service.app import create_app

    app = create_app(Library.open(root, index, encoder_options=query_encoder_options(root, index, text_precision)),
                     allowed_hosts=allowed_hosts, generators=generators)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log, **server_options(limits))


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
def running_server(app, host: str = "127.0.0.1", timeout: float = 20.0,
                   limits: ServerLimits = ServerLimits()) -> Iterator[str]:
    """Run `app` under uvicorn (configured as `serve` does) in a background thread on a free port;
    yields its base URL.

    The socket is bound before uvicorn starts (port 0), so there is no race for the port. Used by
    the tests, which want a real HTTP server in the same process as their injected components.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                           **server_options(limits)))
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
