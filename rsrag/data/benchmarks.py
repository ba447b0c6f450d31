"""The benchmark datasets in the shared data folder: RSICD and UCM-captions.

Both are `<root>/<name>/captions.jsonl` plus `<root>/<name>/images/`, where `root` defaults to
`rsrag.config.data_root()` (the `RSRAG_DATA` environment variable). Ids are "<name>/<file stem>"
("rsicd/00001", "ucm/airplane00"); UCM keeps its caption id as metadata["ucm_id"].
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from rsrag.config import data_root
from rsrag.data.captions import cached_records
from rsrag.data.records import ImageRecord

SPLITS = ("train", "val", "test")


def load_rsicd(split: str | None = None, root: str | Path | None = None) -> list[ImageRecord]:
    """RSICD: 10,921 images (train 8,734 / val 1,093 / test 1,094), 31 labels, 5 captions each."""
    return _load_benchmark("rsicd", split, root)


def load_ucm(split: str | None = None, root: str | Path | None = None) -> list[ImageRecord]:
    """UCM-captions: 1,800 images (train 1,443 / val 177 / test 180), 18 labels, 5 captions each."""
    return _load_benchmark("ucm", split, root)


LOADERS: dict[str, Callable[..., list[ImageRecord]]] = {"rsicd": load_rsicd, "ucm": load_ucm}


def load_dataset(name: str, split: str | None = None, root: str | Path | None = None,
                 limit: int | None = None) -> list[ImageRecord]:
    """A benchmark dataset by name ("rsicd" or "ucm", case-insensitive); with `limit`, its first
    `limit` records (the quick runs and tests of every trainer)."""
    loader = LOADERS.get(name.strip().lower())
    if loader is None:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(LOADERS)}")
    records = loader(split=split, root=root)
    return records[:limit] if limit else records


def _load_benchmark(name: str, split: str | None, root: str | Path | None) -> list[ImageRecord]:
    """Records of one split (None: all), copied from the in-process cache."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}, or None for all")
    folder = (Path(root).expanduser() if root is not None else data_root()) / name
    captions = folder / "captions.jsonl"
    if not captions.is_file():
        raise FileNotFoundError(
            f"{name} dataset not found: no {captions}. Set RSRAG_DATA to the shared data folder "
            f"(the one holding rsicd/ and ucm/), or pass root=."
        )
    records = cached_records(captions, folder / "images", id_prefix=name)
    return [r.copy() for r in records if split is None or r.split == split]
