"""`rsrag caption` and `rsrag vqa`: run the image models (captioner, VQA) on image files."""

from __future__ import annotations

import json
from typing import Optional

import typer

from rsrag.cli.common import fail, user_errors


def caption_command(
    images: list[str] = typer.Argument(..., help="image files"),
    captioner: Optional[str] = typer.Option(None, "--captioner", "-c", help="captioner weights (default: committed)"),
    beam_size: int = typer.Option(3, "--beam-size", help="beam width; 1 = greedy"),
    index: Optional[str] = typer.Option(None, "--index", help="retrieve neighbour captions from this index"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Caption images. Unreadable images are reported on stderr (exit code 1); the rest are captioned."""
    from rsrag.imageio import ImageLoadError, load_image
    from rsrag.models.captioner import load_captioner

    with user_errors():
        model = load_captioner(captioner, index=index)
    loaded, failed = [], []
    for path in images:
        try:
            loaded.append((path, load_image(path)))
        except ImageLoadError as exc:
            failed.append({"image": path, "error": str(exc)})
            typer.echo(f"error: {exc}", err=True)
    texts = model.caption([img for _, img in loaded], beam_size=beam_size) if loaded else []
    rows = [{"image": path, "caption": text} for (path, _), text in zip(loaded, texts)]
    if as_json:
        typer.echo(json.dumps({"captioner": model.name, "captions": rows, "errors": failed}, indent=2))
    else:
        for row in rows:
            typer.echo(f"{row['image']}\t{row['caption']}")
    if failed:
        raise typer.Exit(1)


def vqa_command(
    image: str = typer.Argument(..., help="image file"),
    question: str = typer.Argument(..., help='e.g. "What kind of place is shown?"'),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="VQA weights (default: the committed vqa-rs-lite)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Answer a question about an image (scene type, presence, counting, comparison)."""
    from rsrag.imageio import ImageLoadError
    from rsrag.models.vqa import load_vqa

    with user_errors():
        try:
            result = load_vqa(model).answer(image, question)
        except ImageLoadError as exc:  # an unreadable image: status 1, as for `rsrag caption`
            fail(exc, 1)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        flag = "  (unsure)" if result.unknown else ""
        typer.echo(f"{result.answer}\t{result.confidence:.2f}\t{result.question_type}{flag}")
