"""The corpus of label-only public scene-classification datasets: captions for their images, the
manifest that pins where they come from, building the corpus from local clones, and loading it.

What is in it is pinned by `corpus_manifest.json` (beside this module): per dataset the GitHub
repository, the full commit, the path inside it, how the class is read (`folder`: one sub-folder per
class; `filename`: a regular expression on the file name), the license, the image count per source
class and the rsrag label each source class maps to. `prepare_corpus` reads a local clone (a git
directory, read at the pinned commit with `git archive`, or a checked-out folder), refuses a count
that differs from the manifest, and writes

    <out>/<dataset>/<split>/<label>/<file>        the image bytes, unchanged
    <out>/<dataset>/records.jsonl                 {id, path, label, source_class, captions, dataset,
                                                   split, role, width, height}

`<out>` defaults to `RSRAG_CACHE/corpus`; the images never enter the repository. Each split folder is
a class folder, so `rsrag eval zeroshot --folder <out>/<dataset>/test` scores it as it stands.

Excluded data: no NWPU-RESISC45 image (nor NWPU-Captions or other sets built on it) and no EuroSAT
image is ever used, for training or for choosing anything: they are reserved for independent
evaluation. A manifest entry or source path naming them is refused, and any file or folder inside a
dataset whose name matches `EXCLUDED` is skipped and counted.

Splits: a dataset with role "train" is split train/val/test = 80/10/10 by a seeded hash of the
image id (stable across machines and runs, independent of file order), unless the manifest names a
benchmark to follow (`split_from`): RSICD's images are crops of AID's, under the same file names, so
an AID image takes the RSICD split of its file name and RSICD val/test never leak into training.
A "held-out" dataset is all "test", since nothing may be trained or tuned on it, except the images
the manifest lists as already present in a training source (`seen_in`: 635 of WHU-RS19's 1,005
images are in AID, hence cropped in RSICD): they go to "overlap", so `<dataset>/test` holds only
images no training source has. `near_duplicates` finds such images (`rsrag data overlap`).

Captions (RS5M-style, for label-only images): every label has a few synonymous phrases, crossed
with caption templates; each image gets `CAPTIONS_PER_IMAGE` of them, chosen by a hash of its id, so
captions are deterministic and vary between images of a class. The templates differ from the
zero-shot prompt templates (`rsrag.encoders.prompts.TEMPLATES`) so that training on them does not
fit the evaluation prompts word for word.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from PIL import Image

import numpy as np

from rsrag.config import cache_dir
from rsrag.data.benchmarks import load_dataset
from rsrag.data.records import ImageRecord
from rsrag.imageio import SUPPORTED_SUFFIXES, load_image

log = logging.getLogger(__name__)

MANIFEST_PATH = Path(__file__).with_name("corpus_manifest.json")
#: names of data that must never be used (matched case-insensitively against every path part)
EXCLUDED = re.compile(r"nwpu|resisc|eurosat", re.IGNORECASE)
SPLIT_SEED = "rsrag-corpus-v1"
SPLIT_FRACTIONS = (("train", 0.8), ("val", 0.1), ("test", 0.1))
CAPTIONS_PER_IMAGE = 5

CAPTION_TEMPLATES: tuple[str, ...] = (
    "a satellite photo of {}.",
    "an aerial image showing {}.",
    "{} seen from above.",
    "an earth observation image of {}.",
    "an overhead view of {}.",
    "this remote sensing scene shows {}.",
    "a bird's eye view of {}.",
    "this aerial image contains {}.",
)

#: label -> synonymous phrases (first: the plain reading). Labels follow RSICD / AID spelling.
CLASS_PHRASES: dict[str, tuple[str, ...]] = {
    "Airport": ("an airport", "an airfield with runways", "runways and terminal buildings"),
    "BareLand": ("bare land", "barren land with no vegetation", "an empty patch of bare soil"),
    "BaseballField": ("a baseball field", "a baseball diamond", "a ball park with a diamond-shaped infield"),
    "Beach": ("a beach", "a sandy shore along the sea", "a coastline with sand and waves"),
    "Bridge": ("a bridge", "a bridge over water", "a road bridge crossing a river"),
    "Center": ("a city center", "a large public building in the town centre", "a downtown civic centre"),
    "Church": ("a church", "a church building", "a cathedral with its surroundings"),
    "Commercial": ("a commercial area", "shops and office buildings", "a business district"),
    "DenseResidential": ("a dense residential area", "densely packed houses", "crowded urban housing"),
    "Desert": ("a desert", "sand dunes in a desert", "an arid sandy area"),
    "Farmland": ("farmland", "cultivated fields", "crop fields in a rural area"),
    "FootballField": ("a football field", "a soccer pitch", "a sports field with a running track"),
    "Forest": ("a forest", "dense trees", "woodland with a closed canopy"),
    "Industrial": ("an industrial area", "factories and warehouses", "industrial buildings"),
    "Meadow": ("a meadow", "grassland", "an open field of grass"),
    "MediumResidential": ("a medium density residential area", "houses with gardens", "a suburban neighbourhood"),
    "Mountain": ("mountains", "a mountainous area", "rugged hills and ridges"),
    "Park": ("a park", "an urban park with trees and lawns", "green parkland with paths"),
    "Parking": ("a parking lot", "a car park full of cars", "rows of parked cars"),
    "Playground": ("a playground", "a sports ground with a running track", "a school sports field"),
    "Pond": ("a pond", "a small lake", "a pond surrounded by land"),
    "Port": ("a port", "a harbour with ships", "docks and moored boats"),
    "RailwayStation": ("a railway station", "a train station with tracks", "railway platforms and tracks"),
    "Residential": ("a residential area", "houses and residential buildings", "a neighbourhood of homes"),
    "Resort": ("a resort", "a holiday resort with pools", "a leisure resort by green land"),
    "River": ("a river", "a winding river", "a river flowing through land"),
    "RiverOrLake": ("a river or lake", "a body of water", "a lake or river with its banks"),
    "School": ("a school", "school buildings and a playground", "a campus with school buildings"),
    "SparseResidential": ("a sparse residential area", "scattered houses among trees", "a few detached houses"),
    "Square": ("a square", "a public square", "an open plaza in a city"),
    "Stadium": ("a stadium", "a sports stadium with stands", "an arena with a pitch"),
    "StorageTanks": ("storage tanks", "round oil storage tanks", "cylindrical fuel tanks"),
    "Viaduct": ("a viaduct", "an elevated highway interchange", "overpasses and elevated roads"),
}


# ---- captions ------------------------------------------------------------------------------------
def class_captions(label: str) -> list[str]:
    """Every caption of a label: each phrase in each template (phrase-major order)."""
    phrases = CLASS_PHRASES.get(label)
    if phrases is None:
        raise ValueError(f"no caption phrases for label {label!r}; add it to CLASS_PHRASES")
    return [template.format(phrase) for phrase in phrases for template in CAPTION_TEMPLATES]


def image_captions(label: str, image_id: str, n: int = CAPTIONS_PER_IMAGE) -> list[str]:
    """`n` distinct captions of `label` for one image, chosen by a hash of its id (deterministic)."""
    pool = class_captions(label)
    ranked = sorted(pool, key=lambda caption: _hash(f"{image_id}\0{caption}"))
    chosen = ranked[:n]
    for i, caption in enumerate(chosen):  # a capital letter, as human captions have
        chosen[i] = caption[0].upper() + caption[1:]
    return chosen


def split_of(image_id: str, role: str) -> str:
    """train / val / test for a "train" dataset by a seeded hash of the id; always test when held out."""
    if role == "held-out":
        return "test"
    if role != "train":
        raise ValueError(f"unknown corpus role {role!r}; use train or held-out")
    u = _hash(f"{SPLIT_SEED}\0{image_id}") / 2**64
    edge = 0.0
    for split, fraction in SPLIT_FRACTIONS:
        edge += fraction
        if u < edge:
            return split
    return SPLIT_FRACTIONS[-1][0]


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


# ---- manifest ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CorpusSource:
    """One dataset of the manifest."""

    name: str  # corpus key, e.g. "aid"
    repository: str
    commit: str
    path: str  # folder inside the repository ("" = its root)
    class_from: str  # "folder" or "filename"
    filename_pattern: str | None  # with class_from "filename": regex whose group "cls" is the class
    role: str  # "train" or "held-out"
    classes: dict[str, dict]  # source class -> {"label": rsrag label, "count": n}
    split_from: str | None = None  # a benchmark whose split each file name takes (e.g. "rsicd")
    seen: frozenset[str] = frozenset()  # held out, but present in a training source: split "overlap"

    @property
    def count(self) -> int:
        return sum(c["count"] for c in self.classes.values())


def load_manifest(path: str | Path | None = None) -> dict[str, CorpusSource]:
    """The manifest's datasets by key (default: the committed `MANIFEST_PATH`); refuses entries
    naming excluded data or labels without caption phrases."""
    path = Path(path) if path is not None else MANIFEST_PATH
    raw = json.loads(path.read_text())
    sources = {}
    for name, entry in raw["datasets"].items():
        if any(EXCLUDED.search(text) for text in (name, entry["path"], entry["repository"])):
            raise ValueError(f"{path}: dataset {name!r} ({entry['path']}) is excluded data "
                             "(NWPU-RESISC45 / EuroSAT are reserved for independent evaluation)")
        seen_in = entry.get("seen_in") or {}
        source = CorpusSource(name, entry["repository"], entry["commit"], entry["path"].strip("/"),
                              entry["class_from"], entry.get("filename_pattern"), entry["role"],
                              entry["classes"], (entry.get("split_from") or {}).get("dataset"),
                              frozenset(seen_in.get("files", {})))
        for cls, info in source.classes.items():
            class_captions(info["label"])  # every label has caption phrases
        if source.count != entry["count"]:
            raise ValueError(f"{path}: {name} class counts sum to {source.count}, not its count {entry['count']}")
        split_of("x", source.role)  # a known role
        sources[name] = source
    return sources


# ---- reading a local clone -----------------------------------------------------------------------
def _is_git_dir(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir()


def iter_source_files(clone: Path, source: CorpusSource) -> Iterator[tuple[str, bytes]]:
    """(path relative to the dataset folder, bytes) of every file under `source.path` in a clone.

    A git directory, or a checkout whose `.git` is present, is read at the manifest's commit (an
    error if that commit is not in it); any other folder is read as it stands on disk."""
    clone = Path(clone).expanduser()
    if not clone.exists():
        raise FileNotFoundError(f"{source.name}: local clone not found: {clone}")
    git_dir = clone if _is_git_dir(clone) else clone / ".git" if (clone / ".git").exists() else None
    if git_dir is not None:
        yield from _iter_git(git_dir, source)
        return
    root = clone / source.path
    if not root.is_dir():
        raise FileNotFoundError(f"{source.name}: no folder {source.path!r} in {clone} "
                                f"(expected a clone of {source.repository})")
    log.warning("%s: %s is a plain folder; its commit cannot be checked against %s", source.name, clone,
                source.commit)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if not any(part.startswith(".") for part in relative.split("/")):
            yield relative, path.read_bytes()


def _iter_git(git_dir: Path, source: CorpusSource) -> Iterator[tuple[str, bytes]]:
    """Stream the dataset folder at the pinned commit out of `git archive` (no checkout needed)."""
    cmd = ["git", f"--git-dir={git_dir}", "archive", "--format=tar", source.commit, "--", source.path or "."]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    prefix = source.path + "/" if source.path else ""
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                if member.isfile() and member.name.startswith(prefix):
                    data = tar.extractfile(member).read()
                    yield member.name[len(prefix):], data
    except tarfile.ReadError:
        pass  # git wrote nothing: its error is reported below
    finally:
        proc.stdout.close()
        stderr = proc.stderr.read().decode(errors="replace").strip()
        proc.stderr.close()
        code = proc.wait()
    if code != 0:
        raise ValueError(f"{source.name}: cannot read {source.path!r} at commit {source.commit} from "
                         f"{git_dir} (a clone of {source.repository}?): {stderr}")


# ---- building the corpus -------------------------------------------------------------------------
def default_corpus_dir() -> Path:
    """`RSRAG_CACHE/corpus`."""
    return cache_dir() / "corpus"


def class_of(relative: str, source: CorpusSource) -> str:
    """The source class of a file (relative to the dataset folder), by the manifest's rule."""
    parts = relative.split("/")
    if source.class_from == "folder":
        if len(parts) < 2:
            raise ValueError(f"{source.name}: {relative!r} is not inside a class folder")
        return parts[0]
    if source.class_from == "filename":
        match = re.fullmatch(source.filename_pattern or "", Path(parts[-1]).stem)
        if match is None:
            raise ValueError(f"{source.name}: no class in file name {relative!r} "
                             f"(pattern {source.filename_pattern!r})")
        return match.group("cls")
    raise ValueError(f"{source.name}: unknown class_from {source.class_from!r}; use folder or filename")


@dataclass
class PrepareReport:
    """What `prepare_dataset` wrote and what it skipped."""

    dataset: str
    folder: Path
    n_images: int
    per_split: dict[str, int]
    skipped_excluded: list[str]


def prepare_dataset(source: CorpusSource, clone: str | Path, out: str | Path | None = None,
                    progress: Callable[[int], None] | None = None,
                    benchmark_root: str | Path | None = None) -> PrepareReport:
    """Build one dataset of the corpus from a local clone; counts must match the manifest exactly.

    Written to `<out>/<name>.partial` and moved to `<out>/<name>` only when complete and checked,
    so a failed run never leaves a half corpus behind. `progress(1)` is called per image read.
    `benchmark_root`: where the `split_from` benchmark is (default: `RSRAG_DATA`)."""
    if EXCLUDED.search(str(clone)):
        raise ValueError(f"{source.name}: refusing {clone}: NWPU-RESISC45 / EuroSAT data is reserved for "
                         "independent evaluation")
    out = Path(out).expanduser() if out is not None else default_corpus_dir()
    final, partial = out / source.name, out / f"{source.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        splits = _benchmark_splits(source.split_from, benchmark_root) if source.split_from else None
        records, skipped = _write_images(source, Path(clone), partial, progress, splits)
        _check_counts(source, records)
        with open(partial / "records.jsonl", "w") as f:
            for record in sorted(records, key=lambda r: r["id"]):
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    per_split: dict[str, int] = {}
    for record in records:
        per_split[record["split"]] = per_split.get(record["split"], 0) + 1
    return PrepareReport(source.name, final, len(records), dict(sorted(per_split.items())), skipped)


def _benchmark_splits(name: str, root: str | Path | None) -> dict[str, str]:
    """File name -> split of a benchmark dataset (its captions file only; images are not read)."""
    return {Path(r.path).name: r.split for r in load_dataset(name, root=root)}


def _split(source: CorpusSource, image_id: str, name: str, splits: dict[str, str] | None) -> str:
    if splits is not None:
        if name not in splits:
            raise ValueError(f"{source.name}: {name!r} is not in {source.split_from}, whose split it must follow")
        return splits[name]
    if name in source.seen:
        return "overlap"
    return split_of(image_id, source.role)


def _write_images(source: CorpusSource, clone: Path, folder: Path, progress: Callable[[int], None] | None,
                  splits: dict[str, str] | None = None) -> tuple[list[dict], list[str]]:
    records, skipped, seen = [], [], {}
    for relative, data in iter_source_files(clone, source):
        if EXCLUDED.search(relative):
            skipped.append(relative)
            continue
        name = relative.split("/")[-1]
        if Path(name).suffix.lower() not in SUPPORTED_SUFFIXES or name.startswith("."):
            continue
        source_class = class_of(relative, source)
        info = source.classes.get(source_class)
        if info is None:
            raise ValueError(f"{source.name}: {relative!r} is in class {source_class!r}, which the manifest "
                             f"does not list (known: {', '.join(sorted(source.classes))})")
        try:
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        except Exception as exc:  # Pillow raises many types for a broken file
            raise ValueError(f"{source.name}: {relative!r} is not a readable image: {exc}") from exc
        image_id = f"{source.name}/{source_class}/{Path(name).stem}"
        split = _split(source, image_id, name, splits)
        path = f"{split}/{info['label']}/{name}"
        if path in seen:
            raise ValueError(f"{source.name}: {relative!r} and {seen[path]!r} would both be written to {path}")
        seen[path] = relative
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        records.append({"id": image_id, "path": path, "label": info["label"], "source_class": source_class,
                        "captions": image_captions(info["label"], image_id), "dataset": source.name,
                        "split": split, "role": source.role, "width": width, "height": height})
        if progress is not None:
            progress(1)
    if skipped:
        log.warning("%s: skipped %d excluded file(s) (NWPU-RESISC45 / EuroSAT), e.g. %s",
                    source.name, len(skipped), skipped[0])
    return records, skipped


def _check_counts(source: CorpusSource, records: list[dict]) -> None:
    found: dict[str, int] = {}
    for record in records:
        found[record["source_class"]] = found.get(record["source_class"], 0) + 1
    wrong = [f"{cls}: {found.get(cls, 0)} found, {info['count']} expected"
             for cls, info in sorted(source.classes.items()) if found.get(cls, 0) != info["count"]]
    missing_seen = source.seen - {Path(record["path"]).name for record in records}
    if missing_seen:
        wrong.append(f"{len(missing_seen)} file(s) listed in seen_in not found, e.g. {sorted(missing_seen)[0]}")
    if wrong:
        raise ValueError(f"{source.name}: image counts differ from the manifest ({source.repository} @ "
                         f"{source.commit[:7]}, {source.path}/): " + "; ".join(wrong))


# ---- loading the prepared corpus -----------------------------------------------------------------
def load_corpus(dataset: str, split: str | None = None, root: str | Path | None = None) -> list[ImageRecord]:
    """Records of a prepared corpus dataset (all splits when `split` is None), sorted by id."""
    folder = (Path(root).expanduser() if root is not None else default_corpus_dir()) / dataset
    records_file = folder / "records.jsonl"
    if not records_file.is_file():
        raise FileNotFoundError(f"corpus dataset {dataset!r} not prepared: no {records_file}. "
                                "Run `rsrag data prepare --source NAME=CLONE` first.")
    records = []
    with open(records_file) as f:
        for line in f:
            row = json.loads(line)
            if split is None or row["split"] == split:
                meta = {k: row[k] for k in ("dataset", "source_class", "role", "width", "height")}
                records.append(ImageRecord(row["id"], folder / row["path"], row["split"], row["label"],
                                           list(row["captions"]), meta))
    return records


# ---- near duplicates -----------------------------------------------------------------------------
#: side of the grey thumbnails compared by `near_duplicates`
THUMB = 24
#: cosine of mean-removed thumbnails above which two images are the same scene (same frame at
#: another size or JPEG quality scores 0.99; different beach or desert textures up to about 0.92)
DUPLICATE_COSINE = 0.95


def thumbnail_vectors(paths: list[Path]) -> np.ndarray:
    """(n, THUMB*THUMB) unit vectors: grey, area-averaged thumbnails with their mean removed, so
    size, JPEG quality and brightness offsets do not matter (crops and flips do)."""
    out = np.zeros((len(paths), THUMB * THUMB), np.float32)
    for i, path in enumerate(paths):
        grey = np.asarray(load_image(path).convert("L").resize((THUMB, THUMB), Image.BOX), np.float32).ravel()
        grey -= grey.mean()
        out[i] = grey / max(float(np.linalg.norm(grey)), 1e-6)
    return out


def near_duplicates(paths: list[Path], others: list[Path], threshold: float = DUPLICATE_COSINE
                    ) -> dict[Path, tuple[Path, float]]:
    """Each of `paths` whose nearest image in `others` is the same frame: {path: (other, cosine)}."""
    if not paths or not others:
        return {}
    sim = thumbnail_vectors(paths) @ thumbnail_vectors(others).T
    best, nearest = sim.max(axis=1), sim.argmax(axis=1)
    return {paths[i]: (others[nearest[i]], round(float(best[i]), 4)) for i in np.flatnonzero(best > threshold)}
