"""`rsrag eval ...`: run the evaluators from the shell; every run also leaves a JSON results file.

Heavy modules (numpy, torch, the data loaders) are imported inside the commands so `rsrag --help`
stays fast. `create_encoder`, `load_dataset` and `load_class_folder` below are thin lazy wrappers,
which is also where tests inject fakes.
"""

from __future__ import annotations

import json
import re
import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    help="Evaluate an encoder: image-text retrieval recall and zero-shot scene classification.",
    no_args_is_help=True,
)


class DatasetName(str, Enum):
    rsicd = "rsicd"
    ucm = "ucm"


def create_encoder(name: str | None = None, **overrides):
    """Lazy `rsrag.encoders.create_encoder`."""
    from rsrag.encoders import create_encoder as _create_encoder

    return _create_encoder(name, **overrides)


def load_dataset(name: str, split: str):
    """Lazy `rsrag.data.load_dataset`."""
    from rsrag.data import load_dataset as _load_dataset

    return _load_dataset(name, split=split)


def load_class_folder(folder: Path):
    """Lazy `rsrag.data.load_class_folder`."""
    from rsrag.data import load_class_folder as _load_class_folder

    return _load_class_folder(folder)


def _encoder_name(name: str | None) -> str:
    from rsrag.encoders.registry import DEFAULT_ENCODER

    return name or DEFAULT_ENCODER


def _slug(text: str) -> str:
    """Safe file-name part: encoder names may hold '/' or ':' (e.g. hub ids)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def _write_result(result: dict, output: Path | None, default_name: str) -> Path:
    from rsrag.config import results_dir

    path = output if output is not None else results_dir() / default_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


EncoderOpt = typer.Option(None, "--encoder", "-e", help="Encoder name (default: the project default encoder).")
JsonOpt = typer.Option(False, "--json", help="Print the result as JSON instead of a table.")
OutputOpt = typer.Option(
    None, "--output", "-o", help="JSON results file (default: <results dir>/<command>_<dataset>_<split>_<encoder>.json)."
)
BatchOpt = typer.Option(64, "--batch-size", help="Images per encoder batch.")


@app.command()
def retrieval(
    dataset: DatasetName = typer.Option(..., "--dataset", "-d", help="Captioned dataset."),
    split: str = typer.Option("test", "--split", help="Dataset split (papers report test)."),
    encoder: Optional[str] = EncoderOpt,
    as_json: bool = JsonOpt,
    output: Optional[Path] = OutputOpt,
    batch_size: int = BatchOpt,
) -> None:
    """Image->text and text->image Recall@1/5/10 and mR (RSICD / UCM-captions protocol)."""
    from rsrag.eval.retrieval import RetrievalEvaluator

    name = _encoder_name(encoder)
    records = load_dataset(dataset.value, split)
    start = time.perf_counter()
    evaluator = RetrievalEvaluator(records, name=dataset.value, split=split, batch_size=batch_size)
    result = evaluator(create_encoder(name))
    result["elapsed_s"] = round(time.perf_counter() - start, 2)
    path = _write_result(result, output, f"retrieval_{dataset.value}_{_slug(split)}_{_slug(name)}.json")

    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"Retrieval: {dataset.value}/{split}, {result['encoder']}")
        table.add_column("direction")
        for k in ("R@1", "R@5", "R@10"):
            table.add_column(k, justify="right")
        table.add_row("image->text", *(f"{result[f'i2t_r{k}']:.2f}" for k in (1, 5, 10)))
        table.add_row("text->image", *(f"{result[f't2i_r{k}']:.2f}" for k in (1, 5, 10)))
        console = Console()
        console.print(table)
        console.print(f"mR = {result['mR']:.2f}  ({result['n_images']} images, {result['n_captions']} captions)")
    _stderr_console().print(f"wrote {path}")


@app.command()
def zeroshot(
    folder: Optional[Path] = typer.Option(
        None, "--folder", "-f", exists=True, file_okay=False, help="Class folder: one sub-folder of images per class."
    ),
    dataset: Optional[DatasetName] = typer.Option(None, "--dataset", "-d", help="Labelled dataset (scene labels)."),
    split: str = typer.Option("test", "--split", help="Dataset split (with --dataset)."),
    encoder: Optional[str] = EncoderOpt,
    as_json: bool = JsonOpt,
    output: Optional[Path] = OutputOpt,
    batch_size: int = BatchOpt,
) -> None:
    """Zero-shot scene classification: accuracy and per-class breakdown, from prompt templates."""
    if (folder is None) == (dataset is None):
        raise typer.BadParameter("give exactly one of --folder DIR or --dataset rsicd|ucm")
    from rsrag.eval.zeroshot import ZeroShotEvaluator

    name = _encoder_name(encoder)
    if folder is not None:
        records, ds_name, ds_split = load_class_folder(folder), folder.name, None
        default_name = f"zeroshot_folder-{_slug(folder.name)}_{_slug(name)}.json"
    else:
        records, ds_name, ds_split = load_dataset(dataset.value, split), dataset.value, split
        default_name = f"zeroshot_{dataset.value}_{_slug(split)}_{_slug(name)}.json"
    start = time.perf_counter()
    evaluator = ZeroShotEvaluator(records, name=ds_name, split=ds_split, batch_size=batch_size)
    result = evaluator(create_encoder(name))
    result["elapsed_s"] = round(time.perf_counter() - start, 2)
    path = _write_result(result, output, default_name)

    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"Zero-shot: {ds_name}" + (f"/{ds_split}" if ds_split else "") + f", {result['encoder']}")
        table.add_column("class")
        table.add_column("prompt text")
        table.add_column("n", justify="right")
        table.add_column("accuracy %", justify="right")
        for cls, row in result["per_class"].items():
            table.add_row(cls, row["text"], str(row["n"]), f"{row['accuracy']:.1f}")
        console = Console()
        console.print(table)
        console.print(
            f"accuracy = {result['accuracy']:.2f}%  ({result['n_images']} images, {result['n_classes']} classes)"
        )
    _stderr_console().print(f"wrote {path}")


@app.command()
def caption(
    dataset: DatasetName = typer.Option(..., "--dataset", "-d", help="Captioned dataset."),
    split: str = typer.Option("test", "--split", help="Dataset split (papers report test)."),
    captioner: Optional[str] = typer.Option(None, "--captioner", "-c", help="Captioner weights (default: the committed one)."),
    beam_size: int = typer.Option(3, "--beam-size", help="Beam width; 1 = greedy decoding."),
    index: Optional[str] = typer.Option(None, "--index", help="Retrieve neighbour captions from this index."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N images (quick checks)."),
    as_json: bool = JsonOpt,
    output: Optional[Path] = OutputOpt,
) -> None:
    """Captioning metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr; COCO caption toolkit) on a split."""
    from rsrag.eval.caption import METRIC_KEYS, evaluate_captioner
    from rsrag.models.captioner import load_captioner

    model = load_captioner(captioner, index=index)
    result = evaluate_captioner(model, dataset.value, split, beam_size=beam_size, limit=limit)
    path = _write_result(result, output, f"caption_{dataset.value}_{_slug(split)}_{_slug(model.name)}_beam{beam_size}.json")
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"Captioning: {dataset.value}/{split}, {model.name}, beam {beam_size}")
        for key in METRIC_KEYS:
            table.add_column(key, justify="right")
        table.add_row(*(f"{result[k]:.4f}" for k in METRIC_KEYS))
        console = Console()
        console.print(table)
        for ex in result["examples"]:
            console.print(f"{ex['id']}: {ex['caption']}\n    ref: {ex['references'][0]}")
    _stderr_console().print(f"wrote {path}")


@app.command()
def vqa(
    split: str = typer.Option("test", "--split", help="VQA split (follows the image splits)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="VQA weights (default: the committed one)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N images per dataset (quick checks)."),
    as_json: bool = JsonOpt,
    output: Optional[Path] = OutputOpt,
) -> None:
    """VQA accuracy on the RSICD + UCM question set, overall and per question type."""
    from rsrag.eval.vqa import evaluate_vqa
    from rsrag.models.vqa import load_vqa

    vqa_model = load_vqa(model)
    result = evaluate_vqa(vqa_model, split, limit=limit)
    path = _write_result(result, output, f"vqa_{_slug(split)}_{_slug(vqa_model.name)}.json")
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"VQA: {split}, {vqa_model.name}")
        for col in ("question type", "n", "accuracy %", "question-only %"):
            table.add_column(col, justify="right")
        for t, acc in result["by_type"].items():
            table.add_row(t, str(result["n_by_type"][t]), f"{acc:.2f}", f"{result['question_only_baseline']['by_type'][t]:.2f}")
        table.add_row("all", str(result["n_questions"]), f"{result['accuracy']:.2f}",
                      f"{result['question_only_baseline']['accuracy']:.2f}")
        Console().print(table)
    _stderr_console().print(f"wrote {path}")


from rsrag.eval.qa import qa_command  # noqa: E402  (typer-only imports at module level)

app.command("qa")(qa_command)
