"""The GSD degradation (`rsrag.data.degrade`), the resolution-robustness evaluator and its CLI
(`rsrag eval resolution`, `--gsd-factor`), with a small fake encoder that sees texture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from rsrag.cli import eval as eval_cli
from rsrag.data import ImageRecord
from rsrag.data.degrade import blur_sigma, degrade, degrade_array, parse_factors
from rsrag.encoders import Encoder, Preprocess
from rsrag.eval import RetrievalEvaluator, ZeroShotEvaluator
from rsrag.eval.resolution import ResolutionEvaluator


def high_frequency_energy(image: Image.Image, cutoff: float = 0.1) -> float:
    """Mean spectral power above `cutoff` cycles per pixel (grey level, mean removed)."""
    grey = np.asarray(image.convert("L"), np.float64)
    spectrum = np.abs(np.fft.fft2(grey - grey.mean())) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(grey.shape[0]), np.fft.fftfreq(grey.shape[1]), indexing="ij")
    return float(spectrum[np.hypot(fy, fx) > cutoff].sum() / spectrum.size)


def noise_image(size: tuple[int, int] = (96, 80), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_degrade_keeps_size_and_identity_at_factor_1():
    image = noise_image()
    assert degrade(image, 1) is image
    rgb = np.asarray(image)
    assert degrade_array(rgb, 1) is rgb
    for factor in (2, 3.5, 8, 16, 200):  # 200: coarser than the image, one pixel left
        out = degrade(image, factor)
        assert out.size == image.size and out.mode == "RGB"
        assert degrade_array(rgb, factor).shape == rgb.shape


def test_degrade_removes_more_high_frequencies_as_factor_grows():
    image = noise_image((128, 128))  # white noise: power at every frequency
    energies = [high_frequency_energy(degrade(image, f)) for f in (1, 2, 4, 8, 16)]
    assert all(a > b for a, b in zip(energies, energies[1:])), energies
    assert energies[1] < 0.1 * energies[0] and energies[-1] < 1e-3 * energies[0]
    # a flat image stays flat: the blur and resampling keep the mean
    flat = Image.new("RGB", (64, 64), (120, 30, 200))
    assert np.abs(np.asarray(degrade(flat, 8), np.int16) - np.asarray(flat, np.int16)).max() <= 1


def test_blur_sigma_and_factor_checks():
    assert blur_sigma(1) == 0.0
    assert blur_sigma(8) == pytest.approx(2 * blur_sigma(4))
    # the Gaussian's MTF at the coarse Nyquist frequency (1 / (2 * factor) cycles per pixel) is 0.25
    sigma = blur_sigma(4)
    assert np.exp(-2 * np.pi**2 * sigma**2 * (1 / 8) ** 2) == pytest.approx(0.25)
    for bad in (0.5, 0, -2, float("nan")):
        with pytest.raises(ValueError, match="GSD factor"):
            degrade(noise_image(), bad)
    assert parse_factors("1, 2,4,8,16") == [1, 2, 4, 8, 16]
    assert parse_factors("1.5") == [1.5]
    for bad in ("", "1,1", "0.5", "x"):
        with pytest.raises(ValueError):
            parse_factors(bad)


class TextureEncoder(Encoder):
    """4-d embeddings we control: images -> (mean red, mean green, texture, 0.05); texts -> counts of
    'red', 'green', 'rough'. Textured ("rough") classes lose their texture as the image coarsens."""

    id = "fake-texture@1"
    dim = 4
    preprocess = Preprocess(size=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))

    def _encode_arrays(self, batch: np.ndarray) -> np.ndarray:
        texture = np.abs(np.diff(batch, axis=3)).mean(axis=(1, 2, 3)) * 4
        return np.stack([batch[:, 0].mean((1, 2)), batch[:, 1].mean((1, 2)), texture,
                         np.full(len(batch), 0.05)], axis=1)

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        return np.array([[t.count("red"), t.count("green"), t.count("rough"), 0.0] for t in texts],
                        np.float32) + 1e-3


def make_records(tmp_path: Path) -> list[ImageRecord]:
    """Two smooth classes (red, green) and one textured class (rough grey), 3 images each."""
    rng = np.random.default_rng(1)
    records = []
    for label in ("red", "green", "rough"):
        for i in range(3):
            if label == "rough":
                pixels = np.repeat(rng.integers(0, 2, (32, 32, 1), dtype=np.uint8) * 255, 3, axis=2)
            else:
                pixels = np.zeros((32, 32, 3), np.uint8)
                pixels[..., 0 if label == "red" else 1] = 200 + 10 * i
            path = tmp_path / f"{label}{i}.png"
            Image.fromarray(pixels).save(path)
            records.append(ImageRecord(f"t/{label}{i}", path, "test", label, [f"a {label} place", f"{label} land"]))
    return records


def test_resolution_curve_keys_and_factor_1_equals_plain_evaluation(tmp_path):
    records = make_records(tmp_path)
    encoder = TextureEncoder()
    result = ResolutionEvaluator(records, name="tiny", split="test", factors=[1, 2, 8])(encoder)
    assert [row["factor"] for row in result["curve"]] == [1, 2, 8]
    assert result["n_images"] == 9 and result["n_classes"] == 3 and result["n_captions"] == 18
    assert result["encoder"] == "fake-texture@1" and result["dataset"] == "tiny" and result["split"] == "test"
    for row in result["curve"]:
        assert {"factor", "blur_sigma", "accuracy", "per_class", "most_predicted", "mR", "i2t_r1", "t2i_r10"} <= set(row)
        assert len(row["most_predicted"]) == 3 and sum(row["most_predicted"].values()) <= 100.0
        assert set(row["per_class"]) == {"red", "green", "rough"}
    plain_zs = ZeroShotEvaluator(records)(encoder)
    plain_rt = RetrievalEvaluator(records)(encoder)
    native = result["curve"][0]
    assert native["accuracy"] == plain_zs["accuracy"] == 100.0
    assert native["per_class"] == {c: v["accuracy"] for c, v in plain_zs["per_class"].items()}
    assert native["mR"] == plain_rt["mR"]
    # 8x coarser, the texture is gone and the rough class is lost; the smooth ones remain
    coarse = result["curve"][-1]["per_class"]
    assert coarse["rough"] < 100.0 and coarse["red"] == coarse["green"] == 100.0
    # texture gone, a grey image sits between red and green; the tie goes to the first class
    assert result["curve"][-1]["most_predicted"] == {"green": 66.67, "red": 33.33, "rough": 0.0}


def test_resolution_without_captions_scores_zero_shot_only(tmp_path):
    records = [ImageRecord(r.id, r.path, r.split, r.label) for r in make_records(tmp_path)]
    result = ResolutionEvaluator(records, factors=[1, 4])(TextureEncoder())
    assert result["n_captions"] == 0 and "mR" not in result["curve"][0]
    with pytest.raises(ValueError, match="GSD factor"):
        ResolutionEvaluator(records, factors=[1, 0.5])


def test_cli_resolution_json_and_gsd_factor(tmp_path, monkeypatch):
    records = make_records(tmp_path)
    monkeypatch.setattr(eval_cli, "create_encoder", lambda name=None, **kw: TextureEncoder())
    monkeypatch.setattr(eval_cli, "load_dataset", lambda name, split: records)
    runner = CliRunner()
    out = runner.invoke(eval_cli.app, ["resolution", "--dataset", "ucm", "--factors", "1,8", "--json",
                                       "-o", str(tmp_path / "res.json")])
    assert out.exit_code == 0, out.output
    result = json.loads((tmp_path / "res.json").read_text())
    assert [row["factor"] for row in result["curve"]] == [1, 8]
    coarse_rough = result["curve"][1]["per_class"]["rough"]

    out = runner.invoke(eval_cli.app, ["zeroshot", "--dataset", "ucm", "--gsd-factor", "8", "--json",
                                       "-o", str(tmp_path / "zs8.json")])
    assert out.exit_code == 0, out.output
    zs8 = json.loads((tmp_path / "zs8.json").read_text())
    assert zs8["gsd_factor"] == 8 and zs8["per_class"]["rough"]["accuracy"] == coarse_rough
    out = runner.invoke(eval_cli.app, ["retrieval", "--dataset", "ucm", "--gsd-factor", "8", "--json",
                                       "-o", str(tmp_path / "rt8.json")])
    assert out.exit_code == 0, out.output
    assert json.loads((tmp_path / "rt8.json").read_text())["mR"] == result["curve"][1]["mR"]

    out = runner.invoke(eval_cli.app, ["resolution", "--dataset", "ucm", "--factors", "1,0.5"])
    assert out.exit_code == 2 and "GSD factor" in out.output
    out = runner.invoke(eval_cli.app, ["zeroshot", "--dataset", "ucm", "--gsd-factor", "0.5"])
    assert out.exit_code == 2 and "GSD factor" in out.output



def test_cli_resolution_on_a_class_folder(tmp_path, monkeypatch):
    records = [ImageRecord(r.id, r.path, None, r.label) for r in make_records(tmp_path)]  # no captions
    monkeypatch.setattr(eval_cli, "create_encoder", lambda name=None, **kw: TextureEncoder())
    monkeypatch.setattr(eval_cli, "load_class_folder", lambda folder: records)
    out = CliRunner().invoke(eval_cli.app, ["resolution", "--folder", str(tmp_path), "--factors", "1,8",
                                            "-o", str(tmp_path / "r.json")])
    assert out.exit_code == 0, out.output
    assert "most predicted" in out.output and "mR" not in out.output
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["dataset"] == tmp_path.name and result["n_captions"] == 0
    assert [row["accuracy"] for row in result["curve"]] == [100.0, pytest.approx(200 / 3)]
