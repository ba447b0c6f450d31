"""`rsrag serve`: the HTTP service (search, QA, caption and VQA API plus a web page) over one index."""

from __future__ import annotations

from typing import Optional

import typer

from rsrag.cli.common import ROOT_OPTION, user_errors


def serve_command(
    index: str = typer.Option(..., "--index", help="Index name to serve."),
    root: Optional[str] = ROOT_OPTION,
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    text_precision: str = typer.Option("auto", "--text-precision",
                                       help="Query text encoding: auto (int8 where the encoder has it, 2.4x faster), fp32, int8."),
    allowed_hosts: Optional[str] = typer.Option(None, "--allowed-hosts",
                                                help="Comma-separated Host headers to answer (default: $RSRAG_ALLOWED_HOSTS, else any)."),
) -> None:
    """Serve an index over HTTP: search, QA, caption and VQA API plus a web page at / (writes need RSRAG_API_TOKEN)."""
    from rsrag.service import serve

    with user_errors():  # e.g. no such index: one line, not a traceback
        serve(index, root, host=host, port=port, text_precision=text_precision,
              allowed_hosts=[h.strip() for h in allowed_hosts.split(",") if h.strip()] if allowed_hosts else None)
