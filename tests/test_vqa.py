"""VQA: question generation from known captions, a tiny training run, the committed model's API and CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rsrag.data import ImageRecord
from rsrag.imageio import ImageLoadError
from rsrag.models.vqa import VQAAnswer, load_vqa
from rsrag.models.vqa.dataset import class_mention_rates, generate_items
from rsrag.encoders.rs_lite import DEFAULT_WEIGHTS
from rsrag.encoders.weights import weights_path
from rsrag.models.vqa.questions import (
    answer_vocabulary,
    mentioned_objects,
    parse_comparisons,
    parse_counts,
    question_fits_type,
    scene_answer,
)

AIRPORT = ["many planes are parked next to a long building at an airport .",
           "two white planes and three cars are near the terminal ."]


def record(i: str, label: str, captions: list[str]) -> ImageRecord:
    return ImageRecord(id=f"rsicd/{i}", path=Path(f"{i}.jpg"), split="train", label=label, captions=captions)


# ---------------------------------------------------------------- question generation on known captions


def test_objects_plurals_and_synonyms():
    assert mentioned_objects(["some aircraft near houses", "a parking lot with cars"]) == {
        "plane", "building", "parking lot", "car"}
    assert mentioned_objects(["oil tanks beside a lake", "a viaduct over the river"]) == {
        "storage tank", "pond", "bridge", "river"}
    assert mentioned_objects(["a piece of bare land"]) == set()


def test_counts_only_where_captions_agree():
    assert parse_counts(AIRPORT) == {"plane": 2, "car": 3}
    assert parse_counts(["two planes", "3 planes"]) == {}  # contradiction: dropped
    assert parse_counts(["two rows of trees", "a plane"]) == {}  # rows are not trees; "a" is no count
    assert parse_counts(["4 storage tanks", "four big tanks"]) == {"storage tank": 4}


def test_comparisons_from_quantified_pairs():
    assert parse_comparisons(["many buildings are around a playground ."]) == [("building", "playground")]
    assert parse_comparisons(["many trees and a pond", "many ponds and a tree"]) == []  # contradicted
    assert parse_comparisons(["some buildings and trees"]) == []  # nothing quantified twice


def test_question_form_matches_type():
    assert question_fits_type("Is there a bridge?", "presence")
    assert not question_fits_type("Who built this bridge?", "presence")
    assert question_fits_type("How many planes?", "count") and not question_fits_type("How many planes?", "scene")
    assert question_fits_type("What is this place?", "scene") and not question_fits_type("Where is this?", "scene")


def test_scene_answers_shared_by_datasets():
    assert scene_answer("Airport") == scene_answer("airplane") == "airport"
    assert scene_answer("harbor") == scene_answer("Port") == "port"
    assert scene_answer("no-such-label") is None


def test_generated_items_are_balanced_deterministic_and_in_vocabulary():
    records = [record(f"airport_{i}", "Airport", AIRPORT) for i in range(4)]
    records += [record(f"desert_{i}", "Desert", ["a piece of yellow desert ."]) for i in range(6)]
    rates = class_mention_rates(records)
    items = generate_items(records, rates, seed=0)
    assert items == generate_items(list(reversed(records)), rates, seed=0)  # order-independent, seeded
    # presence: plane, building, car, terminal (4 airport images each, balanced by 4 of the 6 desert
    # images) and desert (4 of 6 desert images, balanced by the 4 airport images)
    # count: plane 2 and car 3 on each airport image, plus as many "0" answers on desert images
    assert Counter(i.question_type for i in items) == {"scene": 10, "presence": 40, "count": 16, "comparison": 8}
    presence = [i for i in items if i.question_type == "presence"]
    for obj in ("plane", "car", "building", "terminal", "desert"):
        answers = Counter(i.answer for i in presence if obj in i.question.replace("buildings", "building"))
        assert answers == {"yes": 4, "no": 4}
    negatives = [i for i in presence if i.answer == "no" and "desert" not in i.question]
    assert all(i.image_id.startswith("rsicd/desert") for i in negatives)
    count = {(i.image_id, i.answer) for i in items if i.question_type == "count"}
    assert ("rsicd/airport_0", "2") in count and ("rsicd/airport_0", "3") in count
    assert all(image_id.startswith("rsicd/desert") for image_id, answer in count if answer == "0")
    vocab = answer_vocabulary()
    assert all(i.answer in vocab[i.question_type] for i in items)
    assert any(a.question != b.question for a, b in zip(items, generate_items(records, rates, seed=1)))


def test_real_splits_disjoint_and_reproducible(data_root):
    from rsrag.models.vqa.dataset import build_vqa

    test, records = build_vqa("test", limit=40)
    again, _ = build_vqa("test", limit=40)
    assert test == again
    train, _ = build_vqa("train", limit=40)
    assert {i.image_id for i in test}.isdisjoint({i.image_id for i in train})
    assert {i.image_id for i in test} <= {r.id for r in records}


# ---------------------------------------------------------------- training and the committed model


@pytest.fixture(scope="module")
def encoder():
    from rsrag.encoders.rs_lite import RSLiteEncoder

    if not weights_path(DEFAULT_WEIGHTS).exists():
        pytest.skip("rs-lite weights not trained")
    return RSLiteEncoder(runtime="torch", device="cpu")


def test_tiny_training_loss_falls_and_evaluates(data_root, encoder, tmp_path, monkeypatch):
    """20 images per dataset and split, features computed from scratch: the loss falls, eval runs."""
    import torch

    from rsrag.eval.vqa import evaluate_vqa
    from rsrag.models.vqa.train import VQATrainConfig, train_vqa

    monkeypatch.setenv("RSRAG_CACHE", str(tmp_path))
    torch.set_num_threads(1)
    cfg = VQATrainConfig(epochs=5, patience=10, hidden=64, limit=20, lr=3e-3, batch_size=32)
    result = train_vqa(cfg, name=None, encoder=encoder)
    losses = [h["loss"] for h in result["history"]]
    assert len(losses) == 5 and losses[-1] < 0.8 * losses[0]
    metrics = evaluate_vqa(result["model"], "val", limit=20)
    assert 0 <= metrics["accuracy"] <= 100 and set(metrics["by_type"]) <= {"scene", "presence", "count", "comparison"}
    assert metrics["n_questions"] == sum(metrics["n_by_type"].values())


needs_model = pytest.mark.skipif(not weights_path("vqa-rs-lite").exists(), reason="VQA weights not trained")


@pytest.fixture(scope="module")
def vqa(encoder):
    return load_vqa(encoder=encoder)


@needs_model
def test_committed_model_answers_scene_deterministically(data_root, vqa):
    image = data_root / "rsicd" / "images" / "airport_1.jpg"
    first = vqa.answer(image, "What kind of place is shown?")
    assert isinstance(first, VQAAnswer)
    assert (first.answer, first.question_type, first.unknown) == ("airport", "scene", False)
    assert first.confidence > 0.5
    assert vqa.answer(image.read_bytes(), "What kind of place is shown?").to_dict() == first.to_dict()
    assert vqa.answer(image, "Are there any planes?").answer == "yes"
    assert vqa.answer(image, "How many storage tanks are there?").answer == "0"


@needs_model
def test_out_of_scope_and_bad_input(data_root, vqa, tmp_path):
    image = data_root / "rsicd" / "images" / "airport_1.jpg"
    for question in ("What is the capital of France?", "Who built this bridge?"):
        off = vqa.answer(image, question)
        assert off.unknown and off.answer == off.question_type == "unknown" and off.confidence == 0.0
    with pytest.raises(ValueError, match="empty"):
        vqa.answer(image, "   ")
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    with pytest.raises(ImageLoadError, match="corrupt.jpg"):
        vqa.answer(bad, "What kind of place is shown?")
    with pytest.raises(FileNotFoundError, match="rsrag train vqa"):
        load_vqa("no-such-vqa-model")


@needs_model
def test_cli(data_root, tmp_path):
    from rsrag.cli import app

    runner = CliRunner()
    image = str(data_root / "rsicd" / "images" / "airport_1.jpg")
    out = runner.invoke(app, ["vqa", image, "What kind of place is shown?", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout[out.stdout.index("{"):])["answer"] == "airport"
    missing = runner.invoke(app, ["vqa", image, "What is shown?", "--model", "no-such-vqa-model"])
    assert missing.exit_code == 2 and "not found" in missing.output
    empty = runner.invoke(app, ["vqa", image, ""])
    assert empty.exit_code == 2 and "empty" in empty.output
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    corrupt = runner.invoke(app, ["vqa", str(bad), "What is shown?"])
    assert corrupt.exit_code == 1 and "corrupt.jpg" in corrupt.output
    assert np.isfinite(json.loads(out.stdout[out.stdout.index("{"):])["confidence"])
