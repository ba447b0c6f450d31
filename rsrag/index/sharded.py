"""`ShardedLibrary`: one index split into N shard Libraries, searched in parallel and merged.

Layout under the indexes root: the shards are ordinary indexes `NAME.000`, `NAME.001`, ... (each
one can be opened, inspected or served on its own, e.g. `rsrag serve --index NAME.001` on a
replica), and the folder `NAME/` holds only `shards.json`, the shard map (`ShardMap`): the scheme,
the shard names, and each shard's extents.

Schemes (which shard a record goes to):
- `hash`: a stable hash (BLAKE2b) of the record id, modulo N. Even load; every query asks every shard.
- `geo`: the S2 cell (level `level`, default 4: cells of about 600 km) of the record's centre
  lon/lat, hashed modulo N. S2 cells cover the sphere without the gaps and pole singularities of
  lon/lat or UTM grids and have nearly equal areas, so one level suits every latitude; the cell is
  computed with `s2cell`. Neighbouring cells land on different shards, so a region's records are
  spread over the shards (a continent's load stays balanced) while a small place query, inside one
  or two cells, touches one or two shards. Records without lon/lat go to their `hash` shard.

Extents: for each shard, the lon/lat box covering its records in each S2 cell (the footprint bbox
`minx..maxy` when a record has one, else its point; a box across the antimeridian is kept as its
two halves). A query with a place (`Place.boxes()`) or a `bbox` asks only the shards with an extent
overlapping every one of the query's boxes: a record that passes the filter must overlap them, and
it lies inside its shard's extents. Extents only grow (a delete leaves them, which costs a wasted
shard query, never a missed record); `recompute_extents` tightens them.

Merging: each shard returns its own top-k, and the top-k of the union is the top-k of those, by
score, ties by id (the unsharded index orders equal scores by insertion, so only hits with exactly
equal scores can come in another order). So for dense search (`search_vector`, `search_image`, `search_text` dense) over
exact (flat) shard indexes, the merged hits equal the unsharded index's, ids and scores (a record's
cosine does not depend on the other records). Over IVF/HNSW shards each shard is as approximate as
an unsharded index of its size.

BM25 is not equal to the unsharded one: each shard scores with its own statistics (document count,
document frequencies, mean document length, and the floor on negative idf from its own vocabulary),
so a record's BM25 score depends on which records share its shard, and the merge ranks those
shard-local scores. The matching records are the same (a record matches when it holds a query term
on any shard); with `hash` sharding the shard statistics approach the global ones as shards grow.
Hybrid search fuses, like `Library.search_text`, the top-`depth` dense list and the top-`depth` BM25
list by reciprocal rank, but over the merged lists: the dense ranks are exact, the BM25 ranks those
of the shard-local scores, and ties in the fused score (common: rank r in one list only gives the
same score in either list) are broken by id. A hybrid query no BM25 document matches therefore
equals the unsharded one.

Writes route to shards: `add`/`add_embedded` skip ids already on any shard, `upsert` replaces them
and, when a record's place moved it to another shard, deletes it from the old one; `delete` asks
every shard. Each shard keeps its own writer lock and crash safety; `shards.json` is rewritten
atomically under the group folder's lock. A `ShardedLibrary`, like a `Library`, is for one thread;
a server opens one per worker.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence, TypeVar

import numpy as np
import pyarrow as pa

from rsrag import fusion
from rsrag.encoders.base import Encoder, ImageInput
from rsrag.index.errors import IndexExistsError, IndexNotFoundError
from rsrag.index.filters import Filters
from rsrag.index.folder import MANIFEST, now, validate_index_name
from rsrag.index.fsutil import writer_lock
from rsrag.index.library import MODES, AddReport, Library, unique_by_id
from rsrag.index.rows import Hit
from rsrag.index.storage import Storage, location

if TYPE_CHECKING:
    from rsrag.geo import SceneIndexReport, Tiling
    from rsrag.geo.filters import Place

__all__ = ["ShardedLibrary", "ShardMap", "ShardMapFile", "open_index", "build_sharded", "build_sharded_scenes",
           "merge_hits", "fuse_hybrid", "SHARDS_FILE", "SCHEMES"]

SHARDS_FILE = "shards.json"
SCHEMES = ("hash", "geo")
DEFAULT_LEVEL = 4  # S2 level of the geo cells and of the extents' keys (~600 km cells)
Box = tuple[float, float, float, float]
T = TypeVar("T")


def stable_hash(text: str) -> int:
    """A hash of `text` that is the same in every process and release (unlike `hash`)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def _finite(value: Any) -> bool:
    """A finite number, as the store takes it for a float64 column (numpy numbers too, not bools)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value)


def record_boxes(metadata: Mapping[str, Any]) -> list[Box]:
    """Where a record lies for the place filters, as non-crossing lon/lat boxes: its footprint bbox
    (split in two when it crosses the antimeridian), else its lon/lat point; [] without either.
    The same choice as `rsrag.geo.filters.PlaceColumns`."""
    minx, miny, maxx, maxy = (metadata.get(c) for c in ("minx", "miny", "maxx", "maxy"))
    if all(_finite(v) for v in (minx, miny, maxx, maxy)):
        return _lon_parts((float(minx), float(miny), float(maxx), float(maxy)))
    lon, lat = metadata.get("lon"), metadata.get("lat")
    if _finite(lon) and _finite(lat):
        return [(float(lon), float(lat), float(lon), float(lat))]
    return []


def _lon_parts(box: Sequence[float]) -> list[Box]:
    """A box as non-crossing boxes (min_lon > max_lon: it crosses the antimeridian, two halves)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return [(x0, y0, x1, y1)] if x0 <= x1 else [(x0, y0, 180.0, y1), (-180.0, y0, x1, y1)]


@dataclass
class ShardMap:
    """The contents of `shards.json`: the scheme, the shard index names and their extents (see the
    module doc). Routing and shard selection live here so a router without the shards themselves
    (`rsrag.service.router`) routes exactly as `ShardedLibrary` does."""

    name: str
    shards: list[str]
    by: str = "hash"
    level: int = DEFAULT_LEVEL
    extents: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # shard -> cell key -> box
    last_build: dict | None = None
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.by not in SCHEMES:
            raise ValueError(f"unknown sharding scheme {self.by!r}; choose one of {', '.join(SCHEMES)}")
        if not self.shards:
            raise ValueError("a sharded index needs at least one shard")
        if not 0 <= self.level <= 30:
            raise ValueError(f"S2 level must be 0..30, not {self.level}")

    @staticmethod
    def shard_names(name: str, n: int) -> list[str]:
        return [validate_index_name(f"{name}.{i:03d}") for i in range(n)]

    # ---- persistence ---------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: Storage) -> "ShardMap":
        try:
            data = folder.read_json(SHARDS_FILE)
        except FileNotFoundError:
            raise IndexNotFoundError(f"no sharded index at {folder} ({SHARDS_FILE} missing)") from None
        return cls(name=data["name"], shards=list(data["shards"]), by=data["scheme"]["by"],
                   level=int(data["scheme"].get("level", DEFAULT_LEVEL)), extents=data.get("extents", {}),
                   last_build=data.get("last_build"))

    def to_dict(self) -> dict:
        return {"name": self.name, "shards": self.shards, "updated": now(),
                "scheme": {"by": self.by, "grid": "s2", "level": self.level},
                "extents": self.extents, **({"last_build": self.last_build} if self.last_build else {})}

    def save(self, folder: Storage) -> None:
        folder.write_json(SHARDS_FILE, self.to_dict())

    # ---- routing -------------------------------------------------------------------------------
    def cell(self, lon: float, lat: float) -> str:
        """The S2 cell token (at `level`) holding a lon/lat point."""
        import s2cell

        return s2cell.lat_lon_to_token(float(lat), float(lon), self.level)

    def shard_of(self, record_id: str, metadata: Mapping[str, Any] | None) -> str:
        """The shard a record belongs to under the scheme (see the module doc)."""
        n = len(self.shards)
        if self.by == "geo" and metadata:
            lon, lat = metadata.get("lon"), metadata.get("lat")
            if _finite(lon) and _finite(lat):
                return self.shards[stable_hash(self.cell(lon, lat)) % n]
        return self.shards[stable_hash(str(record_id)) % n]

    def add_extents(self, shard: str, metadata: Mapping[str, Any]) -> bool:
        """Grow the shard's extents to cover a record (keyed by the S2 cell of each box's centre);
        True when they grew."""
        grew = False
        for box in record_boxes(metadata):
            key = self.cell((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
            cur = self.extents.setdefault(shard, {}).get(key)
            new = list(box) if cur is None else [
                min(cur[0], box[0]), min(cur[1], box[1]), max(cur[2], box[2]), max(cur[3], box[3])]
            if new != cur:
                self.extents[shard][key], grew = new, True
        if grew:
            self._arrays.pop(shard, None)
        return grew

    def shards_for(self, place: "Place | None" = None, bbox: Sequence[float] | None = None) -> list[str]:
        """The shards that can hold a record passing the place and bbox filters: those with an extent
        overlapping each of the query's boxes (every shard when the query has no box)."""
        boxes = ([tuple(bbox)] if bbox is not None else []) + (place.boxes() if place is not None else [])
        if not boxes:
            return list(self.shards)
        return [s for s in self.shards if all(self._overlaps(s, q) for q in boxes)]

    def _overlaps(self, shard: str, query: Sequence[float]) -> bool:
        ext = self._arrays.get(shard)
        if ext is None:
            ext = self._arrays[shard] = np.array(list(self.extents.get(shard, {}).values()), float).reshape(-1, 4)
        for x0, y0, x1, y1 in _lon_parts(query):
            if np.any((ext[:, 2] >= x0) & (ext[:, 0] <= x1) & (ext[:, 3] >= y0) & (ext[:, 1] <= y1)):
                return True
        return False


# ---- merging (shared with the HTTP router) -----------------------------------------------------
def merge_hits(lists: Iterable[Sequence[T]], k: int, *, id_of: Callable[[T], str] = lambda h: h.id,
               score_of: Callable[[T], float] = lambda h: h.score) -> list[T]:
    """The top k of several ranked lists by score, ties by id; an id in two lists is kept once (its
    best entry). Exact when each list is its shard's exact top k."""
    merged = sorted((h for hits in lists for h in hits), key=lambda h: (-score_of(h), id_of(h)))
    out, seen = [], set()
    for hit in merged:
        if id_of(hit) not in seen:
            seen.add(id_of(hit))
            out.append(hit)
            if len(out) == k:
                break
    return out


def fuse_hybrid(dense: Sequence[T], bm25: Sequence[T], k: int, weights: tuple[float, float] = (1.0, 1.0), *,
                id_of: Callable[[T], str] = lambda h: h.id,
                score_of: Callable[[T], float] = lambda h: h.score) -> list[tuple[T, float, dict[str, float]]]:
    """Reciprocal-rank fusion of a merged dense list and a merged BM25 list, as `Library.search_text`
    fuses its own two lists: (entry, fused score, {"dense": s, "bm25": s}) for the top k, ties by id."""
    lists = {"dense": [(id_of(h), score_of(h)) for h in dense], "bm25": [(id_of(h), score_of(h)) for h in bm25]}
    fused = fusion.rrf(lists, weights=dict(zip(lists, weights)))
    parts: dict[str, dict[str, float]] = {}
    entry: dict[str, T] = {}
    for name, hits in (("dense", dense), ("bm25", bm25)):
        for h in hits:
            parts.setdefault(id_of(h), {})[name] = score_of(h)
            entry.setdefault(id_of(h), h)
    return [(entry[i], fused[i], parts[i]) for i in fusion.ranked(fused, k)]


class ShardMapFile:
    """`shards.json` of a sharded index folder, reloaded when a writer has replaced it (checked with
    one `stat` per call): what a search, or a router, routes by."""

    def __init__(self, folder: Storage) -> None:
        self.folder = folder
        self._stamp, self._checked = self.stamp(), time.monotonic()
        self._map = ShardMap.load(self.folder)

    @classmethod
    def of(cls, root: str | Path | Storage | None, name: str) -> "ShardMapFile":
        """The shard map of sharded index `name` under `root` (a folder or `s3://` URI)."""
        return cls(location(root).child(validate_index_name(name)))

    def stamp(self) -> tuple:
        stamp = self.folder.stamp(SHARDS_FILE)
        if not stamp:
            raise IndexNotFoundError(f"no sharded index at {self.folder} ({SHARDS_FILE} missing)")
        return stamp

    def current(self) -> ShardMap:
        """The map, checked for a newer one on every call in a local folder (one `stat`), at most once
        a second on an object store (one HEAD request)."""
        if self.folder.local_path is None and time.monotonic() - self._checked < 1.0:
            return self._map
        stamp, self._checked = self.stamp(), time.monotonic()
        if stamp != self._stamp:
            self._map, self._stamp = ShardMap.load(self.folder), stamp
        return self._map

    def replace(self, shard_map: ShardMap) -> None:
        """Write a new map (the caller holds the folder's writer lock) and use it from now on."""
        shard_map.save(self.folder)
        self._map, self._stamp = shard_map, self.stamp()


def _ranked(hits: list[Hit]) -> list[Hit]:
    for rank, hit in enumerate(hits, start=1):
        hit.rank = rank
    return hits


class ShardedLibrary:
    """N shard Libraries under one name (see the module doc); the reading, searching and writing
    methods mirror `Library`'s."""

    def __init__(self, root: str | Path | Storage | None, name: str, encoder: Encoder | None = None,
                 lock_timeout: float = 10.0, encoder_options: dict | None = None) -> None:
        """`root`: the indexes root (folder or `s3://` URI) holding `NAME/` and the shards."""
        self.root = location(root)
        self.location = self.root.child(validate_index_name(name))
        self.name = name
        self.lock_timeout = lock_timeout
        self._file = ShardMapFile(self.location)
        missing = [s for s in self._file.current().shards if not Library.exists(self.root, s)]
        if missing:
            raise IndexNotFoundError(f"sharded index {self.name!r}: shard(s) {', '.join(missing)} missing under "
                                     f"{self.root}")
        self.shards: dict[str, Library] = {
            s: Library(self.root.child(s), encoder=encoder, lock_timeout=lock_timeout, encoder_options=encoder_options)
            for s in self._file.current().shards}
        self._encoder = encoder
        self._shared = encoder is not None  # every shard holds the same encoder object
        self._pool: ThreadPoolExecutor | None = None
        self.last_searched: list[str] = []  # the shards the last search asked (which a place filter chose)

    # ---- opening -------------------------------------------------------------------------------
    @staticmethod
    def exists(root: str | Path | Storage | None, name: str) -> bool:
        return location(root).child(validate_index_name(name)).exists(SHARDS_FILE)

    @classmethod
    def open(cls, root: str | Path | None = None, name: str | None = None, *, encoder: Encoder | None = None,
             lock_timeout: float = 10.0, encoder_options: dict | None = None) -> "ShardedLibrary":
        if name is None:
            raise ValueError("ShardedLibrary.open needs an index name")
        if not cls.exists(root, name):
            raise IndexNotFoundError(f"no sharded index named {name!r} under {location(root)}; build one with "
                                     f"`rsrag index build SOURCE --name {name} --shards N`")
        return cls(root, name, encoder=encoder, lock_timeout=lock_timeout, encoder_options=encoder_options)

    @classmethod
    def create(cls, root: str | Path | None, name: str, *, shards: int = 4, by: str = "hash",
               level: int = DEFAULT_LEVEL, encoder: Encoder | str | None = None, encoder_name: str | None = None,
               index_type: str = "auto", exist_ok: bool = False, lock_timeout: float = 10.0) -> "ShardedLibrary":
        """Create N empty shards `NAME.000`.. for one encoder, and the shard map. With `exist_ok`, an
        existing sharded index of the same scheme is opened instead (resuming a build)."""
        from rsrag.encoders import create_encoder

        base = location(root)
        folder = base.child(validate_index_name(name))
        if folder.exists(SHARDS_FILE):
            if not exist_ok:
                raise IndexExistsError(f"sharded index {name!r} already exists under {base}")
            found = ShardMap.load(folder)
            if (len(found.shards), found.by) != (shards, by):
                raise IndexExistsError(f"sharded index {name!r} exists with {len(found.shards)} shards by "
                                       f"{found.by}, not {shards} by {by}")
            # no encoder named: the shards' own, rebuilt from their manifests
            return cls(base, name, encoder=create_encoder(encoder) if isinstance(encoder, str) else encoder,
                       lock_timeout=lock_timeout)
        if isinstance(encoder, str) or encoder is None:
            encoder = create_encoder(encoder or encoder_name)
        if folder.exists(MANIFEST):
            raise IndexExistsError(f"{name!r} is already an unsharded index under {base}")
        if shards < 1:
            raise ValueError(f"a sharded index needs at least one shard, not {shards}")
        shard_map = ShardMap(name, ShardMap.shard_names(name, shards), by, level)
        for shard in shard_map.shards:
            Library.create(root, shard, encoder=encoder, encoder_name=encoder_name, index_type=index_type,
                           exist_ok=True, lock_timeout=lock_timeout)
        with _map_lock(folder, lock_timeout):
            if not folder.exists(SHARDS_FILE):
                shard_map.save(folder)
        return cls(base, name, encoder=encoder, lock_timeout=lock_timeout)

    # ---- state ---------------------------------------------------------------------------------
    @property
    def shard_map(self) -> ShardMap:
        """The shard map, reloaded when another writer has rewritten it."""
        return self._file.current()

    @property
    def encoder(self) -> Encoder:
        """The shards' encoder (they share one), built from the first shard's manifest on first use."""
        if self._encoder is None:
            self._encoder = next(iter(self.shards.values())).encoder
        return self._encoder

    @property
    def encoder_id(self) -> str:
        return next(iter(self.shards.values())).encoder_id

    @property
    def dim(self) -> int:
        return next(iter(self.shards.values())).dim

    def __len__(self) -> int:
        return sum(len(lib) for lib in self.shards.values())

    def __repr__(self) -> str:
        return f"ShardedLibrary({self.name!r}, shards={len(self.shards)}, by={self.shard_map.by}, records={len(self)})"

    def info(self) -> dict:
        m = self.shard_map
        return {"name": self.name, "folder": str(self.location), "sharded": True, "scheme": {"by": m.by, "level": m.level},
                "records": len(self), "encoder": next(iter(self.shards.values())).manifest["encoder"],
                "shards": [{"name": s, "records": len(lib), "cells": len(m.extents.get(s, {})),
                            "index": lib.manifest["index"].get("type")} for s, lib in self.shards.items()],
                **({"last_build": m.last_build} if m.last_build else {})}

    def preload(self) -> "ShardedLibrary":
        self._map_all(lambda lib: lib.preload(), list(self.shards))
        return self

    def close(self) -> None:
        """Stop the search threads (they are made again on the next search)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _map_all(self, fn: Callable[[Library], T], names: Sequence[str]) -> list[T]:
        """`fn` on each named shard, in parallel threads (FAISS, BM25 and LanceDB release the GIL);
        inline for a single shard."""
        if len(names) <= 1:
            return [fn(self.shards[s]) for s in names]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=len(self.shards), thread_name_prefix=f"shard-{self.name}")
        return list(self._pool.map(lambda s: fn(self.shards[s]), names))

    def _targets(self, bbox: Sequence[float] | None, place: "Place | None") -> list[str]:
        self.last_searched = self.shard_map.shards_for(place, bbox)
        return self.last_searched

    # ---- searching -----------------------------------------------------------------------------
    def search_vector(self, vector: np.ndarray, k: int = 10, *, filters: Filters = None, where: str | None = None,
                      bbox: Sequence[float] | None = None, place: "Place | None" = None) -> list[Hit]:
        """Nearest records to an embedding (cosine) over the shards the filters can reach."""
        vector = np.asarray(vector, np.float32).reshape(-1)
        targets = self._targets(bbox, place)
        own = _place_copies(place, targets)
        lists = self._map_all(lambda lib: lib.search_vector(vector, k, filters=filters, where=where, bbox=bbox,
                                                            place=own[lib.name]), targets)
        return _ranked(merge_hits(lists, k))

    def search_text(self, query: str, k: int = 10, *, mode: str = "hybrid", filters: Filters = None,
                    where: str | None = None, bbox: Sequence[float] | None = None, place: "Place | None" = None,
                    weights: tuple[float, float] = (1.0, 1.0), depth: int | None = None,
                    vector: np.ndarray | None = None) -> list[Hit]:
        """`Library.search_text` over the shards (see the module doc for how BM25 and hybrid differ)."""
        if mode not in MODES:
            raise ValueError(f"unknown search mode {mode!r}; choose one of {', '.join(MODES)}")
        targets = self._targets(bbox, place)
        own = _place_copies(place, targets)
        if mode != "bm25" and vector is None:
            vector = self.encoder.encode_texts([query])[0]
        n = k if mode != "hybrid" else depth or max(50, 5 * k)

        def one(lib: Library) -> tuple[list[Hit], list[Hit]]:
            common = {"filters": filters, "where": where, "bbox": bbox, "place": own[lib.name]}
            dense = lib.search_text(query, n, mode="dense", vector=vector, **common) if mode != "bm25" else []
            bm25 = lib.search_text(query, n, mode="bm25", **common) if mode != "dense" else []
            return dense, bm25

        results = self._map_all(one, targets)
        dense = merge_hits([d for d, _ in results], n)
        bm25 = merge_hits([b for _, b in results], n)
        if mode != "hybrid":
            return _ranked(dense if mode == "dense" else bm25)
        return _ranked([dataclasses.replace(hit, score=score, parts=parts)
                        for hit, score, parts in fuse_hybrid(dense, bm25, k, weights)])

    def search_image(self, image: ImageInput, k: int = 10, *, filters: Filters = None, where: str | None = None,
                     bbox: Sequence[float] | None = None, place: "Place | None" = None,
                     exclude_ids: Sequence[str] = ()) -> list[Hit]:
        """Images most like `image`, encoded once and searched on every shard the filters reach."""
        vector = self.encoder.encode_images([image])[0]
        excluded = set(exclude_ids)
        hits = self.search_vector(vector, k + len(excluded), filters=filters, where=where, bbox=bbox, place=place)
        return _ranked([h for h in hits if h.id not in excluded][:k])

    # ---- reading -------------------------------------------------------------------------------
    def get(self, ids: Sequence[str]) -> list[Hit]:
        """Records by id (those that exist, in the order asked), from whichever shard holds them."""
        found = {h.id: h for hits in self._map_all(lambda lib: lib.get(ids), list(self.shards)) for h in hits}
        return _ranked([found[i] for i in map(str, ids) if i in found])

    def count(self, *, filters: Filters = None, where: str | None = None, bbox: Sequence[float] | None = None,
              place: "Place | None" = None) -> int:
        targets = self._targets(bbox, place)
        own = _place_copies(place, targets)
        return sum(self._map_all(lambda lib: lib.count(filters=filters, where=where, bbox=bbox, place=own[lib.name]),
                                 targets))

    def columns(self) -> list[str]:
        return next(iter(self.shards.values())).columns()

    def rows(self, columns: Sequence[str] | None = None, *, filters: Filters = None, where: str | None = None,
             bbox: Sequence[float] | None = None, place: "Place | None" = None) -> pa.Table:
        """`Library.rows` of every shard the filters reach, one table after the other."""
        targets = self._targets(bbox, place) or list(self.shards)[:1]
        own = _place_copies(place, targets)
        tables = self._map_all(lambda lib: lib.rows(columns, filters=filters, where=where, bbox=bbox,
                                                    place=own[lib.name]), targets)
        if not self.last_searched:
            return tables[0].slice(0, 0)
        # an empty shard's columns may have other types (none of its records set them): left out
        full = [t for t in tables if t.num_rows] or tables[:1]
        return pa.concat_tables(full, promote_options="permissive")

    def where_are(self, ids: Iterable[str]) -> dict[str, str]:
        """id -> the shard holding it, for the ids that are in the index."""
        ids = [str(i) for i in ids]
        held = self._map_all(lambda lib: [h.id for h in lib.get(ids)], list(self.shards))
        return {i: shard for shard, found in zip(self.shards, held) for i in found}

    # ---- writing -------------------------------------------------------------------------------
    def add(self, records: Iterable, *, upsert: bool = False, batch_size: int = 64, workers: int = 2,
            chunk_size: int = 512, progress: Callable[[int, int], None] | None = None) -> AddReport:
        """Embed and add records, each on its shard (`Library.add` there, so the vectors are exactly
        an unsharded build's), shard after shard with one shared encoder; ids on any shard are
        skipped, or replaced when `upsert` (see the module doc). `progress(done, total)` per batch."""
        t0 = time.perf_counter()
        todo, report, moved = self._plan(records, upsert)
        self._share_encoder()
        total, offset = sum(len(recs) for recs in todo.values()), 0
        for shard, recs in todo.items():
            if not recs:
                continue
            step = (lambda done, _n, before=offset: progress(before + done, total)) if progress else None
            _sum_into(report, self.shards[shard].add(recs, upsert=upsert, batch_size=batch_size, workers=workers,
                                                     chunk_size=chunk_size, progress=step))
            offset += len(recs)
        self._drop_moved(moved)
        report.seconds = time.perf_counter() - t0
        return report

    def _share_encoder(self) -> None:
        """Give every shard the one encoder (opened without one, each would build its own copy)."""
        if self._shared:
            return
        enc, first = self.encoder, next(iter(self.shards))  # the first shard built it
        self.shards = {name: lib if name == first else Library(lib.location, encoder=enc, lock_timeout=self.lock_timeout)
                       for name, lib in self.shards.items()}
        self._shared = True

    def add_embedded(self, records: Sequence, vectors: np.ndarray, *, upsert: bool = False,
                     chunk_size: int = 50_000) -> AddReport:
        """Add records with vectors computed elsewhere, each to its shard (same skip / upsert rules)."""
        t0 = time.perf_counter()
        vectors = np.asarray(vectors, np.float32).reshape(len(records), -1)  # each shard L2-normalises its own
        row_of = {id(rec): i for i, rec in enumerate(records)}
        todo, report, moved = self._plan(records, upsert)

        def write(lib: Library) -> AddReport:
            recs = todo[lib.name]
            return lib.add_embedded(recs, vectors[[row_of[id(r)] for r in recs]], upsert=upsert,
                                                   chunk_size=chunk_size)

        for part in self._map_all(write, [s for s in todo if todo[s]]):
            _sum_into(report, part)
        self._drop_moved(moved)
        report.seconds = time.perf_counter() - t0
        return report

    def upsert(self, records: Iterable, **kwargs) -> AddReport:
        """`add` that replaces records whose id is already in the index (on whichever shard)."""
        return self.add(records, upsert=True, **kwargs)

    def delete(self, ids: Iterable[str]) -> list[str]:
        """Delete records by id from whichever shard holds them; returns the ids that were found."""
        ids = [str(i) for i in ids]
        where = self.where_are(ids)
        by_shard: dict[str, list[str]] = {}
        for i in ids:
            if i in where:
                by_shard.setdefault(where[i], []).append(i)
        found = {i for part in self._map_all(lambda lib: lib.delete(by_shard[lib.name]), list(by_shard)) for i in part}
        return [i for i in ids if i in found]

    def _plan(self, records: Iterable, upsert: bool) -> tuple[dict[str, list], AddReport, dict[str, list[str]]]:
        """Which records go to which shard: duplicates and (without `upsert`) ids already indexed
        left out; the shard map's extents grown to cover the rest before they are written (so a
        search never skips a shard holding a record). Also returns, for upserts that move a record
        to another shard, old shard -> ids to delete there once the new copies are written."""
        report = AddReport()
        unique, report.duplicates = unique_by_id(records)
        where = self.where_are(unique)
        m = self.shard_map
        todo: dict[str, list] = {s: [] for s in m.shards}
        moved: dict[str, list[str]] = {}
        for rid, rec in unique.items():
            if rid in where and not upsert:
                report.skipped += 1
                continue
            shard = m.shard_of(rid, rec.metadata)
            todo[shard].append(rec)
            if rid in where and where[rid] != shard:
                moved.setdefault(where[rid], []).append(rid)
        self._grow_extents(todo)
        return todo, report, moved

    def _grow_extents(self, todo: Mapping[str, Sequence]) -> None:
        if not any(todo.values()):
            return
        with _map_lock(self.location, self.lock_timeout):
            m = ShardMap.load(self.location)
            grew = [m.add_extents(shard, rec.metadata or {}) for shard, recs in todo.items() for rec in recs]
            if any(grew):  # a write inside the known extents leaves the map (and its readers) alone
                self._file.replace(m)

    def _drop_moved(self, moved: Mapping[str, list[str]]) -> None:
        for shard, ids in moved.items():
            self.shards[shard].delete(ids)

    def recompute_extents(self) -> None:
        """Rebuild every shard's extents from its records (tight again after deletes and moves)."""
        def boxes(lib: Library) -> list[dict]:
            cols = [c for c in ("lon", "lat", "minx", "miny", "maxx", "maxy") if c in lib.columns()]
            return lib.rows(cols).to_pylist() if cols else []

        rows = self._map_all(boxes, list(self.shards))
        with _map_lock(self.location, self.lock_timeout):
            m = ShardMap.load(self.location)
            m.extents = {}
            for shard, shard_rows in zip(m.shards, rows):
                for row in shard_rows:
                    m.add_extents(shard, row)
            self._file.replace(m)

    def note_build(self, source: str, report: AddReport) -> None:
        """Record the last build's source and outcome in the shard map."""
        with _map_lock(self.location, self.lock_timeout):
            m = ShardMap.load(self.location)
            m.last_build = {"source": source, "finished": now(), **report.to_dict(),
                            "failures": [{"id": i, "path": p, "error": e} for i, p, e in report.failed[:100]]}
            self._file.replace(m)


def _map_lock(folder: Storage, timeout: float):
    """The writer lock of the shard map in a local folder. On an object store there is none: the
    map's writers (builds, which only grow the extents) should take turns; a lost extent update would
    let a place query skip a shard, which `recompute_extents` repairs."""
    if folder.local_path is None:
        return nullcontext()
    folder.local_path.mkdir(parents=True, exist_ok=True)
    return writer_lock(folder.local_path, timeout)


def _place_copies(place: "Place | None", shards: Sequence[str]) -> dict[str, "Place | None"]:
    """One Place per shard for the parallel searches: a polygon is prepared and queried by GEOS in
    place (`Place.select`), which is not safe from several threads at once, so each shard after the
    first gets its own copy of the geometry (made here, in the calling thread)."""
    if place is None or place.within is None or len(shards) <= 1:
        return dict.fromkeys(shards, place)
    import shapely

    wkb = shapely.to_wkb(place.within)
    return {s: place if i == 0 else dataclasses.replace(place, within=shapely.from_wkb(wkb))
            for i, s in enumerate(shards)}


def _sum_into(total: AddReport, part: AddReport) -> None:
    total.added += part.added
    total.replaced += part.replaced
    total.skipped += part.skipped
    total.failed += part.failed


def open_index(root: str | Path | None, name: str, **kwargs) -> Library | ShardedLibrary:
    """Index NAME as a `ShardedLibrary` when it is sharded, else as a `Library`."""
    return (ShardedLibrary if ShardedLibrary.exists(root, name) else Library).open(root, name, **kwargs)


def build_sharded(source: str | Path | Sequence, name: str, root: str | Path | None = None, *, shards: int = 4,
                  by: str = "hash", encoder: Encoder | str | None = None, index_type: str = "auto",
                  split: str | None = None, limit: int | None = None, upsert: bool = False, batch_size: int = 64,
                  workers: int = 2, chunk_size: int = 512,
                  progress: Callable[[int, int], None] | None = None) -> tuple[ShardedLibrary, AddReport]:
    """`build_index` for a sharded index: create (or resume) NAME with N shards, then add SOURCE."""
    from rsrag.index.build import resolve_source

    validate_index_name(name)
    records = list(source) if isinstance(source, (list, tuple)) else resolve_source(source, split, limit)
    lib = ShardedLibrary.create(root, name, shards=shards, by=by, encoder=encoder, index_type=index_type,
                                exist_ok=True)
    report = lib.add(records, upsert=upsert, batch_size=batch_size, workers=workers, chunk_size=chunk_size,
                     progress=progress)
    lib.note_build(str(source) if isinstance(source, (str, Path)) else f"{len(records)} records", report)
    return lib, report


def build_sharded_scenes(sources: str | Path | Sequence[str | Path], name: str, root: str | Path | None = None, *,
                         shards: int = 4, by: str = "geo", encoder: Encoder | str | None = None,
                         index_type: str = "auto", tiling: "Tiling | None" = None, bands: str | None = None,
                         sensor: str | None = None, datetime: Any = None, batch_size: int = 16,
                         chunk_size: int = 2048, progress: Callable[[int, int], None] | None = None
                         ) -> tuple[ShardedLibrary, "SceneIndexReport"]:
    """`build_scene_index` for a sharded index: every chip of every scene, each on its shard (by its
    centre's S2 cell under `geo`). Running it again adds only the chips that are missing."""
    from rsrag.geo import Tiling, index_scenes

    lib = ShardedLibrary.create(root, name, shards=shards, by=by, encoder=encoder, index_type=index_type,
                                exist_ok=True)
    items = [sources] if isinstance(sources, (str, Path)) else list(sources)
    report = index_scenes(lib, items, tiling=tiling or Tiling(), bands=bands, sensor=sensor, datetime=datetime,
                          batch_size=batch_size, chunk_size=chunk_size, progress=progress)
    lib.note_build(", ".join(map(str, items)), AddReport(added=report.added, skipped=report.skipped_existing,
                                                         seconds=report.seconds, failed=[
                                                             (s, s, e) for s, e in report.failed]))
    return lib, report
