"""`rsrag knowledge add|rswk`: attach knowledge records (typed text chunks) to a library."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from rsrag.cli.common import LIBRARY_OPTION, ROOT_OPTION, user_errors

app = typer.Typer(help="Attach knowledge records (typed text chunks) to a library.", no_args_is_help=True)


@app.command("add")
def knowledge_add(
    files: List[Path] = typer.Argument(..., help="Knowledge JSONL files (one record per line)."),
    index: str = LIBRARY_OPTION,
    root: Optional[str] = ROOT_OPTION,
) -> None:
    """Validate and add knowledge records; a malformed file is refused whole (nothing stored changes)."""
    from rsrag.index import Library
    from rsrag.knowledge import KnowledgeBase, read_jsonl

    with user_errors():
        records = [rec for f in files for rec in read_jsonl(f)]  # every file parsed before any write
        kb = KnowledgeBase.attach(Library.open(root, index))
        typer.echo(json.dumps(kb.add(records).to_dict()))


@app.command("rswk")
def knowledge_rswk(
    index: str = LIBRARY_OPTION,
    root: Optional[str] = ROOT_OPTION,
    all_landmarks: bool = typer.Option(False, "--all", help="Also the landmarks with measurements only."),
    export: Optional[Path] = typer.Option(None, "--export", help="Write the records as JSONL instead of adding them."),
) -> None:
    """Convert the RSWK annotations (under $RSRAG_DATA/rswk) into knowledge records and add them."""
    from rsrag.index import Library
    from rsrag.knowledge import KnowledgeBase, convert_rswk, write_jsonl

    with user_errors():
        records = convert_rswk(all_landmarks=all_landmarks)
        if export is not None:
            write_jsonl(records, export)
            typer.echo(f"wrote {len(records)} records to {export}")
            return
        kb = KnowledgeBase.attach(Library.open(root, index))
        typer.echo(json.dumps(kb.add(records).to_dict()))
