"""Tiling: the grid of chip windows over a scene, at one or several scales.

A chip is `size` x `size` output pixels. At scale 1 one output pixel is one scene pixel, or, with
`gsd`, `gsd` metres (the scene is resampled on read); at scale s it covers s times as much ground
(a pyramid: `scales=(1, 2, 4)` gives 224 px chips at native resolution and at 2x and 4x coarser).
Neighbouring chips overlap by `overlap` output pixels, or metres with `unit="m"`. The last chip of a
row or column is moved back inside the scene rather than hanging over its edge, so every chip is
whole; a scene smaller than one chip gives one chip padded with nodata. Chips with more than
`max_nodata` of their pixels empty are skipped when read (see rsrag.geo.index).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

from rsrag.geo.scene import Scene, SceneError


@dataclass(frozen=True)
class Tiling:
    """How scenes are cut into chips (see module doc)."""

    size: int = 224
    overlap: float = 0.0
    unit: str = "px"  # unit of `overlap`: "px" (output pixels) or "m"
    gsd: float | None = None  # metres per output pixel at scale 1 (None: the scene's own)
    scales: tuple[int, ...] = (1,)
    max_nodata: float = 0.5

    def __post_init__(self) -> None:
        if self.size < 16:
            raise ValueError(f"chip size {self.size} is too small (at least 16 px)")
        if self.unit not in ("px", "m"):
            raise ValueError(f"overlap unit must be 'px' or 'm', not {self.unit!r}")
        if not self.scales or any(int(s) != s or s < 1 for s in self.scales):
            raise ValueError(f"scales must be whole numbers >= 1, got {self.scales!r}")
        if self.gsd is not None and self.gsd <= 0:
            raise ValueError("gsd must be positive")
        if not 0.0 <= self.max_nodata <= 1.0:
            raise ValueError("max_nodata is a fraction in [0, 1]")

    def native_factor(self, scene: Scene) -> float:
        """Scene pixels per output pixel at scale 1."""
        if self.gsd is None:
            return 1.0
        if scene.gsd is None:
            raise SceneError(f"{scene.source}: a target GSD needs a scene with a CRS")
        return self.gsd / scene.gsd


@dataclass(frozen=True)
class ChipWindow:
    """One chip: its window of the scene's reference grid and its pyramid scale."""

    col: int
    row: int
    width: int
    height: int
    scale: int

    @property
    def window(self) -> tuple[int, int, int, int]:
        return self.col, self.row, self.width, self.height


def window_starts(extent: int, side: int, stride: int) -> list[int]:
    """Offsets of windows of `side` every `stride` along `extent`, the last moved back inside the edge."""
    if extent <= side:
        return [0]
    last = extent - side
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


def chip_windows(scene: Scene, tiling: Tiling) -> Iterator[ChipWindow]:
    """Every chip window of a scene, scale by scale, row by row (no pixels are read)."""
    base = tiling.native_factor(scene)
    for scale in tiling.scales:
        side = max(1, round(tiling.size * scale * base))  # scene pixels per chip side
        if tiling.unit == "m":
            if scene.gsd is None:
                raise SceneError(f"{scene.source}: an overlap in metres needs a scene with a CRS")
            overlap = tiling.overlap / scene.gsd
        else:
            overlap = tiling.overlap * scale * base
        stride = max(1, side - int(math.floor(overlap)))
        if stride <= 0 or overlap >= side:
            raise ValueError(f"overlap {tiling.overlap}{tiling.unit} is not smaller than the chip")
        for row in window_starts(scene.height, side, stride):
            for col in window_starts(scene.width, side, stride):
                yield ChipWindow(col, row, side, side, scale)


def count_chips(scene: Scene, tiling: Tiling) -> int:
    return sum(1 for _ in chip_windows(scene, tiling))
