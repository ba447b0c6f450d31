"""Building an index on a Ray cluster: `rsrag index build SOURCE --name NAME --ray ADDRESS|auto`.

The records still to embed become a Ray dataset of plain rows: `id`, `path`, and for a scene chip the
window, chip size, bands and stretch to read it with. The records themselves (captions, labels,
metadata of any type, a chip's footprint) stay on the driver, keyed by id. For scenes the driver
opens and tiles them and places each chip (cheap: no pixels but the stretch's samples); the workers
read the windows. Ray Data then runs:

1. read: `map_batches` (`read_batch`) decodes each image and preprocesses it with the encoder's
   `Preprocess` (`rsrag.encoders.decoding.decode_batches`, lenient: an unreadable image becomes a
   failed row and the build carries on, as in `Library.add`), or reads each chip's window
   (`rsrag.geo.SceneReader`) and marks the chips that are mostly nodata;
2. embed: `map_batches` over an actor pool (`Embedder`), one encoder per actor, rebuilt in the actor
   from the index's encoder *spec* (`create_encoder_from_spec`, which checks weight checksums) and
   checked against the index's encoder id, so every node computes the vectors a single-process build
   would. The read stage asks for the same resources, so Ray Data fuses it into the actors'
   processes: each actor reads what it embeds, no decoded pixels (600 KB an image) cross the object
   store, and read tasks never wait for CPU slots the actors hold. Ray Data spreads the actors over
   the nodes;
3. write: the embedded batches stream back to the driver (`iter_batches`), which commits them to the
   `Library` through `add_embedded`, `chunk_size` records at a time.

Why the driver writes, rather than Ray workers writing Lance fragments in parallel: an index is
LanceDB rows, FAISS and BM25 kept in step by one writer under the folder's lock, with rids reserved
and a commit counter bumped per commit (`rsrag.index.folder`). Parallel fragment writers would need a
second commit protocol for all of that, and a fragment written by a task that later died (and was
re-run elsewhere) would have to be found and dropped. The writer's share of the work is small: a
vector is 2 KB, and reading and the model are what run in parallel.

Exactly once per record, even when a node dies:
- ids already in the index are dropped before anything is read (resume, as in `Library.add`), so a
  killed build re-run embeds only what was not committed;
- the driver commits each id once: a row Ray delivers twice (a task re-run after its node died) is
  dropped, and `add_embedded` skips ids already in the index in any case;
- Ray rebuilds what a dead node held: Ray Data's actor pools restart dead actors and retry their
  tasks (its defaults `max_restarts=-1`, `max_task_retries=-1`), and lost blocks are recomputed
  from lineage. If the dataset still fails (an object lost for good, no node left to run on), the
  driver plans again with the records not yet committed and runs again, up to `attempts` times.

Every node must be able to read the records' paths: a shared filesystem (or the same data at the
same path on each node). Ray and Ray Data are an optional dependency (`pip install rsrag[ray]`).
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from rsrag.encoders.base import Preprocess
from rsrag.encoders.decoding import decode_batches
from rsrag.index.build import open_for_build, resolve_source
from rsrag.index.errors import EncoderMismatchError, LibraryError
from rsrag.index.folder import validate_index_name
from rsrag.index.library import AddReport, Library, unique_by_id

log = logging.getLogger(__name__)

OK = ""  # the status of a row that was read and embedded; anything else is its error message, or:
NODATA = "<nodata>"  # a scene chip mostly nodata, skipped as the single-process scene build skips it


class RayBuildError(LibraryError):
    """A distributed build cannot start (Ray missing, no cluster at the address) or did not finish."""


@dataclass
class RayBuildReport(AddReport):
    """An `AddReport` plus how the cluster ran it."""

    attempts: int = 0  # dataset runs: 1 unless a run failed (a node died) and the rest was run again
    skipped_nodata: int = 0  # scene chips mostly nodata
    actors: int = 0
    nodes: int = 0

    def to_dict(self) -> dict:
        return {**super().to_dict(), "attempts": self.attempts, "actors": self.actors, "nodes": self.nodes,
                "skipped_nodata": self.skipped_nodata}


def read_batch(batch: dict[str, np.ndarray], preprocess: Preprocess) -> dict[str, np.ndarray]:
    """Ray Data task: read and preprocess a batch of rows -> id, pixels, status. An image row is
    decoded from its file; a chip row (with a `window`) is read from its scene as the single-process
    scene build reads it (same bands, same stretch; `rsrag.geo`). A row that cannot be read gets zero
    pixels and its error as status; a chip mostly nodata gets NODATA."""
    ids = [str(i) for i in batch["id"]]
    pixels = np.zeros((len(ids), 3, preprocess.size, preprocess.size), np.float32)
    status = [OK] * len(ids)
    images = [pos for pos, window in enumerate(batch["window"]) if not window]
    paths = [str(batch["path"][pos]) for pos in images]
    for decoded in decode_batches(preprocess, paths, batch_size=max(1, len(paths)), strict=False):
        pixels[[images[pos] for pos in decoded.ok]] = decoded.arrays
        for pos, message in decoded.failures:
            status[images[pos]] = message or "unreadable image"
    chips = [pos for pos, window in enumerate(batch["window"]) if window]
    if chips:
        _read_chips(batch, chips, preprocess, pixels, status)
    return {"id": np.asarray(ids, dtype=object), "pixels": pixels, "status": np.asarray(status, dtype=object)}


def _read_chips(batch: dict[str, np.ndarray], chips: list[int], preprocess: Preprocess, pixels: np.ndarray,
                status: list[str]) -> None:
    """Fill `pixels` / `status` at the positions of chip rows, one scene reader per scene."""
    from rsrag.geo import SceneError, SceneReader, Stretch, open_scene
    from rsrag.geo.bands import BandRuleError

    readers: dict[tuple[str, str, str], Any] = {}
    try:
        for pos in chips:
            key = (str(batch["path"][pos]), str(batch["bands"][pos]), str(batch["stretch"][pos]))
            try:
                if key not in readers:
                    scene = open_scene(key[0])
                    readers[key] = SceneReader(scene, scene.pick(key[1] or None), Stretch.from_text(key[2]))
                side = int(batch["size"][pos])
                window = tuple(int(v) for v in str(batch["window"][pos]).split(","))
                image, valid = readers[key].read(window, (side, side))
            except (SceneError, BandRuleError) as exc:
                status[pos] = str(exc)
                continue
            if 1.0 - valid > float(batch["max_nodata"][pos]):
                status[pos] = NODATA
            else:
                pixels[pos] = preprocess.from_rgb(image)
    finally:
        for reader in readers.values():
            reader.close()


class Embedder:
    """Ray Data actor: one encoder, rebuilt from the index's encoder spec, embedding batches of pixels."""

    def __init__(self, spec: dict, encoder_id: str, threads: int | None = None) -> None:
        from rsrag.encoders.registry import EncoderSpec, create_encoder_from_spec, encoder_accepts

        spec_ = EncoderSpec.from_dict(spec)
        runtime = {"threads": threads} if threads and encoder_accepts(spec_.name, "threads") else {}
        self.encoder = create_encoder_from_spec(spec_, encoder_id=encoder_id, **runtime)
        if self.encoder.id != encoder_id:
            raise EncoderMismatchError(f"a Ray worker rebuilt encoder {self.encoder.id}, but the index was "
                                       f"built with {encoder_id}: install the same rsrag and weights on every node")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        status = np.asarray(batch["status"], dtype=object)
        ok = status == OK
        vectors = np.zeros((len(status), int(self.encoder.dim)), np.float32)
        if ok.any():
            vectors[ok] = self.encoder.encode_arrays(np.asarray(batch["pixels"])[ok])
        return {"id": batch["id"], "vector": vectors, "status": status}


def connect(address: str | None, runtime_env: dict | None = None) -> bool:
    """Join the Ray cluster at `address` ("auto": the one this machine belongs to); True when this
    call started the connection (so the caller should end it)."""
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data needs extras beyond ray itself)
    except ImportError as exc:
        raise RayBuildError(f"a --ray build needs Ray Data: pip install 'rsrag[ray]' ({exc})") from None
    if ray.is_initialized():
        return False
    host, _, port = (address or "").rpartition(":")
    if host and port.isdigit():  # ray.init retries an address nobody listens on for minutes
        try:
            socket.create_connection((host, int(port)), timeout=5.0).close()
        except OSError as exc:
            raise RayBuildError(f"no Ray cluster at {address}: {exc} (start one with `ray start --head`)") from None
    try:
        ray.init(address=address or "auto", runtime_env=runtime_env, logging_level=logging.WARNING,
                 log_to_driver=False)
    except ConnectionError as exc:
        raise RayBuildError(f"no Ray cluster at {address or 'auto'}: {exc} (start one with `ray start --head`)") \
            from None
    return True


def _cluster() -> tuple[int, float]:
    """(alive nodes, CPUs) of the connected cluster."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return len(nodes), float(ray.cluster_resources().get("CPU", 0.0))


@dataclass
class RayOptions:
    """How the cluster runs a build: `actors` encoders (default: one per `actor_cpus` of the
    cluster's CPUs) of `actor_cpus` CPUs each, fed `batch_size` rows at a time."""

    actors: int | None = None
    actor_cpus: float = 1.0
    batch_size: int = 32

    def actor_count(self, cpus: float) -> int:
        return self.actors or max(1, int(cpus // self.actor_cpus))


def _dataset(rows: list[dict], spec: dict, encoder_id: str, preprocess: Preprocess, actors: int,
             options: RayOptions):
    """The read -> embed pipeline over `rows` (module doc)."""
    import ray.data

    # one block per batch, and every stage takes a block as it comes (batch_size=None): a stage asked for
    # batch_size rows would wait to bundle small blocks together and leave workers idle
    blocks = max(1, -(-len(rows) // options.batch_size))
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    # the read stage asks for what the actors ask for, so Ray Data fuses it into the actors' processes:
    # each actor decodes the images it embeds (no pixels cross the object store), and read tasks never
    # wait for CPU slots the actors hold
    ds = ds.map_batches(read_batch, fn_kwargs={"preprocess": preprocess}, batch_size=None, batch_format="numpy",
                        num_cpus=options.actor_cpus)
    # Ray Data's actor pools restart dead actors and retry their tasks by default (max_restarts=-1,
    # max_task_retries=-1); tasks lost with a node are retried (max_retries) and lost blocks rebuilt
    return ds.map_batches(Embedder, fn_constructor_kwargs={"spec": spec, "encoder_id": encoder_id,
                                                           "threads": max(1, int(options.actor_cpus))},
                          batch_size=None, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
                          num_cpus=options.actor_cpus)


def _image_row(record: Any) -> dict:
    """The row Ray reads an image record from (the chip columns empty)."""
    return {"id": str(record.id), "path": str(record.path), "window": "", "size": 0, "bands": "", "stretch": "",
            "max_nodata": 1.0}


def build_index_ray(source: str | Path | Sequence, name: str, root: str | Path | None = None, *,
                    address: str | None = "auto", encoder: Any = None, index_type: str = "auto",
                    split: str | None = None, limit: int | None = None, create: bool = True,
                    options: RayOptions | None = None, chunk_size: int = 512, attempts: int = 3,
                    runtime_env: dict | None = None,
                    progress: Callable[[int, int], None] | None = None) -> tuple[Library, RayBuildReport]:
    """`build_index` run on the Ray cluster at `address` (module doc): create (or resume) index NAME
    and add SOURCE's records (a source string or a list of records).

    `options`: actors, their CPUs and the batch size (`RayOptions`); `chunk_size` records per LanceDB
    commit (what a killed driver can lose); `attempts` dataset runs at most (module doc).
    `runtime_env` goes to `ray.init` (e.g. a `worker_process_setup_hook` that registers a plugin
    encoder on the workers).
    """
    validate_index_name(name)
    records = list(source) if isinstance(source, (list, tuple)) else resolve_source(source, split, limit)
    lib = open_for_build(root, name, encoder, index_type, create)
    started = time.perf_counter()
    report = RayBuildReport()
    unique, report.duplicates = unique_by_id(records)
    existing = _existing_ids(lib)
    todo = {i: _image_row(rec) for i, rec in unique.items() if i not in existing}
    report.skipped = len(unique) - len(todo)
    _run(lib, unique, todo, report, options or RayOptions(), chunk_size, attempts, address, runtime_env, progress)
    report.seconds = time.perf_counter() - started
    lib.note_build(str(source) if isinstance(source, (str, Path)) else f"{len(records)} records", report)
    return lib, report


def build_scene_index_ray(sources: str | Path | Sequence[str | Path], name: str, root: str | Path | None = None, *,
                          address: str | None = "auto", encoder: Any = None, index_type: str = "auto",
                          tiling: Any = None, bands: str | None = None, sensor: str | None = None,
                          datetime: Any = None, create: bool = True, options: RayOptions | None = None,
                          chunk_size: int = 2048, attempts: int = 3, runtime_env: dict | None = None,
                          progress: Callable[[int, int], None] | None = None) -> tuple[Library, Any]:
    """`build_scene_index` run on the Ray cluster at `address`: the driver opens the scenes, tiles them
    and places each chip (footprint, record; `rsrag.geo`), the workers read, embed and drop the
    chips that are mostly nodata. Returns the index and a `rsrag.geo.SceneIndexReport`."""
    from rsrag.geo import SceneError, SceneIndexReport, SceneReader, Tiling, chip_id, chip_windows, count_chips
    from rsrag.geo.bands import BandRuleError
    from rsrag.geo.chips import chip_place, chip_record
    from rsrag.geo.footprint import FootprintError
    from rsrag.geo.indexing import open_scenes

    tiling = tiling or Tiling()
    lib = open_for_build(root, name, encoder, index_type, create)
    started = time.perf_counter()
    scene_report = SceneIndexReport()
    items = [sources] if isinstance(sources, (str, Path)) else list(sources)
    scenes = open_scenes(items, scene_report, sensor=sensor, datetime=datetime)
    scene_report.scenes = len(scenes)
    scene_report.chips = sum(count_chips(s, tiling) for s in scenes)
    existing = _existing_ids(lib)
    records: dict[str, Any] = {}
    todo: dict[str, dict] = {}
    for scene in scenes:
        try:
            picked = scene.pick(bands)
            every = list(chip_windows(scene, tiling))
            windows = [c for c in every if chip_id(scene, c) not in existing]
            with SceneReader(scene, picked) as reader:  # the scene's stretch, sampled once here
                stretch = reader.stretch
        except (SceneError, BandRuleError, ValueError) as exc:
            scene_report.failed.append((str(scene.source), str(exc)))
            continue
        scene_report.skipped_existing += len(every) - len(windows)
        names = [b.name or b.common or str(b.index) for b in picked]
        read_as = {"path": str(scene.source), "size": tiling.size, "bands": ",".join(names),
                   "stretch": stretch.to_text(), "max_nodata": tiling.max_nodata}
        for chip in windows:
            try:
                record = chip_record(scene, chip, tiling.size, names, stretch, chip_place(scene, chip))
            except FootprintError as exc:
                scene_report.failed.append((chip_id(scene, chip), f"{scene.source}: {exc}"))
                continue
            records[record.id] = record
            todo[record.id] = {"id": record.id, "window": ",".join(map(str, chip.window)), **read_as}
    report = RayBuildReport()
    _run(lib, records, todo, report, options or RayOptions(), chunk_size, attempts, address, runtime_env, progress)
    scene_report.added = report.added
    scene_report.skipped_nodata = report.skipped_nodata
    scene_report.failed += [(i, e) for i, _, e in report.failed]
    if report.attempts:
        scene_report.notes.append(f"ray: {report.nodes} node(s), {report.actors} actor(s), "
                                  f"{report.attempts} run(s)")
    scene_report.seconds = time.perf_counter() - started
    lib.note_build(", ".join(map(str, items)), AddReport(
        added=report.added, skipped=scene_report.skipped_existing, seconds=scene_report.seconds,
        failed=[(source, source, error) for source, error in scene_report.failed]))
    return lib, scene_report


def _existing_ids(lib: Library) -> set[str]:
    return set(lib.rows(["id"]).column("id").to_pylist()) if len(lib) else set()


def _run(lib: Library, records: dict[str, Any], todo: dict[str, dict], report: RayBuildReport,
         options: RayOptions, chunk_size: int, attempts: int, address: str | None, runtime_env: dict | None,
         progress: Callable[[int, int], None] | None) -> None:
    """Embed the `todo` rows (id -> row) on the cluster and commit their records as batches arrive;
    after a failed run, run again over what is not done yet, up to `attempts` runs (module doc)."""
    if not todo:
        return
    spec = lib.manifest["encoder"].get("spec")
    if not spec:
        raise RayBuildError(f"index {lib.name!r} keeps no encoder spec (its encoder was not made by "
                            f"create_encoder), so Ray workers cannot rebuild it; build without --ray")
    opened = connect(address, runtime_env)
    try:
        from ray.exceptions import RayError

        report.nodes, cpus = _cluster()
        report.actors = options.actor_count(cpus)
        preprocess = lib.encoder.preprocess  # the driver's encoder: the index's own (checked on open)
        done: set[str] = set()  # ids committed, failed or skipped by this build
        pending_ids: list[str] = []
        pending_vectors: list[np.ndarray] = []

        def commit() -> None:
            if pending_ids:
                add = lib.add_embedded([records[i] for i in pending_ids], np.stack(pending_vectors),
                                       chunk_size=chunk_size)
                report.added += add.added
                pending_ids.clear()
                pending_vectors.clear()

        while len(done) < len(todo):
            report.attempts += 1
            rows = [row for i, row in todo.items() if i not in done]
            ds = _dataset(rows, spec, lib.encoder_id, preprocess, report.actors, options)
            try:
                for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    for rid, vector, status in zip(batch["id"], batch["vector"], batch["status"]):
                        rid = str(rid)
                        if rid in done:  # delivered again by a re-run task
                            continue
                        done.add(rid)
                        if status == OK:
                            pending_ids.append(rid)
                            pending_vectors.append(vector)
                        elif status == NODATA:
                            report.skipped_nodata += 1
                        else:
                            report.failed.append((rid, todo[rid]["path"], str(status)))
                    if len(pending_ids) >= chunk_size:
                        commit()
                    if progress:
                        progress(len(done), len(todo))
                commit()
            except RayError as exc:
                commit()  # keep what arrived before the failure
                if report.attempts >= attempts:
                    raise RayBuildError(f"the Ray build failed {report.attempts} time(s); {len(done)} of "
                                        f"{len(todo)} records are in; run it again to resume: {exc}") from exc
                log.warning("Ray build run %d failed (%s); running the %d records not yet in again",
                            report.attempts, exc, len(todo) - len(done))
    finally:
        if opened:
            import ray

            ray.shutdown()
