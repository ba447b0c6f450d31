"""`rsrag ask` and `rsrag knowledge ...` (mounted by rsrag/cli.py). Heavy imports stay inside commands."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

import typer

knowledge_app = typer.Typer(help="Attach knowledge records (typed text chunks) to a library.", no_args_is_help=True)
_ROOT = typer.Option(None, "--root", help="Folder holding the indexes (default: $RSRAG_INDEXES or ./indexes).")
_INDEX = typer.Option(..., "--index", "-i", help="Library (index) name.")


@contextmanager
def _user_errors() -> Iterator[None]:
    """Errors a user can act on: one red line, exit status 2, no traceback."""
    from rsrag.generators import GeneratorError
    from rsrag.imageio import ImageLoadError
    from rsrag.index.errors import LibraryError

    try:
        yield
    except (LibraryError, GeneratorError, ImageLoadError, FileNotFoundError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def ask_command(
    question: Optional[str] = typer.Argument(None, help="The question (may be omitted with --image)."),
    image: Optional[Path] = typer.Option(None, "--image", help="Query image."),
    index: str = _INDEX,
    root: Optional[Path] = _ROOT,
    generator: str = typer.Option("extractive", "--generator", "-g", help="extractive, hf or openai."),
    url: Optional[str] = typer.Option(None, "--url", help="openai: endpoint base URL, e.g. http://localhost:8000/v1."),
    model: Optional[str] = typer.Option(None, "--model", help="hf: local folder or hub id; openai: model name."),
    gguf_file: Optional[str] = typer.Option(None, "--gguf-file", help="hf: GGUF file inside --model."),
    task: Optional[str] = typer.Option(
        None, "--task", help="question, vqa, caption or classify (default: from inputs)."
    ),
    labels: Optional[str] = typer.Option(None, "--labels", help="classify: comma-separated label set."),
    k: int = typer.Option(5, "--k", help="Evidence items."),
    fusion: str = typer.Option("auto", "--fusion", help="auto (weighted with an image, else rrf), rrf or weighted."),
    alpha: float = typer.Option(0.5, "--alpha", help="weighted fusion: image weight."),
    no_bm25: bool = typer.Option(False, "--no-bm25", help="Leave BM25 out of the candidates."),
    no_rerank: bool = typer.Option(False, "--no-rerank", help="Skip cross-encoder re-ranking."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
) -> None:
    """Answer a question about a library's knowledge and/or an image, with citations."""
    from rsrag.index import Library
    from rsrag.rag import ask

    cfg = {key: value for key, value in (("url", url), ("model", model), ("gguf_file", gguf_file)) if value}
    with _user_errors():
        library = Library.open(root, index)
        answer = ask(
            library,
            question,
            str(image) if image else None,
            generator=generator,
            k=k,
            task=task,
            labels=[s.strip() for s in labels.split(",") if s.strip()] if labels else None,
            fusion=fusion,
            alpha=alpha,
            use_bm25=not no_bm25,
            rerank=not no_rerank,
            generator_config=cfg,
        )
    if as_json:
        typer.echo(json.dumps(answer.to_dict(), indent=2, ensure_ascii=False))
        return
    typer.echo(answer.text)
    for c in answer.citations:
        typer.echo(f"  [{c['n']}] {c['chunk_id']} ({c.get('name')})")
    typer.secho(f"  {answer.timings.get('total', 0):.0f} ms, generator {answer.generator}", dim=True, err=True)


@knowledge_app.command("add")
def knowledge_add(
    files: List[Path] = typer.Argument(..., help="Knowledge JSONL files (one record per line)."),
    index: str = _INDEX,
    root: Optional[Path] = _ROOT,
) -> None:
    """Validate and add knowledge records; a malformed file is refused whole (nothing stored changes)."""
    from rsrag.index import Library
    from rsrag.knowledge import KnowledgeBase, read_jsonl

    with _user_errors():
        records = [rec for f in files for rec in read_jsonl(f)]  # every file parsed before any write
        kb = KnowledgeBase.attach(Library.open(root, index))
        typer.echo(json.dumps(kb.add(records).to_dict()))


@knowledge_app.command("rswk")
def knowledge_rswk(
    index: str = _INDEX,
    root: Optional[Path] = _ROOT,
    all_landmarks: bool = typer.Option(False, "--all", help="Also the landmarks with measurements only."),
    export: Optional[Path] = typer.Option(None, "--export", help="Write the records as JSONL instead of adding them."),
) -> None:
    """Convert the RSWK annotations (under $RSRAG_DATA/rswk) into knowledge records and add them."""
    from rsrag.index import Library
    from rsrag.knowledge import KnowledgeBase, convert_rswk, write_jsonl

    with _user_errors():
        records = convert_rswk(all_landmarks=all_landmarks)
        if export is not None:
            write_jsonl(records, export)
            typer.echo(f"wrote {len(records)} records to {export}")
            return
        kb = KnowledgeBase.attach(Library.open(root, index))
        typer.echo(json.dumps(kb.add(records).to_dict()))
