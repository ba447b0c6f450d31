"""`rsrag ask`: answer a question about a library's knowledge and/or an image, with citations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from rsrag.cli.common import (AFTER_OPTION, BBOX_OPTION, BEFORE_OPTION, LIBRARY_OPTION, NEAR_OPTION, ROOT_OPTION,
                               WITHIN_OPTION, user_errors)


def ask_command(
    question: Optional[str] = typer.Argument(None, help="The question (may be omitted with --image)."),
    image: Optional[Path] = typer.Option(None, "--image", help="Query image."),
    index: str = LIBRARY_OPTION,
    root: Optional[str] = ROOT_OPTION,
    generator: str = typer.Option("extractive", "--generator", "-g", help="extractive, openai, ollama, hf, caption or vqa."),
    url: Optional[str] = typer.Option(None, "--url", help="openai: endpoint base URL, e.g. http://localhost:8000/v1; ollama: server URL."),
    model: Optional[str] = typer.Option(None, "--model", help="hf: local folder or hub id; openai, ollama: model name."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="openai: environment variable holding the API key (default OPENAI_API_KEY)."),
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
    bbox: Optional[str] = BBOX_OPTION,
    near: Optional[str] = NEAR_OPTION,
    within: Optional[Path] = WITHIN_OPTION,
    after: Optional[str] = AFTER_OPTION,
    before: Optional[str] = BEFORE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
    stream: bool = typer.Option(True, "--stream/--no-stream", help="Print the answer as it is generated (not with --json)."),
) -> None:
    """Answer a question about a library's knowledge and/or an image, with citations."""
    from rsrag.geo.filters import Place
    from rsrag.index import Library
    from rsrag.rag import Answer, ask_stream

    cfg = {key: value for key, value in (("url", url), ("model", model), ("gguf_file", gguf_file),
                                         ("api_key_env", api_key_env)) if value}
    printing = stream and not as_json
    with user_errors():
        place = Place.of(bbox=bbox, near=near, within=within, after=after, before=before)
        library = Library.open(root, index)
        pieces = ask_stream(
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
            place=place,
        )
        answer = None
        for piece in pieces:
            if isinstance(piece, Answer):
                answer = piece
            elif printing:
                typer.echo(piece, nl=False)
    if as_json:
        typer.echo(json.dumps(answer.to_dict(), indent=2, ensure_ascii=False))
        return
    typer.echo("" if printing else answer.text)
    for c in answer.citations:
        typer.echo(f"  [{c['n']}] {c['chunk_id']} ({c.get('name')})")
    typer.secho(f"  {answer.timings.get('total', 0):.0f} ms, generator {answer.generator}", dim=True, err=True)
