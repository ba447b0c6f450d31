"""The FAISS GPU path of AnnIndex: same answers as the CPU index, and a GPU copy that follows every
change. Skipped where faiss has no GPU support or no GPU is visible (CI); run on a GPU machine."""

from __future__ import annotations

import numpy as np
import pytest

from rsrag.index import ann
from rsrag.index.ann import GPU_MAX_K, AnnIndex, IndexSpec

pytestmark = pytest.mark.skipif(not ann.gpu_available(), reason="needs faiss-gpu and a visible GPU")

DIM, N = 64, 20_000


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return np.arange(N, dtype=np.int64) * 3 + 7, unit(rng, N), unit(rng, 50)  # rids are not positions


def built(kind: str, data) -> AnnIndex:
    rids, vectors, _ = data
    spec = IndexSpec.parse(kind).resolve(len(rids))
    return AnnIndex.build(spec, DIM, rids, vectors)


def cpu_search(index: AnnIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    index.use_gpu = False
    try:
        return index.search(queries, k)
    finally:
        index.use_gpu = True


def test_flat_on_gpu_matches_exact_cpu_search(data) -> None:
    index = built("flat", data)
    assert index.device == "gpu"
    scores, rids = index.search(data[2], 10)
    cpu_scores, cpu_rids = cpu_search(index, data[2], 10)
    assert index.device == "gpu"
    np.testing.assert_allclose(scores, cpu_scores, atol=1e-4)
    assert (rids == cpu_rids).mean() > 0.99  # only near-ties may swap


def test_ivf_on_gpu_keeps_nprobe_and_recall(data) -> None:
    index = built("ivf:nlist=128,nprobe=16", data)
    assert index.device == "gpu"
    _, rids = index.search(data[2], 10)
    _, cpu_rids = cpu_search(index, data[2], 10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rids, cpu_rids)])
    assert overlap > 0.97  # same lists probed; a GPU that ignored nprobe (default 1) scores far lower


@pytest.mark.parametrize("kind", ["flat", "ivf:nlist=128,nprobe=128"])
def test_gpu_copy_follows_add_upsert_and_delete(kind: str, data) -> None:
    index = built(kind, data)
    rng = np.random.default_rng(1)
    assert index.device == "gpu"
    new = unit(rng, 5)
    new_rids = np.arange(5, dtype=np.int64) + 10**9
    copy = index._gpu
    index.add(new_rids, new)
    assert index._gpu is copy  # the add went to the GPU copy too: no new copy of the whole index
    assert index.search(new, 1)[1][:, 0].tolist() == new_rids.tolist()

    index.remove(new_rids[:2])
    found = index.search(new, 10)[1]
    assert not set(found.ravel()) & set(new_rids[:2].tolist())
    assert found[2:, 0].tolist() == new_rids[2:].tolist()

    moved = unit(rng, 1)  # upsert = remove + add under the same rid
    index.remove(new_rids[4:])
    index.add(new_rids[4:], moved)
    assert index.search(moved, 1)[1][0, 0] == new_rids[4]
    assert new_rids[4] not in index.search(new[4:], 1)[1]
    assert index.device == "gpu"


def test_filters_and_large_k_fall_back_to_the_cpu(data) -> None:
    index = built("flat", data)
    rids, _, queries = data
    allowed = np.sort(rids[::7])
    found = index.search(queries, 10, allowed=allowed)[1]
    assert set(found.ravel()) <= set(allowed.tolist())

    k = GPU_MAX_K + 500
    scores, found = index.search(queries[:3], k)
    assert found.shape == (3, k) and (found >= 0).all()
    np.testing.assert_allclose(scores, cpu_search(index, queries[:3], k)[0], atol=1e-4)


def test_saved_index_is_the_cpu_one(tmp_path, data) -> None:
    index = built("ivf:nlist=64,nprobe=8", data)
    index.search(data[2], 10)
    index.save(tmp_path / "vectors.faiss")
    loaded = AnnIndex.load(tmp_path / "vectors.faiss", index.spec, len(data[0]))
    assert loaded.file_kind(loaded.index) == "ivf" and len(loaded) == N


def test_switched_off_by_environment(monkeypatch, data) -> None:
    monkeypatch.setenv("RSRAG_FAISS_GPU", "0")
    ann.gpu_available.cache_clear()
    try:
        assert built("flat", data).device == "cpu"
    finally:
        monkeypatch.delenv("RSRAG_FAISS_GPU")
        ann.gpu_available.cache_clear()
