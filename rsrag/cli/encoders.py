"""`rsrag encoders list`: the image-text encoders."""

from __future__ import annotations

import typer

app = typer.Typer(help="Inspect image-text encoders.", no_args_is_help=True)


@app.command("list")
def list_encoders_cmd() -> None:
    """Encoder names accepted by --encoder."""
    from rsrag.encoders import list_encoders

    for name in list_encoders():
        typer.echo(name)
