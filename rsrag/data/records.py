"""The one record type every dataset loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence


@dataclass
class ImageRecord:
    """One image and what is known about it. `id` is unique within a dataset and keys the index."""

    id: str
    path: Path
    split: str | None = None
    label: str | None = None
    captions: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)

    def copy(self) -> "ImageRecord":
        """A copy whose captions and metadata can be edited without touching a loader's cache."""
        return ImageRecord(
            self.id, self.path, self.split, self.label, list(self.captions), dict(self.metadata)
        )


def class_names(records: Iterable[ImageRecord]) -> list[str]:
    """Sorted distinct labels (records without a label are ignored)."""
    return sorted({r.label for r in records if r.label is not None})


def check_unique_ids(
    records: Sequence[ImageRecord], source: object, locations: Sequence[str] | None = None
) -> None:
    """Refuse two records with one id: the index would silently keep only one of them.

    `locations[i]` says where record i came from (default: its path) so the error points at both.
    """
    seen: dict[str, int] = {}
    for i, record in enumerate(records):
        first = seen.setdefault(record.id, i)
        if first != i:
            places = locations if locations is not None else [r.path for r in records]
            raise ValueError(f"{source}: duplicate id {record.id!r} ({places[first]} and {places[i]})")
