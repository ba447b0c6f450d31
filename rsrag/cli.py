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

app = typer.Typer(help="rsrag: multimodal RAG and vector search for remote-sensing imagery.", no_args_is_help=True)
train_app = typer.Typer(help="Train the models that live inside rsrag.", no_args_is_help=True)
encoders_app = typer.Typer(help="Inspect image-text encoders.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(encoders_app, name="encoders")
app.add_typer(index_app, name="index")
app.command("search")(search_command)


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
    command = "rsrag " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = train_encoder(cfg, weights_name=name, command=command)
    result.pop("heads")
    result.pop("text_model")
    typer.echo(json.dumps(result, indent=2))


@encoders_app.command("list")
def list_encoders_cmd() -> None:
    """Encoder names accepted by --encoder."""
    from rsrag.encoders import list_encoders

    for name in list_encoders():
        typer.echo(name)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
