"""`rsrag serve`: the HTTP service (search, QA, caption and VQA API plus a web page) over one index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from rsrag.cli.common import ROOT_OPTION, user_errors


def generator_settings(generator: Optional[str], url: Optional[str], model: Optional[str],
                       api_key_env: Optional[str], config: Optional[Path]) -> dict[str, dict[str, Any]]:
    """The generators to enable: extractive always, plus one from the flags and any from a JSON config
    file (`{"generators": {"openai": {"url": ..., "model": ..., "api_key_env": "MY_KEY"}}}`). Keys are
    named by their environment variable, never given on the command line or in the file."""
    enabled: dict[str, dict[str, Any]] = {"extractive": {}}
    if config is not None:
        try:
            data = json.loads(config.read_text())
            entries = data["generators"]
            if not isinstance(entries, dict) or not all(isinstance(v, dict) for v in entries.values()):
                raise TypeError
        except (OSError, ValueError, KeyError, TypeError):
            raise ValueError(f"{config}: expected a JSON object {{\"generators\": {{name: {{url, model, ...}}}}}}") from None
        for name, cfg in entries.items():
            if any("key" in k.lower() and k != "api_key_env" for k in cfg):
                raise ValueError(f"{config}: {name}: put the API key in an environment variable and name it "
                                 f"with api_key_env, not in the file")
            enabled[name] = dict(cfg)
    if generator:
        cfg = {k: v for k, v in (("url", url), ("model", model), ("api_key_env", api_key_env)) if v}
        enabled[generator] = {**enabled.get(generator, {}), **cfg}
    return enabled


def serve_command(
    index: str = typer.Option(..., "--index", help="Index name to serve."),
    root: Optional[str] = ROOT_OPTION,
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    text_precision: str = typer.Option("auto", "--text-precision",
                                       help="Query text encoding: auto (int8 where the encoder has it, 2.4x faster), fp32, int8."),
    allowed_hosts: Optional[str] = typer.Option(None, "--allowed-hosts",
                                                help="Comma-separated Host headers to answer (default: $RSRAG_ALLOWED_HOSTS, else any)."),
    generator: Optional[str] = typer.Option(None, "--generator", "-g",
                                            help="Enable this QA generator beside extractive: openai, ollama, hf, caption, vqa."),
    url: Optional[str] = typer.Option(None, "--url", help="openai: endpoint base URL (http://host:8000/v1); ollama: server URL."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name (openai, ollama) or local folder (hf)."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env",
                                              help="Name of the environment variable holding the API key (default OPENAI_API_KEY)."),
    config: Optional[Path] = typer.Option(None, "--generators-config",
                                          help='JSON file: {"generators": {name: {url, model, api_key_env, ...}}}.'),
) -> None:
    """Serve an index over HTTP: search, QA, caption and VQA API plus a web page at / (writes need RSRAG_API_TOKEN)."""
    from rsrag.service import serve

    with user_errors():  # e.g. no such index: one line, not a traceback
        generators = generator_settings(generator, url, model, api_key_env, config)
        serve(index, root, host=host, port=port, text_precision=text_precision,
              allowed_hosts=[h.strip() for h in allowed_hosts.split(",") if h.strip()] if allowed_hosts else None,
              generators=generators)


def router_command(
    index: str = typer.Option(..., "--index", help="Sharded index name (built with `rsrag index build --shards N`)."),
    replicas: list[str] = typer.Option(..., "--replica", help="Base URL of a replica, a `rsrag serve --index "
                                                              "NAME.00i` over the same ROOT (repeat)."),
    root: Optional[str] = ROOT_OPTION,
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8080, "--port"),
) -> None:
    """Serve one /search over a sharded index's replicas: each request goes to the shards it can reach, merged."""
    from rsrag.service.router import serve_router

    with user_errors():
        serve_router(root, index, replicas, host=host, port=port)
