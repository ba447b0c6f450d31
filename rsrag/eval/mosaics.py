"""Synthetic scenes stitched from labelled benchmark chips, with their ground truth per pixel.

Localization (and change detection) need large scenes where it is known what is where; no such
annotated scenes ship with the data, so they are built: an n x m grid of RSICD / UCM chips of one
split (test for reporting, val for choosing settings; never train, which the encoders saw), every chip
resized to one cell size, with the label of every cell and a pixel mask for any class.

- `load_labelled_chips(split)`: the labelled chips of a split (RSICD's noisy `playfields` label left out).
- `build_mosaic(cells, labels, cell=..., blend=...)`: a mosaic from an explicit grid of cell images (what
  change detection uses to make a t1/t2 pair that differs in chosen cells).
- `sample_mosaics(chips, n, ...)`: seeded target/distractor layouts (`MosaicSpec`, ids only, so 200 of
  them cost nothing); `render(spec, chips)` reads their images.

Borders: `blend=0` puts chips edge to edge (plain); `blend=b` extends every chip b pixels past its cell
and cross-fades neighbours over those 2b pixels with linear ramps ("seamless"), so a cell boundary is
not a hard edge a model could key on. The label grid / mask stay the cell boundaries.

Distractors never come from the target's confusable group (`CONFUSABLE`: e.g. a "dense residential"
query over a medium-residential chip is not wrong, so counting it as a miss would measure the labels,
not the localizer). A mosaic takes all its chips from one dataset, so class names mean one thing in it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from rsrag.data import load_dataset

DATASETS = ("rsicd", "ucm")
NOISY_LABELS = {"playfields"}  # RSICD's catch-all mix of several classes
# classes that answer each other's queries; normalised names (lower case, letters only)
CONFUSABLE: tuple[frozenset[str], ...] = (
    frozenset({"denseresidential", "mediumresidential", "sparseresidential", "mobilehomepark", "buildings"}),
    frozenset({"playground", "stadium", "baseballfield", "baseballdiamond", "tenniscourt"}),
    frozenset({"bridge", "river", "viaduct", "overpass", "freeway", "intersection"}),
    frozenset({"bareland", "desert"}),
    frozenset({"meadow", "farmland", "agricultural"}),
    frozenset({"airport", "runway", "airplane"}),
    frozenset({"center", "commercial", "square", "church", "school", "industrial", "railwaystation"}),
    frozenset({"port", "harbor", "beach", "resort"}),
    frozenset({"parking", "parkinglot"}),
    frozenset({"forest", "park"}),
    frozenset({"pond", "river"}),
)


def label_key(label: str) -> str:
    """A label's normalised name: lower case letters only ("DenseResidential" -> "denseresidential")."""
    return "".join(ch for ch in label.lower() if ch.isalpha())


def confusable(a: str, b: str) -> bool:
    """Whether two labels may answer each other's queries (the same class, or one `CONFUSABLE` group)."""
    ka, kb = label_key(a), label_key(b)
    return ka == kb or any(ka in group and kb in group for group in CONFUSABLE)


@dataclass(frozen=True)
class LabelledChip:
    """One benchmark image with its scene class."""

    id: str
    path: Path
    label: str
    dataset: str


def load_labelled_chips(split: str, datasets: Sequence[str] = DATASETS, root: str | Path | None = None) -> list[LabelledChip]:
    """The labelled chips of `split` ("val" or "test"; "train" is refused: the encoders trained on it)."""
    if split not in ("val", "test"):
        raise ValueError(f"mosaics are built from the val or test split, not {split!r}")
    chips = []
    for name in datasets:
        for record in load_dataset(name, split, root=root):
            if record.label and label_key(record.label) not in NOISY_LABELS:
                chips.append(LabelledChip(record.id, Path(record.path), record.label, name))
    return chips


@dataclass
class Mosaic:
    """A stitched scene: the image, every cell's label and chip id, and the cell size."""

    image: np.ndarray  # (rows * cell, cols * cell, 3) uint8
    labels: list[list[str]]  # [row][col]
    cell: int
    ids: list[list[str]] = field(default_factory=list)
    target: str | None = None  # the class the mosaic was sampled for

    @property
    def grid_shape(self) -> tuple[int, int]:
        return len(self.labels), len(self.labels[0])

    def cell_mask(self, label: str | None = None) -> np.ndarray:
        """(rows, cols) bool: the cells of `label` (default: the target class), by exact label."""
        label = label if label is not None else self.target
        return np.array([[cell == label for cell in row] for row in self.labels], bool)

    def mask(self, label: str | None = None) -> np.ndarray:
        """(H, W) bool pixel mask of the cells of `label` (default: the target class)."""
        return np.kron(self.cell_mask(label), np.ones((self.cell, self.cell), bool)).astype(bool)

    def cell_windows(self) -> list[tuple[int, int, int, int]]:
        """Every cell's window (col_off, row_off, width, height) in pixels, row by row."""
        rows, cols = self.grid_shape
        return [(c * self.cell, r * self.cell, self.cell, self.cell) for r in range(rows) for c in range(cols)]


def _ramp(side: int, blend: int) -> np.ndarray:
    """1-D weights over a chip extended by `blend` px each side: a linear rise over 2*blend px
    centred on the cell edge, 1 inside."""
    if blend <= 0:
        return np.ones(side, np.float32)
    x = np.arange(side, dtype=np.float32) + 0.5
    rise = np.clip(x / (2 * blend), 0, 1)
    return np.minimum(rise, rise[::-1]).astype(np.float32)


def build_mosaic(cells: Sequence[Sequence[np.ndarray | Image.Image | str | Path]], labels: Sequence[Sequence[str]], *,
                 cell: int = 224, blend: int = 0, ids: Sequence[Sequence[str]] | None = None,
                 target: str | None = None) -> Mosaic:
    """Stitch a grid of cell images ([row][col]: arrays, PIL images or paths) into one mosaic (module
    doc for `blend`). Every image is resized to `cell` (+ 2*blend) pixels square."""
    rows, cols = len(cells), len(cells[0])
    if any(len(r) != cols for r in cells) or len(labels) != rows or any(len(r) != cols for r in labels):
        raise ValueError("cells and labels must be grids of the same shape")
    if not 0 <= blend < cell // 2:
        raise ValueError(f"blend must be in [0, {cell // 2}) pixels")
    side = cell + 2 * blend
    height, width = rows * cell, cols * cell
    acc = np.zeros((height + 2 * blend, width + 2 * blend, 3), np.float32)
    weight = np.zeros((height + 2 * blend, width + 2 * blend), np.float32)
    ramp = _ramp(side, blend)
    w2d = np.outer(ramp, ramp)
    for r in range(rows):
        for c in range(cols):
            image = _as_image(cells[r][c]).resize((side, side), Image.BICUBIC)
            pixels = np.asarray(image, np.float32)
            y, x = r * cell, c * cell  # in the padded canvas the chip starts `blend` before its cell
            acc[y:y + side, x:x + side] += pixels * w2d[..., None]
            weight[y:y + side, x:x + side] += w2d
    canvas = acc / np.maximum(weight, 1e-6)[..., None]
    image = np.clip(canvas[blend:blend + height, blend:blend + width], 0, 255).round().astype(np.uint8)
    return Mosaic(image, [list(r) for r in labels], cell, [list(r) for r in ids] if ids else [], target)


def _as_image(value: np.ndarray | Image.Image | str | Path) -> Image.Image:
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    if isinstance(value, np.ndarray):
        return Image.fromarray(value.astype(np.uint8)).convert("RGB")
    with Image.open(value) as im:
        return im.convert("RGB")


@dataclass(frozen=True)
class MosaicSpec:
    """A sampled layout: which chip goes in which cell, and the target class."""

    index: int
    dataset: str
    target: str
    ids: tuple[tuple[str, ...], ...]  # [row][col] chip ids
    blend: int


def chips_by_dataset(chips: Sequence[LabelledChip], what: str = "mosaics") -> dict[str, dict[str, list[LabelledChip]]]:
    """dataset -> label -> chips (in id order, so seeded sampling is reproducible); an error when empty."""
    by_dataset: dict[str, dict[str, list[LabelledChip]]] = {}
    for chip in sorted(chips, key=lambda c: c.id):
        by_dataset.setdefault(chip.dataset, {}).setdefault(chip.label, []).append(chip)
    if not by_dataset:
        raise ValueError(f"no labelled chips to build {what} from")
    return by_dataset


def sample_mosaics(chips: Sequence[LabelledChip], n: int, *, rows: int = 6, cols: int = 6, targets: tuple[int, int] = (1, 4),
                   blends: Sequence[int] = (0, 16), seed: int = 0, min_per_class: int = 4) -> list[MosaicSpec]:
    """`n` seeded layouts: each picks a dataset, then a target class uniformly among its classes with
    at least `min_per_class` chips, then 1..4 (`targets`) distinct target chips in random cells, the
    other cells distinct chips of non-confusable classes; `blend` cycles through `blends`."""
    rng = random.Random(seed)
    by_dataset = chips_by_dataset(chips, "mosaics")
    datasets = sorted(by_dataset)
    specs = []
    for i in range(n):
        dataset = datasets[i % len(datasets)]
        classes = by_dataset[dataset]
        eligible = sorted(label for label, items in classes.items() if len(items) >= min_per_class)
        target = rng.choice(eligible)
        k = rng.randint(targets[0], min(targets[1], len(classes[target]), rows * cols))
        distractors = [c for label, items in classes.items() if not confusable(label, target) for c in items]
        if len(distractors) < rows * cols - k:
            raise ValueError(f"{dataset}: too few distractor chips for {target!r} in a {rows}x{cols} mosaic")
        picked = rng.sample(classes[target], k) + rng.sample(distractors, rows * cols - k)
        order = list(range(rows * cols))
        rng.shuffle(order)
        grid = [[""] * cols for _ in range(rows)]
        for slot, chip in zip(order, picked):
            grid[slot // cols][slot % cols] = chip.id
        specs.append(MosaicSpec(i, dataset, target, tuple(tuple(r) for r in grid), blends[i % len(blends)]))
    return specs


def render(spec: MosaicSpec, chips: Sequence[LabelledChip] | dict[str, LabelledChip], cell: int = 224) -> Mosaic:
    """The mosaic of a sampled layout (reads its chips' images)."""
    lookup = chips if isinstance(chips, dict) else {c.id: c for c in chips}
    cells = [[lookup[i].path for i in row] for row in spec.ids]
    labels = [[lookup[i].label for i in row] for row in spec.ids]
    return build_mosaic(cells, labels, cell=cell, blend=spec.blend, ids=spec.ids, target=spec.target)


__all__ = ["CONFUSABLE", "DATASETS", "LabelledChip", "Mosaic", "MosaicSpec", "build_mosaic", "confusable", "label_key",
           "load_labelled_chips", "render", "sample_mosaics"]
