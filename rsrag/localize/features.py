"""A scene's features for localization: its chip windows, one vector per chip, patch vectors per chip.

Chips are overlapping square windows at several scales (`chip_windows_for`: the same rule as
`rsrag.geo.tiling`, last chip moved inside the scene), each read at the encoder's input size. One
pass of the encoder's dense path per chip gives both levels: the chip vector is the normalised mean of
its unnormalised cells (for rs-lite exactly its image vector) and the cells, normalised, are the patch
vectors. Patch vectors are kept as int8 with one scale per vector (`PatchBank`, 4x smaller than
float32; cosine to the float vector about 0.999), and only for the scales that are refined.

Memory stays bounded by the features themselves (never the scene's pixels): windows are read one
batch at a time through `SceneReader` (with the scene's one stretch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from rsrag.encoders import Encoder, l2_normalize
from rsrag.geo.heatmap import Window
from rsrag.geo.tiling import window_starts


@dataclass
class PatchBank:
    """int8 patch vectors (n, g, g, dim) with one float32 scale per vector: value ~ q * scale."""

    q: np.ndarray
    scale: np.ndarray

    @classmethod
    def quantize(cls, patches: np.ndarray) -> "PatchBank":
        patches = np.asarray(patches, np.float32)
        scale = np.maximum(np.abs(patches).max(-1), 1e-12) / 127.0
        q = np.clip(np.round(patches / scale[..., None]), -127, 127).astype(np.int8)
        return cls(q, scale.astype(np.float32))

    @classmethod
    def concat(cls, banks: Sequence["PatchBank"]) -> "PatchBank":
        return cls(np.concatenate([b.q for b in banks]), np.concatenate([b.scale for b in banks]))

    def __len__(self) -> int:
        return len(self.q)

    def take(self, rows: np.ndarray) -> "PatchBank":
        return PatchBank(self.q[rows], self.scale[rows])

    def vectors(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Dequantised float32 patch vectors of some chips (all by default)."""
        q, s = (self.q, self.scale) if rows is None else (self.q[rows], self.scale[rows])
        return q.astype(np.float32) * s[..., None]


@dataclass
class SceneFeatures:
    """Everything a query needs about one scene (see module doc)."""

    width: int
    height: int
    windows: np.ndarray  # (n, 4) int64 col, row, width, height in scene pixels
    scales: np.ndarray  # (n,) int
    vectors: np.ndarray  # (n, dim) float32 unit chip vectors
    patch_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # chips with patch vectors
    patches: PatchBank | None = None  # aligned with patch_rows
    transform: Any = None
    crs: Any = None
    scene_id: str | None = None
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def nbytes(self) -> int:
        extra = self.patches.q.nbytes + self.patches.scale.nbytes if self.patches is not None else 0
        return self.vectors.nbytes + self.windows.nbytes + extra


def chip_windows_for(width: int, height: int, chip: int, scales: Sequence[int], overlap: float) -> list[tuple[Window, int]]:
    """((col, row, side, side), scale) for every chip: side = chip * scale scene pixels, neighbours
    overlapping by `overlap` (a fraction of the side), scale by scale, row by row."""
    if not 0 <= overlap < 1:
        raise ValueError("overlap is a fraction of the chip in [0, 1)")
    out = []
    for scale in _useful_scales(width, height, chip, scales):
        side = max(1, int(chip * scale))
        stride = max(1, int(round(side * (1 - overlap))))
        for row in window_starts(height, side, stride):
            for col in window_starts(width, side, stride):
                out.append(((col, row, min(side, width), min(side, height)), int(scale)))
    return out


def _useful_scales(width: int, height: int, chip: int, scales: Sequence[int]) -> list[int]:
    """The scales whose chips fit in the scene (the finest always, as one chip of the whole scene when
    even it does not fit): a chip larger than the scene would only repeat the whole scene."""
    ordered = sorted(int(s) for s in scales)
    return [s for i, s in enumerate(ordered) if i == 0 or chip * s <= min(width, height)]


def count_windows(width: int, height: int, chip: int, scales: Sequence[int], overlap: float) -> int:
    """How many chips `chip_windows_for` makes (without listing them)."""
    total = 0
    for scale in _useful_scales(width, height, chip, scales):
        side = max(1, int(chip * scale))
        stride = max(1, int(round(side * (1 - overlap))))
        per = [1 if extent <= side else math.ceil((extent - side) / stride) + 1 for extent in (width, height)]
        total += per[0] * per[1]
    return total


def encode_chips(encoder: Encoder, images: Iterable[np.ndarray], dense: Iterable[bool], batch_size: int = 32,
                 progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Chip vectors (n, dim) and the patch vectors (g, g, dim) of the chips flagged `dense`, one
    encoder pass per chip: the dense path when the encoder has one, else image vectors only."""
    vectors: list[np.ndarray] = []
    patches: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    flags: list[bool] = []
    has_dense = True

    def flush() -> None:
        nonlocal has_dense
        if not batch:
            return
        arrays = np.stack(batch)
        raw = None
        if has_dense:
            try:
                raw = encoder.encode_patch_arrays(arrays, normalize=False)
            except NotImplementedError:
                has_dense = False
        if raw is None:
            vectors.append(encoder.encode_arrays(arrays))
        else:
            vectors.append(l2_normalize(raw.mean((1, 2))))
            patches.extend(l2_normalize(raw[i]) for i, f in enumerate(flags) if f)
        if progress:
            progress(len(batch))
        batch.clear()
        flags.clear()

    for image, want in zip(images, dense):
        batch.append(encoder.preprocess.to_array(Image.fromarray(image)))
        flags.append(bool(want))
        if len(batch) == batch_size:
            flush()
    flush()
    dim = encoder.dim
    return (np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)), patches


def _assemble(width: int, height: int, chips: list[tuple[Window, int]], vectors: np.ndarray,
              patches: list[np.ndarray], dense_scale: int | None, **extra: Any) -> SceneFeatures:
    windows = np.array([w for w, _ in chips], np.int64).reshape(-1, 4)
    scales = np.array([s for _, s in chips], np.int64)
    rows = np.flatnonzero(scales == dense_scale) if dense_scale is not None and patches else np.zeros(0, np.int64)
    bank = PatchBank.quantize(np.stack(patches)) if len(rows) else None
    return SceneFeatures(width, height, windows, scales, vectors, rows, bank, **extra)


def array_features(encoder: Encoder, image: np.ndarray, *, chip: int = 224, scales: Sequence[int] = (1, 2),
                   overlap: float = 0.5, dense: bool = True, batch_size: int = 32, transform: Any = None,
                   crs: Any = None, progress: Callable[[int], None] | None = None) -> SceneFeatures:
    """Features of an in-memory RGB image (h, w, 3) uint8 (a mosaic, an upload without a CRS)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"expected an (h, w, 3) RGB image, got shape {image.shape}")
    height, width = image.shape[:2]
    chips = chip_windows_for(width, height, chip, scales, overlap)
    size = encoder.preprocess.size
    dense_scale = min(scales) if dense else None

    def crops() -> Iterator[np.ndarray]:
        for (col, row, w, h), _ in chips:
            crop = image[row:row + h, col:col + w, :3]
            yield np.asarray(Image.fromarray(crop).resize((size, size), Image.BICUBIC)) if crop.shape[:2] != (size, size) else crop

    vectors, patches = encode_chips(encoder, crops(), (s == dense_scale for _, s in chips), batch_size, progress)
    return _assemble(width, height, chips, vectors, patches, dense_scale, transform=transform, crs=crs)


def scene_features(encoder: Encoder, path: str | Path, *, chip: int = 224, scales: Sequence[int] = (1, 2),
                   overlap: float = 0.5, dense: bool = True, bands: str | None = None, batch_size: int = 32,
                   max_chips: int | None = None, progress: Callable[[int], None] | None = None) -> SceneFeatures:
    """Features of a scene file, streamed through the tiler once (windows read a batch at a time).
    `max_chips`: refuse (ValueError naming both numbers) a scene that would need more chips."""
    from rsrag.geo import SceneReader, open_scene

    scene = open_scene(path)
    chips = chip_windows_for(scene.width, scene.height, chip, scales, overlap)
    if max_chips is not None and len(chips) > max_chips:
        raise ValueError(f"{path}: {scene.width}x{scene.height} px needs {len(chips)} chips, over the limit of "
                         f"{max_chips} chips for a scene that is not indexed; index it (`rsrag index scenes`) "
                         "to localize in it at any size")
    size = encoder.preprocess.size
    dense_scale = min(scales) if dense else None
    with SceneReader(scene, scene.pick(bands)) as reader:
        images = (reader.read(window, (size, size))[0] for window, _ in chips)
        vectors, patches = encode_chips(encoder, images, (s == dense_scale for _, s in chips), batch_size, progress)
    return _assemble(scene.width, scene.height, chips, vectors, patches, dense_scale,
                     transform=scene.transform if scene.crs is not None else None, crs=scene.crs,
                     scene_id=scene.id, notes=list(scene.notes))


__all__ = ["PatchBank", "SceneFeatures", "array_features", "chip_windows_for", "count_windows", "encode_chips",
           "scene_features"]
