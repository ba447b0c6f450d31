"""Features of an indexed scene: its stored chip vectors, plus patch vectors kept compact on disk.

A scene indexed with `rsrag index scenes` already has one vector per chip (with its window and scale)
in the index; a query reuses them, so a new text costs a text encoding and a matrix product, not a
pass over the pixels. Patch vectors are not in the index (49 per chip would multiply it by 49): they
are computed once per scene on first use, from the chips of the finest indexed scale read back exactly
as they were embedded (`rsrag.geo.ChipSource`), and kept as int8 (`PatchBank`) in
`cache_dir()/localize/` (memory-mapped when read), keyed by the index folder, the scene and its chip ids (a rebuilt scene gets a
new file). Loaded features are kept in memory for the last few scenes, per index table version.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from rsrag.config import cache_dir
from rsrag.localize.features import PatchBank, SceneFeatures, encode_chips
from rsrag.localize.localizer import LocalizeError

KEEP_SCENES = 4
_MEMORY: OrderedDict[tuple, SceneFeatures] = OrderedDict()
_LOCK = threading.Lock()


def patch_file(library: Any, scene_id: str, ids: list[str]) -> Path:
    """The folder where a scene's patch vectors are cached (see module doc)."""
    digest = hashlib.sha1("\n".join([str(library.location), scene_id, *ids]).encode()).hexdigest()[:16]
    return cache_dir() / "localize" / f"{library.name}-{digest}"


def save_patches(path: Path, rows: np.ndarray, bank: PatchBank) -> Path:
    """Write a scene's patch store (chip rows, int8 vectors, scales) as .npy files in folder `path`,
    made complete under a temporary name and then renamed, so a reader never sees half of it."""
    import shutil

    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, array in (("rows", rows), ("q", bank.q), ("scale", bank.scale)):
        np.save(tmp / f"{name}.npy", np.ascontiguousarray(array))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return path


def load_patches(path: Path) -> tuple[np.ndarray, PatchBank] | None:
    """A scene's patch store, memory-mapped (a query reads only the chips it refines); None if absent."""
    if not (path / "scale.npy").is_file():
        return None
    return (np.load(path / "rows.npy"),
            PatchBank(np.load(path / "q.npy", mmap_mode="r"), np.load(path / "scale.npy", mmap_mode="r")))


def indexed_features(library: Any, scene_id: str, *, dense: bool = True,
                     progress: Callable[[int], None] | None = None) -> SceneFeatures:
    """A scene's features from an index (module doc); LocalizeError when the index has no such scene."""
    key = (str(library.location), library.version, scene_id, dense)
    with _LOCK:
        if key in _MEMORY:
            _MEMORY.move_to_end(key)
            return _MEMORY[key]
    columns = ["id", "path", "window", "scale", "size", "bands", "stretch", "vector"]
    if "scene" not in library.columns():
        raise LocalizeError(f"index {library.name!r} holds no scene chips; index a scene with `rsrag index scenes`")
    table = library.rows(columns, filters={"scene": scene_id})
    if not table.num_rows:
        raise LocalizeError(f"index {library.name!r} has no chips of scene {scene_id!r}")
    ids = table.column("id").to_pylist()
    windows = np.array([[int(v) for v in str(w).split(",")] for w in table.column("window").to_pylist()], np.int64)
    scales = np.asarray(table.column("scale").to_pylist(), np.int64)
    vectors = np.stack(table.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    path = str(table.column("path")[0].as_py())
    from rsrag.geo import open_scene

    scene = open_scene(path, scene_id=scene_id)
    features = SceneFeatures(scene.width, scene.height, windows, scales, vectors,
                             transform=scene.transform if scene.crs is not None else None, crs=scene.crs,
                             scene_id=scene_id, notes=list(scene.notes))
    if dense:
        store = patch_file(library, scene_id, ids)
        loaded = load_patches(store)
        if loaded is None:
            loaded = _compute_patches(library, table, scales, progress)
            if loaded is not None:
                save_patches(store, *loaded)
        if loaded is not None:
            features.patch_rows, features.patches = loaded
    with _LOCK:
        _MEMORY[key] = features
        while len(_MEMORY) > KEEP_SCENES:
            _MEMORY.popitem(last=False)
    return features


def _compute_patches(library: Any, table: Any, scales: np.ndarray,
                     progress: Callable[[int], None] | None) -> tuple[np.ndarray, PatchBank] | None:
    """Patch vectors of the finest-scale chips, read back as embedded; None without a dense path."""
    from rsrag.geo import ChipSource

    rows = np.flatnonzero(scales == scales.min())
    encoder = library.encoder
    paths = table.column("path").to_pylist()
    metas = table.select(["window", "size", "bands", "stretch"]).to_pylist()
    source = ChipSource()
    size = encoder.preprocess.size
    try:
        images = (source.read(paths[i], metas[i], size) for i in rows)
        _, patches = encode_chips(encoder, images, (True for _ in rows), progress=progress)
    finally:
        source.close()
    if not patches:
        return None
    return rows, PatchBank.quantize(np.stack(patches))


def forget() -> None:
    """Drop the in-memory features (tests; a server reloading)."""
    with _LOCK:
        _MEMORY.clear()


__all__ = ["forget", "indexed_features", "load_patches", "patch_file", "save_patches"]
