"""`rsrag train encoder|memory|captioner|vqa`: train the models that live inside rsrag.

Each command logs its progress, writes weights plus a JSON card under rsrag/weights/ (the card
records the command line as typed), and prints a JSON summary.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from typing import Optional

import typer

app = typer.Typer(help="Train the models that live inside rsrag.", no_args_is_help=True)


def _invocation() -> str:
    """This command line as typed, recorded in the cards of the weights a training command writes."""
    return "rsrag " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"--gsd-range must be LOW,HIGH, e.g. 1.5,32; got {text!r}") from None
    if not 1.0 <= low < high:
        raise typer.BadParameter(f"--gsd-range must be LOW,HIGH with 1 <= LOW < HIGH, got {text!r}")
    return low, high


@app.command("encoder")
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
    corpus: str = typer.Option("", help="prepared corpus datasets to train on too, comma-separated (e.g. aid,rsscn7; "
                                        "see `rsrag data prepare`)"),
    corpus_root: Optional[str] = typer.Option(None, help="where the corpus was prepared (default RSRAG_CACHE/corpus)"),
    coarser_views: int = typer.Option(0, help="cached coarser-sensor copies of every training image (resolution augmentation)"),
    gsd_range: str = typer.Option("1.5,32", help="coarsening factors of those copies, LOW,HIGH (drawn log-uniformly)"),
    native_share: float = typer.Option(0.5, help="probability a step shows an image at its own resolution"),
    consistency: float = typer.Option(0.0, help="weight of the cross-resolution loss (each coarser copy must find its "
                                                "own native embedding; embeds both views every step)"),
    source_temperature: float = typer.Option(1.0, help="source sampling ~ size ** T (1: as they come, 0: equal)"),
    epoch_images: Optional[int] = typer.Option(None, help="images drawn per epoch (default: all)"),
    init_from: Optional[str] = typer.Option(None, help="start from these rs-lite weights (e.g. rs-lite-lite0)"),
) -> None:
    """Train rs-lite on the RSICD and UCM train splits (plus corpus datasets), early-stopping on RSICD val
    (with coarser views: on the mean of val mR at native resolution and 8x coarser)."""
    from rsrag.encoders.rs_lite import RSLiteConfig
    from rsrag.training.encoder import EncoderTrainConfig, train_encoder

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = EncoderTrainConfig(
        model=RSLiteConfig(tower=tower, tail_blocks=tail_blocks, text_tail_layers=text_tail_layers, dim=dim),
        epochs=epochs, patience=patience, batch_size=batch_size, lr_tail=lr_tail, lr_heads=lr_heads, lr_text=lr_text,
        seed=seed, limit=limit, corpus_sets=tuple(c.strip() for c in corpus.split(",") if c.strip()),
        corpus_root=corpus_root, coarser_views=coarser_views, gsd_range=_range(gsd_range), native_share=native_share,
        consistency=consistency, source_temperature=source_temperature, epoch_images=epoch_images, init_from=init_from,
    )
    command = _invocation()
    result = train_encoder(cfg, weights_name=name, command=command)
    result.pop("heads")
    result.pop("text_model")
    typer.echo(json.dumps(result, indent=2))


@app.command("memory")
def train_memory_cmd(
    name: str = typer.Option("rs-lite-lite0-v2.memory", help="written to rsrag/weights/NAME.safetensors + NAME.json"),
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


@app.command("captioner")
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


@app.command("vqa")
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
