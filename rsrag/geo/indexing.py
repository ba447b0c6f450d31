"""Indexing scenes: stream every chip of every scene into a Library, reading beside the model.

The scenes are walked window by window (never a whole scene in memory), READ_GROUP chips at a time:
a few reader threads, each with its own handle on the scene and its own vertical band of it, read
the group's chips through GDAL at the chip size, drop chips that are mostly nodata, and compute each
footprint and model input; the caller's thread runs the model on the group and commits the vectors
to the index in chunks. Reading and the model take turns when both run on the CPU, and overlap
when the model runs elsewhere (`_scene_chips`). Memory stays bounded by one group (two when
overlapping) whatever the scene size. Chips whose ids are already in the index are not read again,
so an interrupted build resumes where it stopped. A scene that cannot be opened, or a window that
cannot be read (a corrupt tile of a COG), is reported and skipped; the rest goes on.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from rsrag.encoders.decoding import batched
from rsrag.geo.bands import BandRuleError
from rsrag.geo.chips import chip_bounds, chip_id, chip_place, chip_record
from rsrag.geo.footprint import Footprint, FootprintError, footprints
from rsrag.geo.scene import Scene, SceneError, SceneReader, find_scenes, open_scene
from rsrag.geo.tiling import ChipWindow, Tiling, chip_windows, count_chips

log = logging.getLogger(__name__)
READ_GROUP = 128  # chips read together before the model runs on them (2.6 rows of a Sentinel-2 tile)
GDAL_CACHE_BYTES = 128 * 2**20  # GDAL's block cache while reading scenes (its default is 5% of RAM): two
# rows of 512 px blocks of a 4-band 16-bit Sentinel-2 tile (92 MB), so strips crossing a block boundary
# decode each block once (64 MB decoded them again: 0.8 ms more per chip)


@dataclass
class SceneIndexReport:
    """What `index_scenes` did: chips added / skipped, and the scenes and windows that failed."""

    scenes: int = 0
    chips: int = 0
    added: int = 0
    skipped_existing: int = 0
    skipped_nodata: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (scene or chip, error)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    encode_seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"scenes": self.scenes, "chips": self.chips, "added": self.added,
                "skipped_existing": self.skipped_existing, "skipped_nodata": self.skipped_nodata,
                "failed": len(self.failed), "failures": [{"source": s, "error": e} for s, e in self.failed[:100]],
                "notes": self.notes, "seconds": round(self.seconds, 2),
                "chips_per_second": round(self.added / self.seconds, 1) if self.seconds else None}


def open_scenes(sources: Iterable[str | Path], report: SceneIndexReport, *, sensor: str | None = None,
                datetime: Any = None) -> list[Scene]:
    """Every scene under the sources (files, folders, STAC items); failures go to the report."""
    scenes = []
    for source in sources:
        try:
            paths = find_scenes(source)
        except SceneError as exc:
            report.failed.append((str(source), str(exc)))
            continue
        for path in paths:
            try:
                scene = open_scene(path, sensor=sensor, datetime=datetime)
            except (SceneError, BandRuleError) as exc:
                log.warning("skipping scene: %s", exc)
                report.failed.append((str(path), str(exc)))
                continue
            report.notes += [f"{path}: {note}" for note in scene.notes]
            scenes.append(scene)
    return scenes


@dataclass
class _Part:
    """What one reader thread made of some chips of a scene: (position in the group, record, model
    input) per chip worth embedding, the chips that failed, and how many were mostly nodata."""

    chips: list[tuple[int, Any, np.ndarray]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    nodata: int = 0


def _read_part(reader: SceneReader, chips: Sequence[tuple[int, ChipWindow]], tiling: Tiling, names: list[str],
               preprocess: Any) -> _Part:
    """Read, check for nodata, place and preprocess `chips` (position, window) of the reader's scene,
    a row strip at a time (`SceneReader.read_many`)."""
    part = _Part()
    if not chips:
        return part
    scene = reader.scene
    windows = [chip for _, chip in chips]
    places, part.failed = _places(scene, windows)
    read = reader.read_many([chip.window for chip in windows], tiling.size, planar=True)
    for (position, chip), place, result in zip(chips, places, read):
        if isinstance(result, SceneError):
            part.failed.append((chip_id(scene, chip), str(result)))
            continue
        image, valid = result
        if 1.0 - valid > tiling.max_nodata:
            part.nodata += 1
            continue
        if place is False:  # its footprint failed (in part.failed already)
            continue
        part.chips.append((position, chip_record(scene, chip, tiling.size, names, reader.stretch, place),
                           preprocess.from_planar(image)))
    return part


def _split_by_column(scene: Scene, chips: Sequence[ChipWindow], parts: int) -> list[list[tuple[int, ChipWindow]]]:
    """(position, chip) lists, one per reader: reader i takes the i-th vertical band of the scene, so
    each of GDAL's blocks is decoded by one reader's dataset handle (a handle's block cache is its own)."""
    out: list[list[tuple[int, ChipWindow]]] = [[] for _ in range(parts)]
    for position, chip in enumerate(chips):
        out[min(parts - 1, max(0, chip.window[0] * parts // max(1, scene.width)))].append((position, chip))
    return out


def _chips(scenes: Sequence[Scene], tiling: Tiling, bands: str | Sequence[str | int] | None, existing: set[str],
           report: SceneIndexReport, preprocess: Any, readers: int, overlap: bool
           ) -> Iterator[tuple[Any, np.ndarray]]:
    """(record, model input) for every chip worth embedding, scene by scene (`_scene_chips`)."""
    with ThreadPoolExecutor(readers, thread_name_prefix="scene-reader") as pool:
        for scene in scenes:
            yield from _scene_chips(pool, scene, tiling, bands, existing, report, preprocess, readers, overlap)


def _scene_chips(pool: ThreadPoolExecutor, scene: Scene, tiling: Tiling, bands: str | Sequence[str | int] | None,
                 existing: set[str], report: SceneIndexReport, preprocess: Any, readers: int, overlap: bool
                 ) -> Iterator[tuple[Any, np.ndarray]]:
    """The chips of one scene, READ_GROUP at a time, each group read by `readers` threads at once,
    each with its own handle on the scene.

    With `overlap` they read the next group while the caller runs the model on this one: right when
    the model computes elsewhere (a GPU). Without it, reading and the model take turns, each with
    every core: faster when the model runs on the same CPU cores, where a reader thread that
    preempts one of the model's threads stalls the others at their next barrier.
    """
    try:
        picked = scene.pick(bands)
        windows = list(chip_windows(scene, tiling))
    except (SceneError, BandRuleError, ValueError) as exc:
        report.failed.append((str(scene.source), str(exc)))
        return
    todo = [c for c in windows if chip_id(scene, c) not in existing]
    report.skipped_existing += len(windows) - len(todo)
    if not todo:
        return
    handles: list[SceneReader] = []
    try:
        handles.append(SceneReader(scene, picked))  # computes the scene's stretch, which the others share
        handles += [SceneReader(scene, picked, stretch=handles[0].stretch) for _ in range(readers - 1)]
    except SceneError as exc:
        report.failed.append((str(scene.source), str(exc)))
        for handle in handles:
            handle.close()
        return
    names = [b.name or b.common or str(b.index) for b in picked]

    def read(start: int) -> list[Future]:
        """Start reading the group at `start`: one part per handle (a handle serves one thread)."""
        group = _split_by_column(scene, todo[start:start + READ_GROUP], readers)
        return [pool.submit(_read_part, h, g, tiling, names, preprocess) for h, g in zip(handles, group)]

    reading: list[Future] = []
    try:
        for start in range(0, len(todo), READ_GROUP):
            reading = reading or read(start)
            parts = [f.result() for f in reading]  # the handles are free again
            following = start + READ_GROUP
            reading = read(following) if overlap and following < len(todo) else []
            for part in parts:
                report.failed += part.failed
                report.skipped_nodata += part.nodata
            ordered = sorted((c for part in parts for c in part.chips), key=lambda c: c[0], reverse=True)
            del parts
            while ordered:  # handed on one by one, each input freed once the model has it
                _, record, tensor = ordered.pop()
                yield record, tensor
    finally:
        wait(reading)  # a consumer that stopped early: no handle closes under a reader
        for handle in handles:
            handle.close()


def _places(scene: Scene, chips: Sequence[ChipWindow]) -> tuple[list[Footprint | None | bool], list[tuple[str, str]]]:
    """Footprints of chips of one scene in one reprojection call (None without a CRS; False where a
    footprint cannot be reprojected, with the (chip, error) failures)."""
    if scene.crs is None:
        return [None] * len(chips), []
    try:
        return list(footprints(scene.crs, [chip_bounds(scene, c) for c in chips])), []
    except FootprintError:
        out: list[Footprint | None | bool] = []
        failed = []
        for chip in chips:
            try:
                out.append(chip_place(scene, chip))
            except FootprintError as exc:
                failed.append((chip_id(scene, chip), f"{scene.source}: {exc}"))
                out.append(False)
        return out, failed


def index_scenes(library, sources: Iterable[str | Path], *, tiling: Tiling = Tiling(),
                 bands: str | Sequence[str | int] | None = None, sensor: str | None = None, datetime: Any = None,
                 batch_size: int = 16, chunk_size: int = 2048, readers: int | None = None,
                 overlap: bool | None = None, progress: Callable[[int, int], None] | None = None) -> SceneIndexReport:
    """Tile, read, embed and add every chip of the scenes under `sources` to `library` (module doc).

    `bands`: the band rule (rsrag.geo.bands); `sensor`/`datetime`: override what is read from the
    files. `readers`: reader threads (default: one per CPU core, at most 4); `overlap`: read the next
    group of chips while the model runs (default: when the encoder computes off the CPU, see
    `_scene_chips`).
    `progress(done, total)` is called after every batch, total being the chips of all scenes.
    """
    import rasterio

    t0 = time.perf_counter()
    report = SceneIndexReport()
    scenes = open_scenes(sources, report, sensor=sensor, datetime=datetime)
    report.scenes = len(scenes)
    total = sum(count_chips(s, tiling) for s in scenes)
    report.chips = total
    existing = set(library.rows(["id"]).column("id").to_pylist()) if len(library) else set()
    encoder = library.encoder
    pending_records: list = []
    pending_vectors: list[np.ndarray] = []
    done = 0

    def commit() -> None:
        if pending_records:
            library.add_embedded(pending_records, np.concatenate(pending_vectors), chunk_size=chunk_size)
            report.added += len(pending_records)
            pending_records.clear()
            pending_vectors.clear()

    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        readers = readers or max(1, min(4, os.cpu_count() or 1))
        if overlap is None:
            overlap = str(encoder.device) != "cpu"
        chips = _chips(scenes, tiling, bands, existing, report, encoder.preprocess, readers, overlap)
        for batch in batched(chips, batch_size):
            t1 = time.perf_counter()
            vectors = encoder.encode_arrays(np.stack([tensor for _, tensor in batch]))
            report.encode_seconds += time.perf_counter() - t1
            pending_records.extend(record for record, _ in batch)
            pending_vectors.append(vectors)
            done += len(batch)
            if len(pending_records) >= chunk_size:
                commit()
            if progress:
                progress(min(done + report.skipped_existing + report.skipped_nodata, total), total)
        commit()
    report.seconds = time.perf_counter() - t0
    if progress:
        progress(total, total)
    return report
