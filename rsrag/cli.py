"""The `rsrag` command line: one typer app, with a sub-app per area of the package."""

from __future__ import annotations

import json
import logging
import shlex
import sys
from typing import Optional

import typer

from rsrag.eval.cli import app as eval_app
from rsrag.index.cli import app as index_app
from rsrag.index.cli import search_command
from rsrag.rag.cli import ask_command, knowledge_app

app = typer.Typer(help="rsrag: multimodal RAG and vector search for remote-sensing imagery.", no_args_is_help=True)
train_app = typer.Typer(help="Train the models that live inside rsrag.", no_args_is_help=True)
encoders_app = typer.Typer(help="Inspect image-text encoders.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(encoders_app, name="encoders")
app.add_typer(index_app, name="index")
app.command("search")(search_command)
app.command("ask")(ask_command)
app.add_typer(knowledge_app, name="knowledge")


def _invocation() -> str:
    """This command line as typed, recorded in the cards of the weights a training command writes."""
    return "rsrag " + " ".join(shlex.quote(a) for a in sys.argv[1:])


@train_app.command("encoder")
def train_encoder_cmd(
    name: str = typer.Option("rs-lite-lite0", help="weights name, written to rsrag/weights/NAME.safetensors"),
    tower: str = typer.Option("lite0", help="EfficientNet-Lite tower: lite0, lite1 or lite2"),
    tail_blocks: int = typer.Option(1, help="trainable MBConv blocks at the end of the image tower"),
    text_tail_layers: int = typer.Option(2, help="trainable transformer layers at the top of the text tower"),
    dim: int = typer.Option(512, help="shared embedding dimension"),
    epochs: int = typer.Option(10),
    patience: int = typer.Option(3, help="early stopping patience (epochs without RSICD val mR gain)"),
    batch_size: int = typer.Option(256),
    lr_tail: float = typer.Option(2e-4),
    lr_heads: float = typer.Option(2e-3),
    lr_text: float = typer.Option(1e-4),
    seed: int = typer.Option(0),
    limit: Optional[int] = typer.Option(None, help="images per split (quick runs)"),
) -> None:
    """Train rs-lite on the RSICD and UCM train splits, early-stopping on RSICD val."""
    from rsrag.encoders.rs_lite import RSLiteConfig
    from rsrag.training.encoder import EncoderTrainConfig, train_encoder

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = EncoderTrainConfig(
        model=RSLiteConfig(tower=tower, tail_blocks=tail_blocks, text_tail_layers=text_tail_layers, dim=dim),
        epochs=epochs, patience=patience, batch_size=batch_size, lr_tail=lr_tail, lr_heads=lr_heads, lr_text=lr_text,
        seed=seed, limit=limit,
    )
    command = _invocation()
    result = train_encoder(cfg, weights_name=name, command=command)
    result.pop("heads")
    result.pop("text_model")
    typer.echo(json.dumps(result, indent=2))


@train_app.command("memory")
def train_memory_cmd(
    name: str = typer.Option("rs-lite-lite0.memory", help="written to rsrag/weights/NAME.safetensors + NAME.json"),
    encoder: str = typer.Option("rs-lite", help="the plain encoder whose vectors the memory holds"),
    k: int = typer.Option(10, help="memory neighbours blended into an image vector"),
    beta: float = typer.Option(0.5, help="weight of the neighbours' caption embedding"),
    temperature: float = typer.Option(0.05, help="softmax temperature over the neighbours' similarities"),
    limit: Optional[int] = typer.Option(None, help="train images per dataset (quick runs)"),
) -> None:
    """Build rs-lite-mem's memory: RSICD + UCM train images and their captions (no labels)."""
    from rsrag.training.memory import build_memory

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    command = _invocation()
    result = build_memory(encoder, name=name, k=k, beta=beta, temperature=temperature, limit=limit, command=command)
    typer.echo(json.dumps(result, indent=2))


@train_app.command("captioner")
def train_captioner_cmd(
    variant: str = typer.Option("rag", help="plain, or rag (retrieval-augmented: captions of k nearest train images)"),
    name: Optional[str] = typer.Option(None, help="weights name (default captioner-VARIANT), in rsrag/weights/"),
    neighbours: int = typer.Option(5, help="k nearest training images for the rag variant"),
    epochs: int = typer.Option(6),
    patience: int = typer.Option(2, help="early stopping patience (epochs without val CIDEr gain)"),
    batch_size: int = typer.Option(32, help="images per step (each with all its captions)"),
    lr: float = typer.Option(1e-3),
    seed: int = typer.Option(0),
    threads: int = typer.Option(2, help="torch CPU threads"),
    limit: Optional[int] = typer.Option(None, help="images per split (quick runs)"),
) -> None:
    """Train the captioner on the RSICD + UCM train splits from cached rs-lite features."""
    import torch

    from rsrag.models.captioner.training import CaptionerTrainConfig, train_captioner

    if variant not in ("plain", "rag"):
        raise typer.BadParameter("--variant must be plain or rag")
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = CaptionerTrainConfig(neighbours=neighbours if variant == "rag" else 0, epochs=epochs, patience=patience,
                               batch_size=batch_size, lr=lr, seed=seed, limit=limit)
    command = _invocation()
    result = train_captioner(cfg, weights_name=name or f"captioner-{variant}", command=command)
    result.pop("captioner")
    typer.echo(json.dumps(result, indent=2))


@app.command("caption")
def caption_cmd(
    images: list[str] = typer.Argument(..., help="image files"),
    captioner: Optional[str] = typer.Option(None, "--captioner", "-c", help="captioner weights (default: committed)"),
    beam_size: int = typer.Option(3, "--beam-size", help="beam width; 1 = greedy"),
    index: Optional[str] = typer.Option(None, "--index", help="retrieve neighbour captions from this index"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Caption images. Unreadable images are reported on stderr (exit code 1); the rest are captioned."""
    from rsrag.imageio import ImageLoadError, load_image
    from rsrag.models.captioner import load_captioner

    try:
        model = load_captioner(captioner, index=index)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
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


@train_app.command("vqa")
def train_vqa_cmd(
    name: str = typer.Option("vqa-rs-lite", help="weights name, written to rsrag/weights/NAME.safetensors"),
    epochs: int = typer.Option(12),
    patience: int = typer.Option(4, help="early stopping patience (epochs without val accuracy gain)"),
    hidden: int = typer.Option(512),
    lr: float = typer.Option(1e-3),
    seed: int = typer.Option(0, help="seeds question generation and training"),
    threads: int = typer.Option(1, help="torch CPU threads"),
    limit: Optional[int] = typer.Option(None, help="images per dataset and split (quick runs)"),
) -> None:
    """Train the VQA classifier on questions generated from RSICD + UCM train, calibrated on val."""
    import torch

    from rsrag.models.vqa.train import VQATrainConfig, train_vqa

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = VQATrainConfig(epochs=epochs, patience=patience, hidden=hidden, lr=lr, seed=seed, limit=limit)
    command = _invocation()
    result = train_vqa(cfg, name=name, command=command)
    result.pop("model")
    typer.echo(json.dumps(result, indent=2))


@app.command("vqa")
def vqa_cmd(
    image: str = typer.Argument(..., help="image file"),
    question: str = typer.Argument(..., help='e.g. "What kind of place is shown?"'),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="VQA weights (default: the committed vqa-rs-lite)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Answer a question about an image (scene type, presence, counting, comparison)."""
    from rsrag.imageio import ImageLoadError
    from rsrag.models.vqa import load_vqa

    try:
        result = load_vqa(model).answer(image, question)
    except (FileNotFoundError, ValueError) as exc:  # ImageLoadError is a ValueError
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1 if isinstance(exc, ImageLoadError) else 2)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        flag = "  (unsure)" if result.unknown else ""
        typer.echo(f"{result.answer}\t{result.confidence:.2f}\t{result.question_type}{flag}")


@encoders_app.command("list")
def list_encoders_cmd() -> None:
    """Encoder names accepted by --encoder."""
    from rsrag.encoders import list_encoders

    for name in list_encoders():
        typer.echo(name)


@app.command("serve")
def serve_cmd(
    index: str = typer.Option(..., "--index", help="Index name to serve."),
    root: Optional[str] = typer.Option(None, "--root", help="Folder holding the indexes (default: $RSRAG_INDEXES or ./indexes)."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    text_precision: str = typer.Option("auto", "--text-precision",
                                       help="Query text encoding: auto (int8 where the encoder has it, 2.4x faster), fp32, int8."),
    allowed_hosts: Optional[str] = typer.Option(None, "--allowed-hosts",
                                                help="Comma-separated Host headers to answer (default: $RSRAG_ALLOWED_HOSTS, else any)."),
) -> None:
    """Serve an index over HTTP: search, QA, caption and VQA API plus a web page at / (writes need RSRAG_API_TOKEN)."""
    from rsrag.index.errors import LibraryError
    from rsrag.service import serve

    try:
        serve(index, root, host=host, port=port, text_precision=text_precision,
              allowed_hosts=[h.strip() for h in allowed_hosts.split(",") if h.strip()] if allowed_hosts else None)
    except LibraryError as exc:  # e.g. no such index: one line, not a traceback
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
