"""Indexes remember how their encoder was built (issue 13 #7): `create_encoder` records an
`EncoderSpec` (name, arguments, weight files with sha256), the manifest keeps it, and opening the
index rebuilds the same encoder, or says clearly that its checkpoint is gone or changed."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from index_helpers import HashEncoder, make_records

from rsrag.encoders import create_encoder
from rsrag.encoders.registry import EncoderSpec, EncoderSpecError, create_encoder_from_spec
from rsrag.index import EncoderMismatchError, Library

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
torch.set_num_threads(1)

TINY = {  # as tests/test_encoders_openclip.py: a tiny random open_clip model, no downloads
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def save_tiny(path, seed: int):
    torch.manual_seed(seed)
    torch.save(open_clip.CLIP(**TINY).eval().state_dict(), path)
    return path


@pytest.fixture
def built(tmp_path, monkeypatch):
    """An index built with an ad-hoc OpenCLIP checkpoint, given as a path relative to the folder
    the build ran in; the tests then run from another folder."""
    (tmp_path / "weights").mkdir()
    ckpt = save_tiny(tmp_path / "weights" / "tiny.pt", seed=0)
    records = make_records(tmp_path / "images", n_per_colour=2)
    monkeypatch.chdir(tmp_path / "weights")
    encoder = create_encoder("openclip", model="tiny", model_config=TINY, checkpoint="tiny.pt", device="cpu")
    lib = Library.create(tmp_path / "indexes", "adhoc", encoder=encoder)
    lib.add(records)
    monkeypatch.chdir(tmp_path)
    return lib, encoder, ckpt, records


def test_create_encoder_records_its_spec(tmp_path):
    ckpt = save_tiny(tmp_path / "tiny.pt", seed=0)
    enc = create_encoder("openclip", model="tiny", model_config=TINY, checkpoint=str(ckpt), device="cpu")
    spec = enc.spec
    assert spec.name == "openclip" and spec.args["model"] == "tiny" and spec.args["model_config"] == TINY
    assert "device" not in spec.args  # where it runs is chosen where the index is opened
    assert spec.files["checkpoint"] == {"path": str(ckpt.resolve()),
                                        "sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest()}
    assert EncoderSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    again = create_encoder_from_spec(spec)
    assert again.id == enc.id and np.allclose(again.encode_texts(["a field"]), enc.encode_texts(["a field"]))
    assert create_encoder("test-hash").spec == EncoderSpec("test-hash", {}, {})


def test_an_index_reopens_with_the_same_ad_hoc_encoder(built):
    lib, encoder, ckpt, records = built
    want = lib.manifest["encoder"]
    assert want["name"] == "openclip" and want["spec"]["files"]["checkpoint"]["path"] == str(ckpt.resolve())
    reopened = Library.open(lib.folder.parent, "adhoc")
    assert reopened.encoder.id == encoder.id
    np.testing.assert_allclose(reopened.encoder.encode_images([records[1].path]),
                               encoder.encode_images([records[1].path]), atol=1e-6)
    assert reopened.search_image(records[1].path, k=1)[0].id == records[1].id
    runtime = Library.open(lib.folder.parent, "adhoc", encoder_options={"device": "cpu", "precision": "fp32"})
    assert runtime.encoder.id == encoder.id


def test_a_changed_checkpoint_is_refused_clearly(built):
    lib, _, ckpt, _ = built
    save_tiny(ckpt, seed=1)  # same file name, other weights
    with pytest.raises(EncoderMismatchError, match=rf"'adhoc'.*{ckpt.name}.*changed.*rebuild the index"):
        Library.open(lib.folder.parent, "adhoc").encoder
    with pytest.raises(EncoderSpecError, match="changed"):
        create_encoder_from_spec(EncoderSpec.from_dict(lib.manifest["encoder"]["spec"]))


def test_a_missing_checkpoint_is_refused_clearly(built):
    lib, _, ckpt, _ = built
    ckpt.unlink()
    with pytest.raises(EncoderMismatchError, match=rf"{ckpt.name} is gone"):
        Library.open(lib.folder.parent, "adhoc").encoder


def test_indexes_without_a_spec_still_open_by_name(tmp_path):
    """Indexes built before specs were kept (or with an encoder made by hand) reopen by name."""
    lib = Library.create(tmp_path, "plain", encoder=HashEncoder())
    assert "spec" not in lib.manifest["encoder"] and lib.manifest["encoder"]["name"] == "test-hash"
    assert Library.open(tmp_path, "plain").encoder.id == HashEncoder.id
    named = Library.create(tmp_path, "named", encoder="test-hash")
    assert named.manifest["encoder"]["spec"] == {"name": "test-hash", "args": {}, "files": {}}
    assert Library.open(tmp_path, "named").encoder.id == HashEncoder.id


def test_rs_lite_indexes_keep_their_weights_when_the_default_changes(tmp_path, monkeypatch):
    """New rs-lite weights become the default: an index built before (spec with no weights recorded,
    as older rsrag wrote it, or with them pinned, as now) reopens with the weights it was built with
    and says how to move to the new default; new indexes get the new weights."""
    from safetensors.numpy import load_file, save_file

    from rsrag.encoders import rs_lite, weights as store

    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    for suffix in (".safetensors", ".json"):  # "old": the committed weights; "new": the same, changed
        (weights_dir / f"old{suffix}").write_bytes(store.weights_path(rs_lite.DEFAULT_WEIGHTS).with_suffix(suffix).read_bytes())
        (weights_dir / f"new{suffix}").write_bytes((weights_dir / f"old{suffix}").read_bytes())
    tensors = load_file(weights_dir / "new.safetensors")
    name = next(k for k in tensors if k.startswith("image_proj"))
    tensors[name] = (tensors[name] * 1.5).astype(tensors[name].dtype)
    save_file(tensors, weights_dir / "new.safetensors")
    monkeypatch.setattr(store, "WEIGHTS_DIR", weights_dir)

    monkeypatch.setattr(rs_lite, "DEFAULT_WEIGHTS", "old")
    records = make_records(tmp_path / "images", n_per_colour=1)
    old = Library.create(tmp_path / "indexes", "old", encoder=create_encoder("rs-lite"))
    old.add(records)
    assert old.manifest["encoder"]["spec"]["args"] == {"weights": "old"}
    manifest = tmp_path / "indexes" / "old" / "manifest.json"
    legacy = json.loads(manifest.read_text())  # a second index as older rsrag recorded it
    legacy["encoder"]["spec"]["args"] = {}
    (tmp_path / "indexes" / "legacy").mkdir()
    for item in (tmp_path / "indexes" / "old").iterdir():
        target = tmp_path / "indexes" / "legacy" / item.name
        target.symlink_to(item, target_is_directory=item.is_dir()) if item.name != "manifest.json" else None
    (tmp_path / "indexes" / "legacy" / "manifest.json").write_text(json.dumps({**legacy, "name": "legacy"}))
    want = old.search_text("a red square", k=3)

    monkeypatch.setattr(rs_lite, "DEFAULT_WEIGHTS", "new")
    monkeypatch.setattr(rs_lite, "RETIRED_WEIGHTS", ("old",))
    assert create_encoder("rs-lite").id.startswith("rs-lite:new@")
    for name in ("old", "legacy"):
        lib = Library.open(tmp_path / "indexes", name)
        assert lib.encoder.id == old.encoder_id and lib.encoder.superseded_by == "new"
        assert [h.id for h in lib.search_text("a red square", k=3)] == [h.id for h in want]
    monkeypatch.undo()
    assert create_encoder("rs-lite-v1").id.split("@")[0] == "rs-lite:rs-lite-lite0"  # by name, whatever the default


def test_a_config_file_of_ones_own_builds_the_encoder_its_arguments_describe(tmp_path, monkeypatch):
    """`create_encoder("x.json")` (and so `--encoder x.json`): a checkpoint named beside the config
    is found from any folder, and the spec holds the arguments, not the file's name."""
    (tmp_path / "mine").mkdir()
    ckpt = save_tiny(tmp_path / "mine" / "tiny.pt", seed=0)
    config = tmp_path / "mine" / "encoder.json"
    config.write_text(json.dumps({"backend": "openclip", "model": "tiny", "model_config": TINY, "checkpoint": "tiny.pt"}))
    monkeypatch.chdir(tmp_path)
    enc = create_encoder(str(config), device="cpu")
    direct = create_encoder("openclip", model="tiny", model_config=TINY, checkpoint=str(ckpt), device="cpu")
    assert enc.spec == direct.spec and enc.spec.args["checkpoint"] == str(ckpt.resolve())
    assert np.allclose(enc.encode_texts(["a harbour"]), direct.encode_texts(["a harbour"]))
    config.unlink()  # the spec alone makes it again
    assert np.allclose(create_encoder_from_spec(enc.spec).encode_texts(["a harbour"]), enc.encode_texts(["a harbour"]))


@pytest.mark.parametrize("text, message", [
    (None, "not found"),
    ("{not json", "not valid JSON"),
    ('{"model": "tiny"}', 'must be a JSON object with a "backend"'),
    ('["openclip"]', 'must be a JSON object with a "backend"'),
    ('{"backend": "no-such-backend"}', "unknown backend 'no-such-backend'"),
])
def test_a_bad_config_file_is_named_in_a_clear_error(tmp_path, text, message):
    config = tmp_path / "encoder.json"
    if text is not None:
        config.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        create_encoder(str(config))
    assert str(config) in str(info.value)
