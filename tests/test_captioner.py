"""The captioner: COCO metrics on toy examples, a tiny training run, decoding, API and CLI errors."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from rsrag.encoders.rs_lite import DEFAULT_WEIGHTS
from rsrag.encoders.weights import weights_path
from rsrag.metrics.caption import score_captions
from rsrag.imageio import ImageLoadError
from rsrag.models.captioner import DEFAULT_CAPTIONER, Captioner, load_captioner
from rsrag.models.captioner.decoding import beam_decode, greedy_decode
from rsrag.models.captioner.memory import consensus_caption, top_k
from rsrag.models.captioner.model import CaptionerConfig, CaptionModel
from rsrag.models.captioner.vocab import Vocab

needs_encoder = pytest.mark.skipif(not weights_path(DEFAULT_WEIGHTS).exists(), reason="rs-lite weights not trained")
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="the COCO toolkit's PTB tokenizer and METEOR need Java")

HYP = "the cat sat on the mat"
REFS = ["the cat is on the mat", "there is a cat on the mat"]


# ---------------------------------------------------------------- metrics


def test_bleu_rouge_match_hand_computed_values():
    # clipped n-gram precisions 5/6, 3/5, 1/4, 0/3; the closest reference has the hypothesis' length
    # (6 words), so no brevity penalty: BLEU-1 5/6, BLEU-2 sqrt(1/2), BLEU-3 (1/8)^(1/3) = 1/2, BLEU-4 ~ 0.
    # ROUGE-L: best LCS precision and recall are both 5/6 (first reference), so F = 5/6 for any beta.
    s = score_captions([REFS], [HYP], metrics=("bleu", "rouge"), ptb=False)
    assert s["bleu1"] == pytest.approx(5 / 6, abs=1e-6)
    assert s["bleu2"] == pytest.approx(0.5 ** 0.5, abs=1e-6)
    assert s["bleu3"] == pytest.approx(0.5, abs=1e-6)
    assert s["bleu4"] < 0.01
    assert s["rouge_l"] == pytest.approx(5 / 6, abs=1e-6)


def test_cider_is_on_the_toolkit_scale():
    # each hypothesis equals its only reference and no n-gram is shared across images: CIDEr-D = 10
    refs = [["a plane is parked at the airport"], ["many green trees grow in the dense forest"]]
    hyps = [r[0] for r in refs]
    assert score_captions(refs, hyps, metrics=("cider",), ptb=False)["cider"] == pytest.approx(10.0, abs=1e-6)
    swapped = score_captions(refs, hyps[::-1], metrics=("cider",), ptb=False)["cider"]
    assert swapped == pytest.approx(0.0, abs=1e-6)


@needs_java
def test_toolkit_tokenizer_and_meteor():
    # one Java round trip (the JVM start dominates): the PTB tokenizer lower-cases and drops
    # punctuation, so the toolkit path scores like the pure-Python one on normalised text
    refs = [REFS, ["A plane is parked at the airport ."]]
    hyps = ["The cat sat on the mat.", "a plane, parked at the airport"]
    toolkit = score_captions(refs, hyps)
    assert set(toolkit) == {"bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider"}
    plain = score_captions(refs, hyps, metrics=("bleu", "rouge", "cider"), ptb=False)
    for key, value in plain.items():
        assert toolkit[key] == pytest.approx(value, abs=1e-9), key
    assert 0.3 < toolkit["meteor"] < 1.0


def test_score_captions_rejects_bad_input():
    with pytest.raises(ValueError, match="hypotheses"):
        score_captions([REFS], [HYP, HYP], ptb=False)
    with pytest.raises(ValueError, match="unknown metrics"):
        score_captions([REFS], [HYP], metrics=("spice",), ptb=False)


# ---------------------------------------------------------------- building blocks


def test_vocab_round_trip():
    vocab = Vocab.build(["A plane, parked.", "a plane near a runway", "a runway"], min_count=2)
    assert vocab.words[4:] == ("a", "plane", "runway")
    ids = vocab.encode("A plane at the runway!", max_len=10)
    assert ids[0] == Vocab.bos_id and ids[-1] == Vocab.eos_id and Vocab.unk_id in ids
    assert vocab.decode(ids[1:]) == "a plane runway"
    assert len(vocab.encode("a " * 50, max_len=8)) == 8


def test_consensus_caption_and_top_k():
    caps = ["a river", "a bridge over a river", "a long bridge over a wide river", "a bridge over the river"]
    assert consensus_caption(caps) == "a bridge over a river"
    keys = np.eye(4, dtype=np.float32)
    queries = keys + 0.1 * np.roll(keys, 1, axis=1)
    np.testing.assert_array_equal(top_k(queries, keys, 2)[:, 0], [0, 1, 2, 3])
    np.testing.assert_array_equal(top_k(keys, keys, 1, exclude=np.arange(4))[:, 0] != np.arange(4), True)


def test_incremental_decoding_matches_full_pass_and_beam_is_sane():
    torch.manual_seed(0)
    cfg = CaptionerConfig(vocab_size=50, d_model=32, heads=2, decoder_layers=2, ff_dim=64, neighbours=2,
                          neighbour_len=6, max_len=10, dropout=0.0)
    model = CaptionModel(cfg).eval()
    nbr = torch.randint(4, 50, (3, 2, 6))
    nbr[:, :, 4:] = 0
    with torch.inference_mode():
        memory, pad = model.encode(torch.randn(3, 1280, 7, 7), torch.randn(3, 512), nbr)
        ids = torch.randint(4, 50, (3, 7))
        full = model.decode(memory, pad, ids)
        state = model.start(memory, pad)
        steps = torch.stack([model.step(state, ids[:, i]) for i in range(7)], 1)
    torch.testing.assert_close(full, steps, atol=1e-4, rtol=1e-4)
    greedy = greedy_decode(model, memory, pad)
    assert beam_decode(model, memory, pad, beam_size=1) == greedy
    beams = beam_decode(model, memory, pad, beam_size=3)
    assert len(beams) == 3 and all(len(b) <= cfg.max_len - 1 for b in beams)
    assert all(Vocab.unk_id not in b and Vocab.bos_id not in b for b in beams)


# ---------------------------------------------------------------- tiny training run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, data_root):
    from rsrag.models.captioner.training import CaptionerTrainConfig, train_captioner

    if not weights_path(DEFAULT_WEIGHTS).exists():
        pytest.skip("rs-lite weights not trained")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    path = tmp_path_factory.mktemp("captioner") / "tiny.safetensors"
    cfg = CaptionerTrainConfig(neighbours=2, d_model=64, ff_dim=128, limit=12, epochs=4, patience=4,
                               batch_size=4, lr=3e-3, warmup_steps=2, min_count=2)
    result = train_captioner(cfg, weights_name=str(path), command="test")
    return path, result


def test_tiny_training_loss_falls_and_saves(tiny_run):
    path, result = tiny_run
    history = result["history"]
    assert len(history) == 4 and result["finished"]
    losses = [h["loss"] for h in history]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.7 * history[0]["first_loss"]
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["config"]["neighbours"] == 2 and card["vocab"][:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert path.with_suffix(".memory.safetensors").exists()


def test_decoding_a_fixed_image_is_deterministic(tiny_run, data_root):
    path, _ = tiny_run
    from rsrag.data import load_dataset

    image = load_dataset("ucm", split="test")[0].path
    captioner = load_captioner(path)
    assert isinstance(captioner, Captioner) and captioner.retrieval_augmented
    first = captioner.caption([image, image.read_bytes(), Image.open(image)], beam_size=3)
    assert len(first) == 3 and len(set(first)) == 1 and first[0]
    assert load_captioner(path).caption([np.asarray(Image.open(image))], beam_size=3) == first[:1]
    assert len(captioner.caption([image], beam_size=1)) == 1


def test_bad_inputs_give_clear_errors(tiny_run, tmp_path):
    path, _ = tiny_run
    captioner = load_captioner(path)
    broken = tmp_path / "broken.jpg"
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "green").save(buf, format="JPEG")
    broken.write_bytes(buf.getvalue()[:200])
    with pytest.raises(ImageLoadError, match="broken.jpg"):
        captioner.caption([broken])
    with pytest.raises(ImageLoadError):
        captioner.caption([b"not an image"])
    with pytest.raises(FileNotFoundError, match="rsrag train captioner"):
        load_captioner(tmp_path / "missing.safetensors")
    with pytest.raises(TypeError, match="sequence"):
        captioner.caption(str(broken))


# ---------------------------------------------------------------- committed weights and CLI


committed = pytest.mark.skipif(not weights_path(DEFAULT_CAPTIONER).exists(), reason="captioner not trained yet")


@needs_encoder
@committed
def test_committed_captioner_cli(data_root, tmp_path):
    from rsrag.cli import app
    from rsrag.data import load_dataset

    images = [str(r.path) for r in load_dataset("ucm", split="test")[:2]]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = CliRunner().invoke(app, ["caption", *images, str(broken), "--json"])
    assert out.exit_code == 1  # the broken file is reported, the others are still captioned
    payload = json.loads(out.stdout[out.stdout.index("{"):])
    assert [r["image"] for r in payload["captions"]] == images
    assert all(r["caption"] for r in payload["captions"])
    assert payload["errors"][0]["image"] == str(broken)
    again = CliRunner().invoke(app, ["caption", images[0]])
    assert again.exit_code == 0 and again.stdout.split("\t")[1].strip() == payload["captions"][0]["caption"]
    missing = CliRunner().invoke(app, ["caption", images[0], "--captioner", str(tmp_path / "nope.safetensors")])
    assert missing.exit_code == 2 and "not found" in missing.output


def test_library_retriever_skips_the_query_and_checks_the_encoder():
    from rsrag.index import Hit
    from rsrag.models.captioner.memory import LibraryRetriever

    class FakeLibrary:
        name, encoder_id = "fake", "rs-lite:rs-lite-lite0@abc+views4"

        def search_vector(self, vector, k):
            return [Hit(id=f"r{i}", score=1.0 - i / 10, rank=i + 1, captions=[f"caption {i}"]) for i in range(k)]

    retriever = LibraryRetriever(FakeLibrary(), "rs-lite:rs-lite-lite0@abc")
    found = retriever.retrieve(np.zeros((2, 4), np.float32), 2, exclude_ids=["r0", None])
    assert found == [[["caption 1"], ["caption 2"]], [["caption 0"], ["caption 1"]]]
    with pytest.raises(ValueError, match="built with"):
        LibraryRetriever(FakeLibrary(), "rs-lite:other@def")
