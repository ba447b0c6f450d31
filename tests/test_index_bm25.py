"""BM25 state: same scores as rank_bm25, incremental updates equal a fresh build, persistence."""

from __future__ import annotations

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from rsrag.index.bm25 import EPSILON, K1, B, BM25Index, tokenize

WORDS = "boat harbor airport plane runway forest tree river bridge road car house roof field farm".split()


def corpus(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, rng.integers(3, 12))) for _ in range(n)]


def test_defaults_are_rank_bm25s():
    assert BM25Okapi.__init__.__defaults__[1:] == (K1, B, EPSILON)


def test_tokenize_lowercases_drops_stopwords_and_plural_s():
    assert tokenize("Many BOATS are in the harbor, 3 cars!") == ["boat", "harbor", "3", "car"]
    assert tokenize("grass class") == ["grass", "class"]


@pytest.mark.parametrize("query", ["boat harbor", "forest forest river", "airport", "unknownword", "car roof"])
def test_scores_equal_rank_bm25(query):
    docs = corpus(300)
    index = BM25Index()
    index.add(np.arange(len(docs)), docs)
    reference = BM25Okapi([tokenize(d) for d in docs]).get_scores(tokenize(query))
    np.testing.assert_allclose(index.scores(query), reference, rtol=1e-9, atol=1e-12)


def test_incremental_add_and_remove_equal_a_fresh_build(tmp_path):
    docs = corpus(200, seed=1)
    inc = BM25Index()
    inc.add(np.arange(0, 120), docs[:120])
    inc.scores("boat")  # build the query structures, then change the state
    inc.remove(range(10, 40))
    inc.add(np.arange(120, 200), docs[120:])
    inc.remove([150, 151, 9999])
    keep = [i for i in range(200) if not (10 <= i < 40 or i in (150, 151))]
    fresh = BM25Index()
    fresh.add(np.array(keep), [docs[i] for i in keep])
    inc.save(tmp_path / "bm25.npz")
    loaded = BM25Index.load(tmp_path / "bm25.npz")
    for query in ["boat harbor", "tree", "farm field road"]:
        order = np.argsort(inc.doc_rids)
        np.testing.assert_allclose(inc.scores(query)[order], fresh.scores(query), rtol=1e-12)
        np.testing.assert_allclose(loaded.scores(query), inc.scores(query), rtol=1e-12)


def test_search_returns_only_matches_and_never_removed_docs():
    index = BM25Index()
    index.add(np.array([10, 11, 12]), ["red boat", "blue boat", "green tree"])
    rids, scores = index.search("boat", 5)
    assert sorted(rids.tolist()) == [10, 11] and (scores > 0).all()
    index.remove([10])
    assert index.search("boat", 5)[0].tolist() == [11]
    assert index.search("boat", 5, allowed=np.array([12]))[0].tolist() == []
    assert index.search("nothing", 5)[0].tolist() == []


def test_documents_added_after_the_postings_score_as_in_a_fresh_build():
    """Small adds after a query are scored from the tail with the global statistics (no rebuild of
    the postings); past the tail limit, and after a delete, the postings are built again."""
    docs = corpus(400, seed=3) + ["zebra crossing boat", "zebra"]
    inc = BM25Index()
    inc.add(np.arange(300), docs[:300])
    inc.scores("boat")
    built = inc._postings()
    for start in range(300, 310):  # ten small writes, each followed by a query
        inc.add(np.array([start]), [docs[start]])
        fresh = BM25Index()
        fresh.add(np.arange(start + 1), docs[:start + 1])
        for query in ["boat harbor", "river river bridge", "car"]:
            np.testing.assert_allclose(inc.scores(query), fresh.scores(query), rtol=1e-12)
    assert inc._postings() is built  # the tail was scored, the postings kept
    inc.add(np.array([400, 401]), docs[400:])  # a term new since the postings
    reference = BM25Okapi([tokenize(d) for d in docs[:310] + docs[400:]]).get_scores(tokenize("zebra boat"))
    np.testing.assert_allclose(inc.scores("zebra boat"), reference, rtol=1e-9, atol=1e-12)
    inc.add(np.arange(310, 400), docs[310:400])  # past the tail limit: built again
    assert inc._postings() is not built
    inc.remove([5, 400])
    keep = [i for i in range(402) if i not in (5, 400)]
    reference = BM25Okapi([tokenize(docs[i]) for i in keep]).get_scores(tokenize("zebra boat"))
    order = np.argsort(inc.doc_rids)
    np.testing.assert_allclose(inc.scores("zebra boat")[order], reference, rtol=1e-9, atol=1e-12)


def test_one_document_adds_grow_in_place_and_equal_one_bulk_add(tmp_path):
    """A POST /items adds one document: the arrays grow into spare capacity (no copy of the index
    per add) and the result is the same index, scores and file as one bulk add."""
    docs = corpus(150, seed=4)
    bulk, one_by_one = BM25Index(), BM25Index()
    bulk.add(np.arange(len(docs)), docs)
    moves, where = 0, None
    for rid, doc in enumerate(docs):
        one_by_one.add([rid], [doc])
        address = one_by_one.terms.__array_interface__["data"][0]
        moves, where = moves + (address != where), address
    assert moves < 12  # capacity doubles: a handful of reallocations for ~1,000 pairs, not one per add
    for name in ("doc_rids", "doc_len", "doc_nterms", "terms", "tfs"):
        np.testing.assert_array_equal(getattr(one_by_one, name), getattr(bulk, name))
    np.testing.assert_allclose(one_by_one.scores("boat harbor"), bulk.scores("boat harbor"))
    one_by_one.remove([3, 77])
    one_by_one.add([500], ["lighthouse on a river bridge"])
    one_by_one.save(tmp_path / "bm25.npz")
    loaded = BM25Index.load(tmp_path / "bm25.npz")
    assert list(loaded.search("lighthouse", 3)[0]) == [500]
    assert 3 not in loaded.doc_rids and len(loaded.doc_len) == len(docs) - 1
