"""Indexing scenes: stream every chip of every scene into a Library, reading while the model computes.

One reader thread walks the scenes window by window (never a whole scene in memory), reads each chip
through GDAL at the chip size, drops chips that are mostly nodata, computes its footprint and the
model's input, and hands batches to the caller's thread, which only runs the model and commits the
vectors to the index in chunks. The queue between the two is short,
so memory stays bounded by a few batches whatever the scene size. Chips whose ids are already in the
index are not read again, so an interrupted build resumes where it stopped. A scene that cannot be
opened, or a window that cannot be read (a corrupt tile of a COG), is reported and skipped; the rest
goes on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from rsrag.geo.bands import BandRuleError
from rsrag.geo.chips import chip_bounds, chip_id, chip_place, chip_record
from rsrag.geo.footprint import Footprint, FootprintError, footprints
from rsrag.geo.scene import Scene, SceneError, SceneReader, find_scenes, open_scene
from rsrag.geo.tiling import ChipWindow, Tiling, chip_windows, count_chips

log = logging.getLogger(__name__)
READ_GROUP = 256  # chips read, placed and handed on together (a few row strips of a large scene)
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


def _chips(scenes: Sequence[Scene], tiling: Tiling, bands: str | Sequence[str | int] | None, existing: set[str],
           report: SceneIndexReport, preprocess: Any) -> Iterator[tuple[Any, np.ndarray]]:
    """(record, model input) for every chip worth embedding, scene by scene, a row strip at a time
    (`SceneReader.read_many`): read, checked for nodata, placed and preprocessed here, in the reader
    thread, so the model's thread only runs the model."""
    for scene in scenes:
        try:
            picked = scene.pick(bands)
            windows = list(chip_windows(scene, tiling))
        except (SceneError, BandRuleError, ValueError) as exc:
            report.failed.append((str(scene.source), str(exc)))
            continue
        todo = [c for c in windows if chip_id(scene, c) not in existing]
        report.skipped_existing += len(windows) - len(todo)
        if not todo:
            continue
        try:
            reader = SceneReader(scene, picked)
        except SceneError as exc:
            report.failed.append((str(scene.source), str(exc)))
            continue
        names = [b.name or b.common or str(b.index) for b in picked]
        with reader:
            for start in range(0, len(todo), READ_GROUP):
                group = todo[start:start + READ_GROUP]
                places = _places(scene, group, report)
                read = reader.read_many([chip.window for chip in group], tiling.size, planar=True)
                for chip, place, result in zip(group, places, read):
                    if isinstance(result, SceneError):
                        report.failed.append((chip_id(scene, chip), str(result)))
                        continue
                    image, valid = result
                    if 1.0 - valid > tiling.max_nodata:
                        report.skipped_nodata += 1
                        continue
                    if place is False:  # its footprint failed (reported by _places)
                        continue
                    yield chip_record(scene, chip, tiling.size, names, reader.stretch, place), preprocess.from_planar(image)


def _places(scene: Scene, chips: Sequence[ChipWindow], report: SceneIndexReport) -> list[Footprint | None | bool]:
    """Footprints of chips of one scene in one reprojection call (None without a CRS; False, reported,
    where a footprint cannot be reprojected)."""
    if scene.crs is None:
        return [None] * len(chips)
    try:
        return list(footprints(scene.crs, [chip_bounds(scene, c) for c in chips]))
    except FootprintError:
        out: list[Footprint | None | bool] = []
        for chip in chips:
            try:
                out.append(chip_place(scene, chip))
            except FootprintError as exc:
                report.failed.append((chip_id(scene, chip), f"{scene.source}: {exc}"))
                out.append(False)
        return out


def _batches_in_background(items: Iterator, size: int, depth: int = 3) -> Iterator[list]:
    """Batches of `items`, produced by a reader thread `depth` batches ahead of the consumer."""
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(value: Any) -> bool:
        """Hand one value to the consumer; False when the consumer has gone away."""
        while not stop.is_set():
            try:
                out.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        batch: list = []
        try:
            for item in items:
                batch.append(item)
                if len(batch) == size:
                    if not put(batch):
                        return
                    batch = []
            if batch and not put(batch):
                return
            put(done)
        except BaseException as exc:  # re-raised in the consumer
            put(exc)

    thread = threading.Thread(target=produce, name="scene-reader", daemon=True)
    thread.start()
    try:
        while True:
            batch = out.get()
            if batch is done:
                return
            if isinstance(batch, BaseException):
                raise batch
            yield batch
    finally:
        stop.set()
        thread.join(timeout=5)


def index_scenes(library, sources: Iterable[str | Path], *, tiling: Tiling = Tiling(),
                 bands: str | Sequence[str | int] | None = None, sensor: str | None = None, datetime: Any = None,
                 batch_size: int = 16, chunk_size: int = 2048,
                 progress: Callable[[int, int], None] | None = None) -> SceneIndexReport:
    """Tile, read, embed and add every chip of the scenes under `sources` to `library` (module doc).

    `bands`: the band rule (rsrag.geo.bands); `sensor`/`datetime`: override what is read from the
    files. `progress(done, total)` is called after every batch, total being the chips of all scenes.
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
        chips = _chips(scenes, tiling, bands, existing, report, encoder.preprocess)
        for batch in _batches_in_background(chips, batch_size):
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
