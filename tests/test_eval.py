"""Metrics (`rsrag.metrics`), the evaluators (`rsrag.eval`) and the `rsrag eval` CLI, with a fake encoder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from rsrag.cli import eval as eval_cli
from rsrag.encoders import Encoder, Preprocess
from rsrag.eval import RetrievalEvaluator, ZeroShotEvaluator, class_text_embeddings, pretty_label
from rsrag.metrics import evaluate_embeddings, exact_match, normalize_answer, retrieval_metrics, retrieval_ranks, token_f1
from rsrag.metrics import retrieval as retrieval_module

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


@dataclass
class Record:
    """Same fields as `rsrag.data.ImageRecord`, so the tests do not depend on the loaders."""

    id: str
    path: Path
    split: str | None
    label: str | None
    captions: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)


class ColourEncoder(Encoder):
    """3-d embeddings we control: images -> mean RGB; texts -> counts of 'red'/'green'/'blue'."""

    id = "fake-colour@1"
    dim = 3
    preprocess = Preprocess(size=8, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))

    def _encode_arrays(self, batch: np.ndarray) -> np.ndarray:
        return batch.mean(axis=(2, 3)) + 1e-3

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        return np.array([[t.count(c) for c in COLOURS] for t in texts], np.float32) + 1e-3


def make_image(path: Path, colour: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), COLOURS[colour]).save(path)
    return path


# --- retrieval metrics on hand-made matrices -------------------------------------------------

# 3 images; image 0 owns captions 0 and 1, image 1 owns 2 and 3, image 2 owns caption 4.
C2I = np.array([0, 0, 1, 1, 2])
SIM = np.array(
    [
        [0.1, 0.9, 0.8, 0.2, 0.0],  # best GT is caption 1 (the 2nd caption) at 0.9 -> rank 0
        [0.5, 0.6, 0.3, 0.1, 0.7],  # best GT 0.3; 0.5, 0.6, 0.7 above -> rank 3
        [0.9, 0.8, 0.7, 0.6, 0.1],  # GT 0.1; four captions above -> rank 4
    ]
)


def test_ranks_by_hand():
    i2t, t2i = retrieval_ranks(SIM, C2I)
    assert i2t.tolist() == [0, 3, 4]
    # columns: cap0 s=0.1 (0.5, 0.9 above) -> 2; cap1 0.9 -> 0; cap2 0.3 (0.8, 0.7) -> 2;
    # cap3 0.1 (0.2, 0.6) -> 2; cap4 0.1 (0.7) -> 1
    assert t2i.tolist() == [2, 0, 2, 2, 1]


def test_metrics_by_hand():
    m = retrieval_metrics(SIM, C2I)
    assert m["i2t_r1"] == pytest.approx(100 / 3)  # only image 0, via its 2nd caption
    assert m["i2t_r5"] == pytest.approx(100.0)
    assert m["i2t_r10"] == pytest.approx(100.0)
    assert m["t2i_r1"] == pytest.approx(20.0)  # only caption 1
    assert m["t2i_r5"] == pytest.approx(100.0)  # 3 images: every rank is < 5
    assert m["mR"] == pytest.approx((100 / 3 + 100 + 100 + 20 + 100 + 100) / 6)
    assert set(m) == {"i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mR"}

    m2 = retrieval_metrics(SIM, C2I, ks=(1, 2))
    assert m2["i2t_r2"] == pytest.approx(100 / 3)  # ranks 0, 3, 4
    assert m2["t2i_r2"] == pytest.approx(40.0)  # ranks 2, 0, 2, 2, 1


def test_perfect_and_worst():
    n = 12
    c2i = np.repeat(np.arange(n), 2)  # two captions per image
    gt = (c2i[None, :] == np.arange(n)[:, None]).astype(float)
    perfect = retrieval_metrics(gt + 0.01 * np.random.default_rng(0).random(gt.shape), c2i)
    assert all(v == pytest.approx(100.0) for v in perfect.values())
    worst = retrieval_metrics(-gt, c2i)  # every GT below every other candidate; 12 > 10 candidates
    assert all(v == 0.0 for v in worst.values())


def test_tie_modes():
    sim = np.zeros((3, 3))
    c2i = np.arange(3)
    pess = retrieval_metrics(sim, c2i, ks=(1, 2), ties="pessimistic")
    assert all(v == 0.0 for v in pess.values())  # every other candidate ties -> rank 2
    opt = retrieval_metrics(sim, c2i, ks=(1, 2), ties="optimistic")
    assert all(v == 100.0 for v in opt.values())
    # index order (default): among equal scores the lower index ranks first -> ranks 0, 1, 2
    i2t, t2i = retrieval_ranks(sim, c2i)
    assert i2t.tolist() == [0, 1, 2] and t2i.tolist() == [0, 1, 2]
    # one non-GT caption (index 1) ties the GT caption (index 0) of image 0
    sim = np.array([[0.5, 0.5, 0.1], [0.0, 0.9, 0.0], [0.0, 0.0, 0.9]])
    assert retrieval_ranks(sim, c2i, ties="pessimistic")[0].tolist() == [1, 0, 0]
    assert retrieval_ranks(sim, c2i, ties="optimistic")[0].tolist() == [0, 0, 0]
    assert retrieval_ranks(sim, c2i)[0].tolist() == [0, 0, 0]  # the GT comes first in index order
    sim = np.array([[0.1, 0.5, 0.5], [0.9, 0.0, 0.9], [0.0, 0.9, 0.9]])
    c2i = np.array([0, 2, 1])  # image 1's GT (caption 2) ties caption 0, listed before it
    assert retrieval_ranks(sim, c2i)[0].tolist() == [2, 1, 0]


def test_index_ties_match_stable_argsort_reference():
    rng = np.random.default_rng(3)
    n_img, per = 9, 2
    c2i = np.repeat(np.arange(n_img), per)
    sim = rng.integers(0, 3, size=(n_img, n_img * per)).astype(float)  # many ties
    i2t, t2i = retrieval_ranks(sim, c2i)
    for i in range(n_img):
        order = np.argsort(-sim[i], kind="stable")
        assert i2t[i] == min(np.where(c2i[order] == i)[0])
    for j in range(len(c2i)):
        order = np.argsort(-sim[:, j], kind="stable")
        assert t2i[j] == np.where(order == c2i[j])[0][0]


def test_matches_argsort_reference_across_blocks(monkeypatch):
    monkeypatch.setattr(retrieval_module, "_ROW_BLOCK", 7)  # force several row blocks
    rng = np.random.default_rng(1)
    n_img, per = 30, 3
    c2i = np.repeat(np.arange(n_img), per)
    sim = rng.standard_normal((n_img, n_img * per))
    i2t, t2i = retrieval_ranks(sim, c2i)
    for i in range(n_img):
        order = np.argsort(-sim[i])
        assert i2t[i] == min(np.where(c2i[order] == i)[0])
    for j in range(len(c2i)):
        order = np.argsort(-sim[:, j])
        assert t2i[j] == np.where(order == c2i[j])[0][0]


def test_invalid_inputs():
    with pytest.raises(ValueError, match="at least one caption"):
        retrieval_metrics(np.zeros((3, 2)), np.array([0, 1]))
    with pytest.raises(ValueError, match="one entry per caption"):
        retrieval_metrics(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(np.full((1, 1), np.nan), np.array([0]))


def test_answer_scores():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert exact_match("the Eiffel tower.", "Eiffel Tower") == 1.0
    assert exact_match("Eiffel", "Eiffel Tower") == 0.0
    assert token_f1("Eiffel", "Eiffel Tower") == pytest.approx(2 / 3)  # precision 1, recall 1/2
    assert token_f1("built in 1889", "1889") == pytest.approx(0.5)  # precision 1/3, recall 1
    assert token_f1("", "") == 1.0 and token_f1("a", "tower") == 0.0  # "a" normalises to nothing


def test_evaluate_embeddings_and_evaluator(tmp_path):
    image_emb = np.eye(3, dtype=np.float32)
    text_emb = np.eye(3, dtype=np.float32)[[0, 0, 1, 2]]
    m = evaluate_embeddings(image_emb, text_emb, np.array([0, 0, 1, 2]))
    assert m["mR"] == pytest.approx(100.0)

    records = [
        Record("r", make_image(tmp_path / "r.png", "red"), "test", "red", ["a red roof", "red cars"]),
        Record("g", make_image(tmp_path / "g.png", "green"), "test", "green", ["green fields"]),
        Record("b", make_image(tmp_path / "b.png", "blue"), "test", "blue", ["blue sea", "green river"]),
    ]
    ev = RetrievalEvaluator(records, name="tiny")
    assert ev.caption_to_image.tolist() == [0, 0, 1, 2, 2]
    res = ev(ColourEncoder())
    assert res["encoder"] == "fake-colour@1" and res["dataset"] == "tiny" and res["split"] == "test"
    assert (res["n_images"], res["n_captions"]) == (3, 5)
    # green image: its "green fields" (caption 2) ties with blue's "green river" (caption 4); in
    # index order the ground truth comes first, so it is a hit; with pessimistic ties it is not
    assert res["i2t_r1"] == pytest.approx(100.0)
    assert ev(ColourEncoder(), ties="pessimistic")["i2t_r1"] == pytest.approx(200 / 3)
    assert res["t2i_r1"] == pytest.approx(80.0)  # "green river" retrieves the green image

    # cached image features, text encoded by the encoder
    cached = ColourEncoder().encode_images([r.path for r in records])
    again = ev(ColourEncoder(), image_emb=cached)
    assert again["mR"] == pytest.approx(res["mR"])
    with pytest.raises(ValueError):
        RetrievalEvaluator([Record("x", tmp_path / "x.png", "test", None, [])])


# --- zero-shot ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, text",
    [
        ("denseresidential", "dense residential"),
        ("DenseResidential", "dense residential"),
        ("baseballfield", "baseball field"),
        ("storagetanks", "storage tanks"),
        ("StorageTanks", "storage tanks"),
        ("Parking", "parking lot"),
        ("parkinglot", "parking lot"),
        ("tennis_court", "tennis court"),
        ("RailwayStation", "railway station"),
        ("river", "river"),
        ("Airport", "airport"),
        ("someCamelCase", "some camel case"),
        ("solar_farm-site", "solar farm site"),
    ],
)
def test_pretty_label(raw, text):
    assert pretty_label(raw) == text


class TableEncoder(ColourEncoder):
    """Text embeddings looked up in a table, to check template averaging exactly."""

    def __init__(self, table: dict[str, list[float]]):
        self.table = table

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        return np.array([self.table[t] for t in texts], np.float32)


def test_template_averaging():
    enc = TableEncoder({"A x": [1, 0, 0], "B x": [0, 3, 0], "A y": [0, 0, 1], "B y": [0, 0, 2]})
    emb = class_text_embeddings(enc, ["x", "y"], templates=["A {}", "B {}"])
    # normalised per template first: x -> mean([1,0,0],[0,1,0]) renormalised; y -> [0,0,1]
    np.testing.assert_allclose(emb, [[2**-0.5, 2**-0.5, 0], [0, 0, 1]], atol=1e-6)


def test_zeroshot_evaluator(tmp_path):
    records = [
        Record("r1", make_image(tmp_path / "r1.png", "red"), "test", "red_roof"),
        Record("r2", make_image(tmp_path / "r2.png", "blue"), "test", "red_roof"),  # misclassified
        Record("g1", make_image(tmp_path / "g1.png", "green"), "test", "GreenField"),
        Record("b1", make_image(tmp_path / "b1.png", "blue"), "test", "blue"),
    ]
    ev = ZeroShotEvaluator(records, name="tiny")
    assert ev.class_names == ["GreenField", "blue", "red_roof"]
    assert ev.class_texts == ["green field", "blue", "red roof"]
    res = ev(ColourEncoder())
    assert res["accuracy"] == pytest.approx(75.0)
    assert res["per_class"]["red_roof"] == {"accuracy": 50.0, "n": 2, "text": "red roof"}
    assert res["per_class"]["blue"]["accuracy"] == 100.0
    assert (res["n_images"], res["n_classes"], res["encoder"], res["dataset"]) == (4, 3, "fake-colour@1", "tiny")

    # precomputed features, no encoder at all
    image_emb = np.eye(3, dtype=np.float32)[[2, 2, 0, 1]]  # all correct in class order
    pre = ev(image_emb=image_emb, class_emb=np.eye(3, dtype=np.float32), encoder_id="cached")
    assert pre["accuracy"] == 100.0 and pre["encoder"] == "cached"


# --- CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    records = [
        Record("r", make_image(tmp_path / "img" / "r.png", "red"), "test", "Red", ["red roofs", "a red area"]),
        Record("g", make_image(tmp_path / "img" / "g.png", "green"), "test", "Green", ["green trees"]),
    ]
    monkeypatch.setattr(eval_cli, "create_encoder", lambda name=None, **kw: ColourEncoder())
    monkeypatch.setattr(eval_cli, "load_dataset", lambda name, split: records)
    monkeypatch.setattr(eval_cli, "load_class_folder", lambda folder: records)
    results = tmp_path / "results"
    monkeypatch.setenv("RSRAG_RESULTS", str(results))
    return results


def test_cli_retrieval_json(cli_env):
    out = CliRunner().invoke(eval_cli.app, ["retrieval", "--dataset", "rsicd", "--encoder", "fake", "--json"])
    assert out.exit_code == 0, out.output
    res = json.loads(out.stdout)
    for key in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mR", "encoder", "dataset", "split",
                "n_images", "n_captions"):
        assert key in res
    assert res["mR"] == 100.0 and res["dataset"] == "rsicd" and res["n_captions"] == 3
    written = json.loads((cli_env / "retrieval_rsicd_test_fake.json").read_text())
    assert written["mR"] == res["mR"]


def test_cli_retrieval_table_and_output(cli_env, tmp_path):
    target = tmp_path / "custom" / "r.json"
    out = CliRunner().invoke(eval_cli.app, ["retrieval", "-d", "ucm", "--split", "test", "-o", str(target)])
    assert out.exit_code == 0, out.output
    assert "mR" in out.stdout and "image->text" in out.stdout
    assert json.loads(target.read_text())["dataset"] == "ucm"


def test_cli_zeroshot(cli_env, tmp_path):
    out = CliRunner().invoke(eval_cli.app, ["zeroshot", "--dataset", "ucm", "--encoder", "fake", "--json"])
    assert out.exit_code == 0, out.output
    res = json.loads(out.stdout)
    assert res["accuracy"] == 100.0 and set(res["per_class"]) == {"Green", "Red"}
    assert (cli_env / "zeroshot_ucm_test_fake.json").exists()

    folder = tmp_path / "scenes"
    folder.mkdir()
    out = CliRunner().invoke(eval_cli.app, ["zeroshot", "--folder", str(folder), "-e", "fake"])
    assert out.exit_code == 0, out.output
    assert "accuracy" in out.stdout
    assert (cli_env / "zeroshot_folder-scenes_fake.json").exists()


def test_cli_zeroshot_needs_exactly_one_source(cli_env, tmp_path):
    out = CliRunner().invoke(eval_cli.app, ["zeroshot"])
    assert out.exit_code == 2 and "exactly one" in out.output
    out = CliRunner().invoke(eval_cli.app, ["zeroshot", "--folder", str(tmp_path), "--dataset", "ucm"])
    assert out.exit_code == 2 and "exactly one" in out.output


def test_cli_qa_writes_utf8_and_prints_tables(cli_env, monkeypatch):
    from rsrag.eval import qa as qa_module

    seen = {}
    result = {"n_questions": 2, "n_chunks": 5, "retrieval_r1": 0.5, "retrieval_r5": 1.0, "retrieval_r1_no_rerank": 0.5,
              "answer_em": 0.5, "answer_f1": 0.75, "category_accuracy": 1.0, "latency_ms": {"p50": 12.0},
              "per_type": {"when": {"n": 2, "r1": 0.5, "em": 0.5, "f1": 0.75}}, "ablation": [],
              "errors_sample": [{"gold": "Tour Eiffel, Paris (1889) à côté"}]}

    def fake_evaluate(limit, **options):
        seen.update(limit=limit, **options)
        return dict(result)

    monkeypatch.setattr(qa_module, "evaluate_rswk", fake_evaluate)
    out = CliRunner().invoke(eval_cli.app, ["qa", "--dataset", "rswk", "--limit", "2", "--ablation-limit", "0"])
    assert out.exit_code == 0, out.output
    assert "RSWK knowledge QA (2 questions, 5 chunks)" in out.stdout and "0.7500" in out.stdout
    assert seen["limit"] == 2 and seen["ablation_limit"] is None and seen["generator"] == "extractive"
    written = (cli_env / "qa_rswk_limit2.json").read_text(encoding="utf-8")
    assert "à côté" in written and json.loads(written)["answer_f1"] == 0.75  # UTF-8, no \u escapes
    assert f"wrote {cli_env / 'qa_rswk_limit2.json'}" in out.stderr  # the whole path on one line

    out = CliRunner().invoke(eval_cli.app, ["qa", "--dataset", "rswk", "--task", "classify"])
    assert out.exit_code == 2 and "rswk supports --task qa" in out.output


def test_cli_user_errors_are_one_line(cli_env, monkeypatch):
    def missing(name, split):
        raise FileNotFoundError(f"no {name} annotations under /data/{name}")

    monkeypatch.setattr(eval_cli, "load_dataset", missing)
    out = CliRunner().invoke(eval_cli.app, ["retrieval", "--dataset", "rsicd"])
    assert out.exit_code == 2 and isinstance(out.exception, SystemExit)
    assert out.stderr == "error: no rsicd annotations under /data/rsicd\n"
    assert not cli_env.exists() or not any(cli_env.iterdir())  # no results file for a failed run
