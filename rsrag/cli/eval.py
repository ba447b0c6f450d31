"""`rsrag eval retrieval|zeroshot|resolution|caption|vqa|qa|change`: run the evaluators from the shell.

Every run prints a table (or JSON with `--json`) and also leaves a JSON results file
(`rsrag.cli.common.report`); errors a user can act on (a missing dataset or weights file, an unknown
encoder) are one `error: ...` line with exit status 2 (`rsrag.cli.common.user_errors`). The evaluators live in `rsrag.eval`; this module only picks their
inputs from the options and prints their results. Heavy modules (numpy, torch, the data loaders) are
imported inside the commands so `rsrag --help` stays fast. `create_encoder`, `load_dataset` and
`load_class_folder` below are thin lazy wrappers, which is also where tests inject fakes.
"""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from rsrag.cli.common import report, slug, user_errors

app = typer.Typer(
    help="Evaluate an encoder: image-text retrieval recall and zero-shot scene classification.",
    no_args_is_help=True,
)


class DatasetName(str, Enum):
    rsicd = "rsicd"
    ucm = "ucm"


class QADataset(str, Enum):
    rswk = "rswk"
    rsicd = "rsicd"


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


EncoderOpt = typer.Option(None, "--encoder", "-e",
                          help="Encoder name or config JSON file (default: the project default encoder).")
JsonOpt = typer.Option(False, "--json", help="Print the result as JSON instead of a table.")
OutputOpt = typer.Option(
    None, "--output", "-o", help="JSON results file (default: <results dir>/<command>_<dataset>_<split>_<encoder>.json)."
)
BatchOpt = typer.Option(64, "--batch-size", help="Images per encoder batch.")
GsdOpt = typer.Option(1.0, "--gsd-factor", help="Degrade every image to an N times coarser ground sample distance "
                                                "first (rsrag.data.degrade; 1 = as they are).")


def _encode_at_gsd(encoder, records, factor: float, batch_size: int):
    """Image embeddings of `records` degraded by `factor`, or None at factor 1 (the evaluator encodes)."""
    from rsrag.eval.resolution import encode_degraded

    return None if factor == 1 else encode_degraded(encoder, [r.path for r in records], factor, batch_size)


def _gsd_suffix(factor: float) -> str:
    return "" if factor == 1 else f"_gsd{factor:g}x"


def _gsd_words(factor: float) -> str:
    return "" if factor == 1 else f", {factor:g}x coarser"


# ---- retrieval -----------------------------------------------------------------------------------
@app.command()
def retrieval(
    dataset: DatasetName = typer.Option(..., "--dataset", "-d", help="Captioned dataset."),
    split: str = typer.Option("test", "--split", help="Dataset split (papers report test)."),
    encoder: Optional[str] = EncoderOpt,
    as_json: bool = JsonOpt,
    output: Optional[Path] = OutputOpt,
    batch_size: int = BatchOpt,
    gsd_factor: float = GsdOpt,
) -> None:
    """Image->text and text->image Recall@1/5/10 and mR (RSICD / UCM-captions protocol)."""
    from rsrag.eval.retrieval import RetrievalEvaluator

    name = _encoder_name(encoder)
    with user_errors():
        records = load_dataset(dataset.value, split)
        start = time.perf_counter()
        evaluator = RetrievalEvaluator(records, name=dataset.value, split=split, batch_size=batch_size)
        model = create_encoder(name)
        result = evaluator(model, image_emb=_encode_at_gsd(model, records, gsd_factor, batch_size))
    result["gsd_factor"] = gsd_factor
    result["elapsed_s"] = round(time.perf_counter() - start, 2)
    report(result, output, f"retrieval_{dataset.value}_{slug(split)}_{slug(name)}{_gsd_suffix(gsd_factor)}.json", as_json,
           lambda r: _print_retrieval(r, f"{dataset.value}/{split}{_gsd_words(gsd_factor)}"))


def _print_retrieval(result: dict, what: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Retrieval: {what}, {result['encoder']}")
    table.add_column("direction")
    for k in ("R@1", "R@5", "R@10"):
        table.add_column(k, justify="right")
    table.add_row("image->text", *(f"{result[f'i2t_r{k}']:.2f}" for k in (1, 5, 10)))
    table.add_row("text->image", *(f"{result[f't2i_r{k}']:.2f}" for k in (1, 5, 10)))
    console = Console()
    console.print(table)
    console.print(f"mR = {result['mR']:.2f}  ({result['n_images']} images, {result['n_captions']} captions)")


# ---- zero-shot -----------------------------------------------------------------------------------
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
    gsd_factor: float = GsdOpt,
) -> None:
    """Zero-shot scene classification: accuracy and per-class breakdown, from prompt templates."""
    if (folder is None) == (dataset is None):
        raise typer.BadParameter("give exactly one of --folder DIR or --dataset rsicd|ucm")
    from rsrag.eval.zeroshot import ZeroShotEvaluator

    name = _encoder_name(encoder)
    with user_errors():
        records, ds_name, ds_split, stem = _class_records(folder, dataset, split)
        default_name = f"zeroshot_{stem}_{slug(name)}{_gsd_suffix(gsd_factor)}.json"
        start = time.perf_counter()
        evaluator = ZeroShotEvaluator(records, name=ds_name, split=ds_split, batch_size=batch_size)
        model = create_encoder(name)
        result = evaluator(model, image_emb=_encode_at_gsd(model, records, gsd_factor, batch_size))
    result["gsd_factor"] = gsd_factor
    result["elapsed_s"] = round(time.perf_counter() - start, 2)
    what = ds_name + (f"/{ds_split}" if ds_split else "") + _gsd_words(gsd_factor)
    report(result, output, default_name, as_json, lambda r: _print_zeroshot(r, what))


def _class_records(folder: Optional[Path], dataset: Optional[DatasetName], split: str) -> tuple[list, str, str | None, str]:
    """(records, dataset name, split, result-file stem) of a class folder or a labelled dataset."""
    if folder is not None:
        return load_class_folder(folder), folder.name, None, f"folder-{slug(folder.name)}"
    return load_dataset(dataset.value, split), dataset.value, split, f"{dataset.value}_{slug(split)}"


def _print_zeroshot(result: dict, what: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Zero-shot: {what}, {result['encoder']}")
    table.add_column("class")
    table.add_column("prompt text")
    table.add_column("n", justify="right")
    table.add_column("accuracy %", justify="right")
    for cls, row in result["per_class"].items():
        table.add_row(cls, row["text"], str(row["n"]), f"{row['accuracy']:.1f}")
    console = Console()
    console.print(table)
    console.print(f"accuracy = {result['accuracy']:.2f}%  ({result['n_images']} images, {result['n_classes']} classes)")


# ---- resolution robustness ------------------------------------------------------------------------
@app.command()
def resolution(
    dataset: DatasetName = typer.Option(DatasetName.rsicd, "--dataset", "-d", help="Labelled, captioned dataset."),
    split: str = typer.Option("test", "--split", help="Dataset split."),
    folder: Optional[Path] = typer.Option(
        None, "--folder", "-f", exists=True, file_okay=False,
        help="A class folder instead of --dataset (zero-shot only: no captions)."),
    factors: str = typer.Option("1,2,4,8,16", "--factors", help="GSD coarsening factors, comma-separated (1 = native)."),
    encoder: Optional[str] = EncoderOpt,
    as_json: bool = JsonOpt,
    output: Optional[Path] = OutputOpt,
    batch_size: int = BatchOpt,
) -> None:
    """Zero-shot accuracy and retrieval mR with every image degraded to coarser ground sample distances
    (rsrag.data.degrade: sensor blur, area average down, bicubic back up)."""
    from tqdm import tqdm

    from rsrag.data.degrade import parse_factors
    from rsrag.eval.resolution import ResolutionEvaluator

    name = _encoder_name(encoder)
    with user_errors():
        levels = parse_factors(factors)
        records, ds_name, ds_split, stem = _class_records(folder, dataset, split)
        default_name = f"resolution_{stem}_{slug(name)}.json"
        start = time.perf_counter()
        evaluator = ResolutionEvaluator(records, name=ds_name, split=ds_split, factors=levels, batch_size=batch_size)
        model = create_encoder(name)
        with tqdm(total=len(records) * len(levels), desc="resolution", unit="img", disable=None) as bar:
            result = evaluator(model, progress=bar.update)
    result["elapsed_s"] = round(time.perf_counter() - start, 2)
    what = ds_name + (f"/{ds_split}" if ds_split else "")
    report(result, output, default_name, as_json, lambda r: _print_resolution(r, what))


def _print_resolution(result: dict, what: str) -> None:
    from rich.console import Console
    from rich.table import Table

    has_mr = bool(result["n_captions"])
    table = Table(title=f"Resolution robustness: {what}, {result['encoder']}")
    for column in ("GSD factor", "blur sigma px", "zero-shot %") + (("mR",) if has_mr else ()):
        table.add_column(column, justify="right")
    table.add_column("most predicted (% of images)")
    for row in result["curve"]:
        cells = [f"{row['factor']:g}x", f"{row['blur_sigma']:.2f}", f"{row['accuracy']:.2f}"]
        top = ", ".join(f"{c} {share:.0f}" for c, share in row["most_predicted"].items())
        table.add_row(*cells, *([f"{row['mR']:.2f}"] if has_mr else []), top)
    console = Console()
    console.print(table)
    console.print(f"{result['n_images']} images, {result['n_classes']} classes")


# ---- captioning ----------------------------------------------------------------------------------
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
    from rsrag.eval.caption import evaluate_captioner
    from rsrag.models.captioner import load_captioner

    with user_errors():
        model = load_captioner(captioner, index=index)
        result = evaluate_captioner(model, dataset.value, split, beam_size=beam_size, limit=limit)
    report(result, output, f"caption_{dataset.value}_{slug(split)}_{slug(model.name)}_beam{beam_size}.json",
           as_json, lambda r: _print_caption(r, f"{dataset.value}/{split}, {model.name}, beam {beam_size}"))


def _print_caption(result: dict, what: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from rsrag.metrics.caption import METRIC_KEYS

    table = Table(title=f"Captioning: {what}")
    for key in METRIC_KEYS:
        table.add_column(key, justify="right")
    table.add_row(*(f"{result[k]:.4f}" for k in METRIC_KEYS))
    console = Console()
    console.print(table)
    for ex in result["examples"]:
        console.print(f"{ex['id']}: {ex['caption']}\n    ref: {ex['references'][0]}")


# ---- VQA -----------------------------------------------------------------------------------------
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

    with user_errors():
        vqa_model = load_vqa(model)
        result = evaluate_vqa(vqa_model, split, limit=limit)
    report(result, output, f"vqa_{slug(split)}_{slug(vqa_model.name)}.json", as_json,
           lambda r: _print_vqa(r, f"{split}, {vqa_model.name}"))


def _print_vqa(result: dict, what: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"VQA: {what}")
    for col in ("question type", "n", "accuracy %", "question-only %"):
        table.add_column(col, justify="right")
    blind = result["question_only_baseline"]
    for t, acc in result["by_type"].items():
        table.add_row(t, str(result["n_by_type"][t]), f"{acc:.2f}", f"{blind['by_type'][t]:.2f}")
    table.add_row("all", str(result["n_questions"]), f"{result['accuracy']:.2f}", f"{blind['accuracy']:.2f}")
    Console().print(table)


# ---- knowledge QA and retrieval-augmented classification -----------------------------------------
@app.command("qa")
def qa(
    dataset: QADataset = typer.Option(
        ..., "--dataset", "-d", help="rswk (knowledge QA) or rsicd (with --task classify)."
    ),
    task: str = typer.Option("qa", "--task", help="rswk: qa; rsicd: classify."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="Only the first N questions / test images."),
    ablation_limit: int = typer.Option(300, "--ablation-limit", help="Questions in the ablation table (0: all)."),
    k: int = typer.Option(5, "--k", help="Evidence items per question (rswk) / neighbours (rsicd, default 10)."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Rebuild the cached knowledge index."),
    generator: str = typer.Option("extractive", "--generator", "-g", help="rswk: extractive, hf or openai."),
    model: Optional[str] = typer.Option(
        None, "--model", help="hf: folder, hub id or gemma-3-270m-gguf; openai: model."
    ),
    url: Optional[str] = typer.Option(None, "--url", help="openai: endpoint base URL."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="JSON results file (default: <results>/qa_<dataset>[_task].json)."
    ),
) -> None:
    """Knowledge-grounded QA on RSWK (retrieval R@1/R@5, answer EM/F1, per type, category accuracy,
    latency, ablation), or retrieval-augmented classification on RSICD test."""
    from rich.console import Console

    err = Console(stderr=True)
    t0 = time.perf_counter()
    if dataset is QADataset.rswk:
        if task not in ("qa", "question"):
            raise typer.BadParameter("rswk supports --task qa")
        from rsrag.eval.qa import evaluate_rswk

        cfg = {key: value for key, value in (("model", model), ("url", url)) if value}
        with user_errors():
            result = evaluate_rswk(limit, ablation_limit=ablation_limit or None, k=k, rebuild=rebuild,
                                   generator=generator, generator_config=cfg, log=err.print)
        tag = "" if generator == "extractive" else f"_{generator}"
        name = f"qa_rswk{tag}.json" if limit is None else f"qa_rswk{tag}_limit{limit}.json"
        print_table = _print_rswk
    else:
        if task != "classify":
            raise typer.BadParameter("rsicd supports --task classify")
        from rsrag.eval.classify import evaluate_rsicd_classify

        with user_errors():
            result = evaluate_rsicd_classify(limit, k=k if k != 5 else 10, log=err.print)
        name = "qa_rsicd_classify.json" if limit is None else f"qa_rsicd_classify_limit{limit}.json"
        print_table = _print_rsicd_classify
    result["elapsed_s"] = round(time.perf_counter() - t0, 1)
    report(result, output, name, as_json, print_table)


def _print_rsicd_classify(result: dict) -> None:
    from rich.console import Console

    Console().print(
        f"RSICD test classification accuracy (retrieval-augmented, k={result['k']}): "
        f"{result['accuracy']:.4f} over {result['n_images']} images"
    )


def _print_rswk(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    head = Table(title=f"RSWK knowledge QA ({result['n_questions']} questions, {result['n_chunks']} chunks)")
    for col in ("R@1", "R@5", "R@1 no rerank", "EM", "F1", "category acc", "p50 ms"):
        head.add_column(col, justify="right")
    keys = ("retrieval_r1", "retrieval_r5", "retrieval_r1_no_rerank", "answer_em", "answer_f1", "category_accuracy")
    head.add_row(*(f"{result[k]:.4f}" for k in keys), f"{result['latency_ms']['p50']}")
    console.print(head)
    types = Table(title="per question type")
    for col in ("type", "n", "R@1", "EM", "F1"):
        types.add_column(col, justify="right")
    for t, row in result["per_type"].items():
        types.add_row(t, str(row["n"]), f"{row['r1']:.3f}", f"{row['em']:.3f}", f"{row['f1']:.3f}")
    console.print(types)
    if not result["ablation"]:
        return
    abl = Table(title=f"ablation ({result['ablation'][0]['n']} questions)")
    for col in ("fusion", "BM25", "re-rank", "R@1", "F1"):
        abl.add_column(col, justify="right")
    for row in result["ablation"]:
        abl.add_row(
            row["fusion"],
            "on" if row["bm25"] else "off",
            "on" if row["rerank"] else "off",
            f"{row['r1']:.4f}",
            f"{row['f1']:.4f}",
        )
    console.print(abl)
    console.print(result["ablation_note"])


@app.command("dialogue")
def dialogue(
    limit: int = typer.Option(300, "--limit", "-n", help="Two-turn dialogues to run."),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="JSON results file."),
) -> None:
    """Follow-up questions on RSWK: turn-2 landmark R@1 with the history in the prompt only, with a plain
    history resolved, and in a kept conversation (rsrag.eval.dialogue)."""
    from rich.console import Console

    from rsrag.eval.dialogue import evaluate_dialogues

    err = Console(stderr=True)
    with user_errors():
        result = evaluate_dialogues(limit, seed=seed, log=err.print)
    report(result, output, "dialogue_rswk.json", as_json, _print_dialogue)


def _print_dialogue(result: dict) -> None:
    from rich.console import Console

    r = result["turn2_r1"]
    Console().print(f"{result['dialogues']} two-turn RSWK dialogues: turn-1 R@1 {result['turn1_r1']:.4f}; turn-2 "
                    f"landmark R@1: history in the prompt only {r['plain']:.4f}, plain history resolved "
                    f"{r['history']:.4f}, kept conversation {r['conversation']:.4f}")


@app.command("abstain")
def abstain(
    kb: int = typer.Option(1500, "--kb", help="RSWK landmarks in the knowledge base (the rest are held out)."),
    n_val: int = typer.Option(300, "--val", help="Validation questions of each kind (fit the threshold)."),
    n_test: int = typer.Option(500, "--test", help="Test questions of each kind (report)."),
    seed: int = typer.Option(0, "--seed"),
    save: bool = typer.Option(False, "--save", help="Write the fitted threshold to rsrag/weights/abstention.json."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="JSON results file."),
) -> None:
    """Abstention on RSWK: a threshold fitted on validation questions, then precision/recall of abstaining on
    held-out landmarks and the accuracy of what is answered (rsrag.eval.abstain)."""
    from rich.console import Console

    from rsrag.eval.abstain import evaluate_abstention

    err = Console(stderr=True)
    with user_errors():
        result = evaluate_abstention(kb, n_val, n_test, seed, save, log=err.print)
    report(result, output, "abstain_rswk.json", as_json, _print_abstain)


def _print_abstain(result: dict) -> None:
    from rich.console import Console

    Console().print(f"threshold {result['threshold']} (fitted on {result['val_questions']} validation questions); "
                    f"test ({result['test_questions']}): abstention precision {result['abstention_precision']:.4f}, "
                    f"recall {result['abstention_recall']:.4f}; answered {result['answered_rate']:.4f} of answerable, "
                    f"answered R@1 {result['answered_r1']:.4f}, F1 {result['answered_f1']:.4f}")


@app.command("match")
def match(
    dataset: str = typer.Option("rsicd", "--dataset", "-d", help="rsicd or ucm."),
    fit_split: str = typer.Option("val", "--fit-split", help="Split the scale is fitted on."),
    split: str = typer.Option("test", "--split", help="Split it is checked on."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", help="Encoder name (default: the default encoder)."),
    save: bool = typer.Option(False, "--save", help="Store the scale in rsrag/weights/match.json for this encoder."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="JSON results file."),
) -> None:
    """Fit the strong / weak / none match scale of an encoder's scores, and check it (rsrag.eval.match)."""
    from rich.console import Console

    from rsrag.encoders.calibration import save_match_scale
    from rsrag.eval.match import evaluate_match

    with user_errors():
        enc = create_encoder(encoder)
        others = {"ucm_test": load_dataset("ucm", "test")} if dataset != "ucm" else {}
        scale, result = evaluate_match(enc, load_dataset(dataset, fit_split), load_dataset(dataset, split), others)
        result.update(dataset=dataset, fit_split=fit_split, split=split)
        if save:
            result["saved"] = str(save_match_scale(enc.id, scale, {"dataset": dataset, "split": fit_split}))
    report(result, output, f"match_{dataset}.json", as_json, lambda r: Console().print_json(data=r))


# ---- change ---------------------------------------------------------------------------------------
@app.command()
def change(
    split: str = typer.Option("test", "--split", help="val (choose settings, --sweep) or test (report once)."),
    pairs: int = typer.Option(40, "--pairs", help="Synthetic bi-temporal pairs (4 x 4 cells each)."),
    seed: int = typer.Option(0, "--seed", help="Pair sampling / jitter seed."),
    sweep_settings: bool = typer.Option(False, "--sweep", help="val: sweep threshold, temperature and embedding "
                                                               "weight and print the chosen setting."),
    encoder: Optional[str] = EncoderOpt,
    as_json: bool = JsonOpt,
    output: Optional[Path] = OutputOpt,
) -> None:
    """Change detection on synthetic pairs of val/test chips: AUC, F1, false alarms, transitions, captions."""
    from rsrag.cli.index import _progress
    from rsrag.eval.change import collect, evaluate_change, sweep

    name = _encoder_name(encoder)
    with user_errors():
        model = create_encoder(name)
        if sweep_settings:
            data = collect(model, split, n_pairs=pairs, seed=seed, progress=_progress(f"change {split}", unit="pair"))
            result = sweep(data)
            result.update({"split": split, "pairs": pairs, "seed": seed, "encoder": model.id})
        else:
            result = evaluate_change(model, split, n_pairs=pairs, seed=seed,
                                     progress=_progress(f"change {split}", unit="pair"))
    default_name = f"change_{slug(split)}{'_sweep' if sweep_settings else ''}_{slug(name)}.json"
    report(result, output, default_name, as_json, _print_change)


def _print_change(result: dict) -> None:
    if "chosen" in result:
        typer.echo(f"chosen on {result['split']}: {result['chosen']}")
        return
    keys = ("auc", "f1", "precision", "recall", "false_alarm_rate", "false_alarm_same_chip", "false_alarm_redraw",
            "transition_accuracy", "transition_accuracy_lenient")
    for key in keys:
        typer.echo(f"{key:28s} {result[key]}")
    captions = result.get("captions") or {}
    if captions:
        typer.echo(f"{'caption BLEU-4 / CIDEr':28s} {captions['bleu4']} / {captions['cider']} ({captions['n']} sentences)")
    typer.echo(f"{result['cells']} cells ({result['changed_cells']} changed, {result['redraw_cells']} same-class "
               f"redraws) in {result['pairs']} pairs of {result['split']}")


@app.command("localize")
def localize_eval(
    split: str = typer.Option("test", "--split", help="val (to choose settings) or test (to report)."),
    n: int = typer.Option(200, "--n", "-n", help="Number of mosaics."),
    grid: int = typer.Option(6, "--grid", help="Cells per mosaic side."),
    cell: int = typer.Option(224, "--cell", help="Cell size in pixels."),
    seed: int = typer.Option(0, "--seed", help="Mosaic sampling seed."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", help="Encoder (default rs-lite)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Keep per-mosaic chip features in this folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="JSON results file (default: <results>/localize_<split>.json)."
    ),
) -> None:
    """Semantic localization on seeded mosaics of val/test chips: hit@1, pixel AUC, SeLo indicators,
    no-match rates, against random, chip-level and sliding-window baselines."""
    from tqdm import tqdm

    from rsrag.eval.localize import LocalizeEvaluator
    from rsrag.localize import Localizer

    with user_errors():
        enc = create_encoder(_encoder_name(encoder))
        evaluator = LocalizeEvaluator(Localizer(enc), split=split, n=n, rows=grid, cols=grid, cell=cell, seed=seed,
                                      cache=cache)
        with tqdm(total=n, desc=f"localize {split}", unit="mosaic", disable=None) as bar:
            result = evaluator.run(progress=lambda done, total: bar.update(done - bar.n))
    result["encoder"] = enc.id
    name = f"localize_{split}.json" if n == 200 and seed == 0 else f"localize_{split}_n{n}_seed{seed}.json"
    report(result, output, name, as_json, _print_localize)


def _print_localize(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Semantic localization, {result['split']} mosaics (n={result['mosaics']}, "
                        f"{result['grid']} x {result['cell']} px)")
    keys = ("hit_at_1", "auc", "rsu", "ras", "rda", "rmi")
    table.add_column("method")
    for key in keys:
        table.add_column(key, justify="right")
    table.add_row("default", *(f"{result[k]:.4f}" for k in keys))
    for name, scores in result["baselines"].items():
        table.add_row(name, *(f"{scores[k]:.4f}" for k in keys))
    console = Console()
    console.print(table)
    console.print(f"match rate (target present) {result['match_rate']}, false match rate (class absent) "
                  f"{result['false_match_rate']}, query p50 {result['query_ms_p50']} ms")
