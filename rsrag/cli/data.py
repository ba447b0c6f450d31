"""`rsrag data prepare`: build the corpus of label-only scene-classification datasets from local
clones of the repositories pinned in `rsrag/data/corpus_manifest.json` (`rsrag.data.corpus`).

Clones are not made here: clone each repository (or keep a bare git directory of it) and pass it as
`--source NAME=PATH`; the images are read at the manifest's commit and written under the corpus
folder (default `RSRAG_CACHE/corpus`), never into the repository.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from rsrag.cli.common import user_errors

app = typer.Typer(help="Build the data rsrag trains and evaluates on from public sources.", no_args_is_help=True)


@app.command("prepare")
def prepare(
    source: list[str] = typer.Option(..., "--source", "-s", help="NAME=PATH: a manifest dataset (aid, rsscn7, "
                                     "whurs19) and its local clone (a git directory or a checkout). Repeatable."),
    out: Optional[Path] = typer.Option(None, "--out", help="Corpus folder (default: $RSRAG_CACHE/corpus)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Copy each dataset's images into <out>/<name>/<split>/<label>/ and write <out>/<name>/records.jsonl
    (captions from class templates, seeded splits); image counts must match the manifest."""
    from tqdm import tqdm

    from rsrag.data.corpus import default_corpus_dir, load_manifest, prepare_dataset

    with user_errors():
        manifest = load_manifest()
        pairs = [_parse_source(text, manifest) for text in source]
        reports = []
        for entry, clone in pairs:
            with tqdm(total=entry.count, desc=entry.name, unit="img", disable=None) as bar:
                reports.append(prepare_dataset(entry, clone, out, progress=bar.update))
    rows = [{"dataset": r.dataset, "folder": str(r.folder), "n_images": r.n_images, "per_split": r.per_split,
             "skipped_excluded": len(r.skipped_excluded)} for r in reports]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        splits = ", ".join(f"{k} {v}" for k, v in row["per_split"].items())
        skipped = f"; skipped {row['skipped_excluded']} excluded file(s)" if row["skipped_excluded"] else ""
        typer.echo(f"{row['dataset']}: {row['n_images']} images ({splits}){skipped} -> {row['folder']}")
    typer.echo(f"corpus folder: {out if out is not None else default_corpus_dir()}", err=True)


def _parse_source(text: str, manifest: dict) -> tuple:
    name, sep, path = text.partition("=")
    name = name.strip().lower()
    if not sep or not name or not path:
        raise ValueError(f"--source wants NAME=PATH, got {text!r}")
    if name not in manifest:
        raise ValueError(f"unknown corpus dataset {name!r}; the manifest lists {', '.join(sorted(manifest))}")
    return manifest[name], Path(path).expanduser()


@app.command("overlap")
def overlap(
    held_out: str = typer.Argument(..., help="Prepared corpus dataset to check, e.g. whurs19."),
    against: str = typer.Argument(..., help="Prepared corpus dataset it must not share images with, e.g. aid."),
    out: Optional[Path] = typer.Option(None, "--out", help="Corpus folder (default: $RSRAG_CACHE/corpus)."),
    as_json: bool = typer.Option(False, "--json", help="Print {file name: file name it duplicates} as JSON."),
) -> None:
    """Images of one corpus dataset that are the same frame as an image of another (grey thumbnails,
    cosine > 0.95): the list the manifest's `seen_in` holds for a held-out dataset."""
    from rsrag.data.corpus import load_corpus, near_duplicates

    with user_errors():
        paths = [r.path for r in load_corpus(held_out, root=out)]
        others = [r.path for r in load_corpus(against, root=out)]
        found = near_duplicates(paths, others)
    pairs = {p.name: o.name for p, (o, _) in sorted(found.items(), key=lambda kv: kv[0].name)}
    if as_json:
        typer.echo(json.dumps(pairs, indent=1))
    else:
        for path, (other, cosine) in sorted(found.items(), key=lambda kv: kv[0].name):
            typer.echo(f"{path.name}\t{other.name}\t{cosine:.3f}")
    typer.echo(f"{len(found)} of {len(paths)} {held_out} images are in {against}", err=True)
