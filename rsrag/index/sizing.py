"""Picking an index type from the collection size and a memory budget.

`choose(n, dim, budget)` estimates the resident bytes of each FAISS structure rsrag can build for n
vectors of `dim` dimensions (vectors, ids, graph links, centroids, codebooks; what `faiss.serialize_index`
and the process' RSS show, within a few percent; bench/scale.py measures them) and takes:

1. `flat` (exact) below `FLAT_MAX` vectors, when it fits;
2. else `ivf` (full float32 vectors, fast and ~0.99 recall), when it fits;
3. else `ivfpq` with the most PQ sub-quantisers (bytes per vector) that fit: the vectors stay only
   in LanceDB, and the top candidates are re-ranked exactly from there;
4. else `BudgetError`, naming the smallest structure and what it needs.

`hnsw` is weighed and shown but never picked by memory: it holds the same float32 vectors as `ivf`
plus ~2*M links per vector, so whenever it fits, `ivf` fits with room to spare.

The budget counts the ANN structure only: LanceDB reads its rows from disk (and the re-rank's rid to
position map, 16 bytes per vector, lives with the store). `auto` without a budget uses `DEFAULT_BUDGET`
(`RSRAG_ANN_MEMORY_BUDGET`, default 4GiB: IVF up to ~2M 512-d vectors, IVF-PQ beyond).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pydantic import ByteSize, TypeAdapter, ValidationError

from rsrag.index import ann
from rsrag.index.ann import IndexSpec

_ID_BYTES = 8  # int64 rid per vector (IndexIDMap's id_map, or the IVF lists' ids)
_BYTE_SIZE = TypeAdapter(ByteSize)


class BudgetError(ValueError):
    """No index type fits the memory budget."""


def parse_size(text: str | int) -> int:
    """Bytes from '512MB', '2GB', '1.5GiB', '2g' or a plain number (MB = 10^6, MiB = 2^20)."""
    try:
        size = int(_BYTE_SIZE.validate_python(text.strip() if isinstance(text, str) else text))
    except ValidationError:
        raise ValueError(f"cannot read {text!r} as a size: use e.g. 512MB, 2GB, 1.5GiB or a number of bytes") from None
    if size <= 0:
        raise ValueError(f"a memory budget must be more than 0 bytes, not {text!r}")
    return size


DEFAULT_BUDGET = parse_size(os.environ.get("RSRAG_ANN_MEMORY_BUDGET", "4GiB"))


def human(size: float) -> str:
    """Bytes as a short decimal size: 1.2 GB, 340 MB, 12 kB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{int(size)} B"


def index_bytes(spec: IndexSpec, n: int, dim: int) -> int:
    """Estimated resident bytes of a resolved index spec over n vectors of `dim` dimensions."""
    p = spec.params
    if spec.kind == "flat":
        return n * (4 * dim + _ID_BYTES)
    if spec.kind == "ivf":
        return n * (4 * dim + _ID_BYTES) + p["nlist"] * dim * 4
    if spec.kind == "hnsw":  # level 0: 2M int32 links per vector; upper levels, levels, offsets: ~16 more
        return n * (4 * dim + _ID_BYTES + 2 * p["m"] * 4 + 16)
    if spec.kind == "ivfpq":
        codes = n * (p["m"] * p["nbits"] // 8 + _ID_BYTES)
        tables = p["nlist"] * dim * 4 + (1 << p["nbits"]) * dim * 4  # centroids + PQ codebooks
        return codes + tables + (dim * dim * 4 if p["opq"] else 0)
    raise ValueError(f"no size estimate for index type {spec.kind!r}")


@dataclass(frozen=True)
class Choice:
    """What `choose` picked: the resolved spec, its estimated bytes and a sentence saying why."""

    spec: IndexSpec
    bytes: int
    why: str


def _pq_options(n: int, dim: int) -> list[IndexSpec]:
    """ivfpq specs from the default (most sub-quantisers, best recall) down to 8 sub-quantisers; none
    for a collection too small to train PQ codes (it resolves to flat)."""
    best = IndexSpec("ivfpq").resolve(n, dim)
    if best.kind != "ivfpq":
        return []
    ms = [m for m in range(best.params["m"], 0, -1) if dim % m == 0 and m >= min(8, best.params["m"])]
    return [IndexSpec("ivfpq", best.params | {"m": m}) for m in ms]


def choose(n: int, dim: int, budget: int | None = None) -> Choice:
    """The index type and parameters for n vectors of `dim` dimensions within `budget` bytes
    (`DEFAULT_BUDGET` when None); see the module doc for the order. Raises `BudgetError`."""
    budget = DEFAULT_BUDGET if budget is None else int(budget)
    n = max(int(n), 1)
    flat, ivf = IndexSpec("flat").resolve(n), IndexSpec("ivf").resolve(n)
    hnsw, pqs = IndexSpec("hnsw").resolve(n), _pq_options(n, dim)
    sizes = {"flat": index_bytes(flat, n, dim), "ivf": index_bytes(ivf, n, dim), "hnsw": index_bytes(hnsw, n, dim)}
    per_vector = ", ".join(f"{kind} {size / n:.0f}" for kind, size in sizes.items())
    seen = f"{n:,} x {dim}-d vectors, budget {human(budget)}; bytes per vector: {per_vector}"
    flat_max = ann.FLAT_MAX  # read at call time (tests lower it)
    if n < flat_max and sizes["flat"] <= budget:
        return Choice(flat, sizes["flat"], f"flat (exact): {seen}; below {flat_max:,} vectors exact search is "
                                           f"fast, and it needs {human(sizes['flat'])}")
    if sizes["ivf"] <= budget:
        return Choice(ivf, sizes["ivf"], f"{ivf}: {seen}; full float32 vectors fit ({human(sizes['ivf'])}), so no "
                                         f"compression (hnsw would need {human(sizes['hnsw'])} for little gain)")
    for pq in pqs:
        size = index_bytes(pq, n, dim)
        if size <= budget:
            return Choice(pq, size, f"{pq}: {seen}, ivfpq {size / n:.0f}; float32 vectors would need "
                                    f"{human(sizes['ivf'])}, so they stay on disk and the top "
                                    f"{pq.params['rerank']} candidates are re-ranked exactly from "
                                    f"there; {pq.params['m']} code bytes per vector need {human(size)}")
    smallest = pqs[-1] if pqs else flat
    least = index_bytes(smallest, n, dim)
    raise BudgetError(f"no index fits a memory budget of {human(budget)} for {seen}; the smallest, {smallest}, "
                      f"needs {human(least)}: raise the budget to at least that")
