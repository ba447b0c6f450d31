"""`rsrag search`: search an index by text or by image, as a table or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from rsrag.cli.common import ROOT_OPTION, user_errors


def search_command(
    query: Optional[str] = typer.Argument(None, help="Text query (or use --image)."),
    index: str = typer.Option(..., "--index", help="Index name."),
    root: Optional[Path] = ROOT_OPTION,
    image: Optional[Path] = typer.Option(None, "--image", help="Search by an image instead of text."),
    k: int = typer.Option(10, "--k", "-k", help="Number of results."),
    mode: str = typer.Option("hybrid", "--mode", help="Text search: dense | bm25 | hybrid (RRF)."),
    filters: List[str] = typer.Option([], "--filter",
                                      help="column=value (also != > >= < <=; a,b = either); repeat to AND."),
    where: Optional[str] = typer.Option(None, "--where", help="Raw SQL filter, e.g. \"label IN ('port', 'beach')\"."),
    bbox: Optional[str] = typer.Option(None, "--bbox", help="min_lon,min_lat,max_lon,max_lat over lon/lat columns."),
    as_json: bool = typer.Option(False, "--json", help='{"hits": [{"id", "score", "label", "path", "captions", ...}]}'),
) -> None:
    """Search an index by text or by image."""
    from rsrag.index.filters import parse_bbox
    from rsrag.index.library import Library

    with user_errors():
        if (query is None) == (image is None):
            raise ValueError("give either a text query or --image PATH")
        lib = Library.open(root, index)
        box = parse_bbox(bbox) if bbox else None
        if image is not None:
            hits = lib.search_image(image, k, filters=filters, where=where, bbox=box)
        else:
            hits = lib.search_text(query, k, mode=mode, filters=filters, where=where, bbox=box)
    if as_json:
        typer.echo(json.dumps({"hits": [h.to_dict() for h in hits]}, default=str))
        return
    _print_hits(hits, f"{len(hits)} hits in {index} for " + (f"image {image}" if image else f"{query!r} ({mode})"))


def _print_hits(hits, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col, kw in [("#", {"justify": "right"}), ("score", {"justify": "right"}), ("id", {}), ("label", {}),
                    ("caption", {"overflow": "fold", "ratio": 3}), ("path", {"overflow": "fold", "ratio": 2})]:
        table.add_column(col, **kw)
    for h in hits:
        table.add_row(str(h.rank), f"{h.score:.4f}", h.id, h.label or "", h.captions[0] if h.captions else "",
                      h.path or "")
    Console().print(table)
