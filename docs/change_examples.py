"""Change over time on real imagery: writes small JPEGs and `docs/change/examples.json`.

    PYTHONPATH=. RSRAG_DATA=../shared/data python docs/change_examples.py

- LEVIR-CC: the three real before/after pairs (256 px, 0.5 m; no CRS): the change map and the generated
  sentence, with BLEU-4 / CIDEr against their five human captions (three pairs: an illustration, not a
  benchmark).
- Landsat, Pucallpa 1985 -> 2020 (real change: river meanders, town growth, clearing).
- NAIP 2009 -> 2020 (prairie, lakes and crops: mostly seasonal change; the test of not crying wolf).
- The Pucallpa series as an index (8 dates, 64 px chips): the timeline of buildings / forest / water
  around the town 1985-2020 (`pucallpa_timeline.jpg`) and "where did new buildings appear?".

Each picture is BEFORE | AFTER | AFTER with the change map (0.5 = the calibrated threshold) over it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rsrag.change.detect import ChangeOptions, detect_arrays, detect_scenes, scene_background  # noqa: E402
from rsrag.config import data_root  # noqa: E402
from rsrag.encoders import create_encoder  # noqa: E402
from rsrag.geo.heatmap import overlay_rgba  # noqa: E402
from rsrag.metrics.caption import score_captions  # noqa: E402

OUT = ROOT / "docs" / "change"
SIDE = 300  # pixels per panel


def panel(image: np.ndarray, title: str) -> Image.Image:
    im = Image.fromarray(image[..., :3]).convert("RGB")
    im.thumbnail((SIDE, SIDE))
    canvas = Image.new("RGB", (SIDE, im.height + 18), "white")
    canvas.paste(im, (0, 18))
    ImageDraw.Draw(canvas).text((4, 3), title, fill="black")
    return canvas


def figure(before: np.ndarray, after: np.ndarray, grid: np.ndarray, titles: tuple[str, str], path: Path) -> None:
    over = overlay_rgba(grid, vmin=0.0, vmax=1.0, flat=False, background=after[..., :3], alpha=0.55)
    panels = [panel(before, titles[0]), panel(after, titles[1]), panel(over, "change (0.5 = threshold)")]
    height = max(p.height for p in panels)
    sheet = Image.new("RGB", (sum(p.width for p in panels) + 8, height), "white")
    x = 0
    for p in panels:
        sheet.paste(p, (x, 0))
        x += p.width + 4
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, quality=82)


def strongest(result, n: int = 3) -> list[dict]:
    """The highest-scoring windows, changed or not: what the map would say next."""
    before, after = result.labels("before"), result.labels("after")
    order = [i for i in np.argsort(-np.nan_to_num(result.scores, nan=-1.0))[:n]]
    return [{"window": list(result.windows[i]), "score": round(float(result.scores[i]), 3),
             "transition": f"{before[i]} -> {after[i]}"} for i in order]


def summary(result) -> dict:
    return {"sentence": result.sentence, "strongest_windows": strongest(result), "summary": result.summary(), "seconds": round(result.seconds, 2),
            "calibration": result.calibration.to_dict(), "warnings": result.warnings, "notes": result.notes,
            "regions": [{k: r.to_dict()[k] for k in ("rank", "score", "area_ha", "transition", "position", "sentence")}
                        for r in result.regions[:8]]}


def series_part(data: Path) -> dict:
    """Index the Pucallpa dates (in a temporary folder) and ask the series what changed around the town."""
    import tempfile

    from rsrag.change.series import change_search, plot_timeline, timeline
    from rsrag.geo import Tiling, index_scenes
    from rsrag.index import Library

    with tempfile.TemporaryDirectory() as tmp:
        library = Library.create(Path(tmp), "pucallpa", encoder=create_encoder())
        index_scenes(library, [data / "geo" / "landsat_pucallpa"], tiling=Tiling(size=64, overlap=32))
        town = timeline(library, -74.553, -8.379, ["buildings", "forest", "water"], radius_m=3000)
        plot_timeline(town, OUT / "pucallpa_timeline.jpg")
        built = change_search(library, "buildings", "1985", "2020", k=3)
        cleared = change_search(library, "forest", "1985", "2020", k=3, gone=True)
    return {"timeline_town": town, "new_buildings": built, "forest_cleared": cleared}


def main() -> None:
    encoder = create_encoder()
    data = data_root()
    out: dict = {}
    # LEVIR-CC: three real pairs
    levir = data / "change" / "levir_cc"
    rows = [json.loads(line) for line in (levir / "captions.jsonl").read_text().splitlines() if line.strip()]
    hyps, refs, pairs = [], [], []
    for row in rows:
        a = np.asarray(Image.open(levir / "A" / f"{row['pair']}.png").convert("RGB"))
        b = np.asarray(Image.open(levir / "B" / f"{row['pair']}.png").convert("RGB"))
        result = detect_arrays(encoder, a, b, options=ChangeOptions(chip=128, stride=0.25), names=("A", "B"))
        figure(a, b, result.heatmap.grid, (f"{row['pair']} before", "after"), OUT / f"levir_{row['pair']}.jpg")
        hyps.append(result.sentence)
        refs.append(row["captions"])
        pairs.append({"pair": row["pair"], "generated": result.sentence, "references": row["captions"],
                      **summary(result)})
    scores = score_captions(refs, hyps, metrics=("bleu", "cider"), ptb=False)
    out["levir_cc"] = {"pairs": pairs, "bleu4": round(scores["bleu4"], 4), "cider": round(scores["cider"], 4),
                       "note": "three pairs: an illustration, not a benchmark"}
    # real series
    for name, before, after, chip in (
            ("pucallpa_1985_2020", data / "geo/landsat_pucallpa/1985.tif", data / "geo/landsat_pucallpa/2020.tif", 64),
            ("naip_2009_2020", data / "geo/naip/m_4709963_se_14_1_20090818.tif",
             data / "geo/naip/m_4709963_se_14_1_20200831.tif", 128)):
        result = detect_scenes(encoder, before, after, options=ChangeOptions(chip=chip, stride=0.5))
        bg_b, bg_a = scene_background(before, 600), scene_background(after, 600)
        figure(bg_b, bg_a, result.heatmap.grid, (before.name, after.name), OUT / f"{name}.jpg")
        out[name] = {"before": str(before.relative_to(data)), "after": str(after.relative_to(data)), **summary(result)}
        print(name, result.sentence, f"{result.seconds:.1f}s", flush=True)
    out["pucallpa_series"] = series_part(data)
    # the data folder as the README names it, not this machine's path
    text = json.dumps(out, indent=2).replace(str(data.resolve()), "../shared/data").replace(str(data), "../shared/data")
    (OUT / "examples.json").write_text(text + "\n")
    print(json.dumps({k: (v.get("sentence") if isinstance(v, dict) and "sentence" in v else
                          {"bleu4": v.get("bleu4"), "cider": v.get("cider")}) for k, v in out.items()}, indent=2))


if __name__ == "__main__":
    main()
