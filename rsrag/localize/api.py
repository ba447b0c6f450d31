"""One call per use: localize a query in an indexed scene, a scene file or a plain image; ground a
query inside one image as a coarse mask. The command line and the web service both go through here.

- `features_for(...)`: an indexed scene (by id, stored chip vectors reused), a georeferenced raster
  (streamed through the tiler once; refused above `max_chips` with the limit named), or a plain image
  (PNG/JPEG/array: pixel coordinates, no CRS).
- `preview(...)`: the scene as people see it (decimated RGB, the scene's one stretch) for the overlay.
- `ground(...)`: a single image, cut into half-size overlapping chips plus the whole image, patch
  scores on the half-size chips: a mask (cells at least halfway from the background to the peak)
  at the image's size and its polygons in pixel coordinates; empty when nothing matches.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from rsrag.encoders import Encoder
from rsrag.geo.heatmap import HeatRegion, regions_geojson, upsample
from rsrag.localize.features import SceneFeatures, array_features, scene_features
from rsrag.localize.localizer import Localization, LocalizeError, LocalizeSettings, Localizer
from rsrag.localize.store import indexed_features

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img", ".json")
PREVIEW_SIDE = 1024


def is_raster(path: str | Path) -> bool:
    return Path(path).suffix.lower() in RASTER_SUFFIXES


def load_rgb(path: str | Path | bytes) -> np.ndarray:
    """A plain image as (h, w, 3) uint8 (errors name the file)."""
    from rsrag.imageio import load_image

    return np.asarray(load_image(path).convert("RGB"))


def features_for(source: str | Path | np.ndarray, *, encoder: Encoder, settings: LocalizeSettings,
                 library: Any = None, progress: Callable[[int], None] | None = None) -> SceneFeatures:
    """Features of an indexed scene (`library` given: `source` is its scene id), a raster file, or a
    plain image (path or array); see module doc."""
    s = settings
    if library is not None:
        return indexed_features(library, str(source), progress=progress)
    if isinstance(source, np.ndarray):
        image = source
    elif is_raster(source):
        return scene_features(encoder, source, chip=s.chip, scales=s.scales, overlap=s.overlap,
                              max_chips=s.max_chips, progress=progress)
    else:
        image = load_rgb(source)
    from rsrag.localize.features import count_windows

    needed = count_windows(image.shape[1], image.shape[0], s.chip, s.scales, s.overlap)
    if needed > s.max_chips:
        raise LocalizeError(f"a {image.shape[1]}x{image.shape[0]} px image needs {needed} chips, over the limit of "
                            f"{s.max_chips} chips per request; send a smaller image or index it as a scene")
    return array_features(encoder, image, chip=s.chip, scales=s.scales, overlap=s.overlap, progress=progress)


def preview(source: str | Path | np.ndarray, max_side: int = PREVIEW_SIDE) -> np.ndarray:
    """The scene (or image) as RGB uint8, long side at most `max_side`, for overlays."""
    if isinstance(source, np.ndarray):
        image = Image.fromarray(source[..., :3])
    elif is_raster(source):
        from rsrag.geo import SceneReader, open_scene

        scene = open_scene(source)
        factor = max(1.0, max(scene.width, scene.height) / max_side)
        size = (max(1, round(scene.width / factor)), max(1, round(scene.height / factor)))
        with SceneReader(scene, scene.pick(None)) as reader:
            return reader.read((0, 0, scene.width, scene.height), size)[0]
    else:
        image = Image.fromarray(load_rgb(source))
    factor = max(1.0, max(image.size) / max_side)
    if factor > 1:
        image = image.resize((round(image.size[0] / factor), round(image.size[1] / factor)), Image.BILINEAR)
    return np.asarray(image)


def localize(source: str | Path | np.ndarray, query: str, *, encoder: Encoder, settings: LocalizeSettings = LocalizeSettings(),
             library: Any = None, out: str | Path | None = None, top: int = 10,
             progress: Callable[[int], None] | None = None) -> tuple[Localization, dict[str, Path]]:
    """Localize `query` (module doc); with `out`, write heatmap.tif, overlay.png, regions.geojson."""
    features = features_for(source, encoder=encoder, settings=settings, library=library, progress=progress)
    result = Localizer(encoder, settings).localize(features, query, top=top)
    paths: dict[str, Path] = {}
    if out is not None:
        scene_path = _scene_path(source, library)
        background = preview(scene_path) if scene_path is not None else None
        paths = result.save(out, background)
    return result, paths


def _scene_path(source: Any, library: Any) -> Any:
    if library is None:
        return source
    table = library.rows(["path"], filters={"scene": str(source)})
    return str(table.column("path")[0].as_py()) if table.num_rows else None


@dataclass
class Grounding:
    """A query grounded in one image: a coarse mask and its polygons (pixel coordinates)."""

    localization: Localization
    mask: np.ndarray  # (h, w) bool at the image's size
    regions: list[HeatRegion]

    def to_dict(self) -> dict:
        out = self.localization.to_dict()
        out["mask_fraction"] = round(float(self.mask.mean()), 4)
        return out

    def save(self, out: str | Path, image: np.ndarray | None = None) -> dict[str, Path]:
        """`mask.png` (white where the query applies), `regions.geojson` (pixel coordinates) and, with the
        image, `overlay.png`."""
        from rsrag.geo.heatmap import overlay_png

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"mask": out / "mask.png", "regions": out / "regions.geojson"}
        Image.fromarray((self.mask * 255).astype(np.uint8)).save(paths["mask"])
        loc = self.localization
        regions_geojson(self.regions, paths["regions"], query=loc.query, match=loc.match, message=loc.message)
        if image is not None:
            paths["overlay"] = overlay_png(out / "overlay.png", loc.heatmap.grid, vmin=0.0, vmax=1.0,
                                           flat=not loc.match, background=image)
        return paths


def ground(image: np.ndarray | str | Path, query: str, *, encoder: Encoder,
           settings: LocalizeSettings = LocalizeSettings()) -> Grounding:
    """Ground a query inside one image (module doc)."""
    pixels = load_rgb(image) if not isinstance(image, np.ndarray) else image
    height, width = pixels.shape[:2]
    side = min(height, width)
    settings = replace(settings, chip=max(32, side // 2), scales=(1, 2), overlap=0.5, max_side=min(256, max(height, width)))
    features = array_features(encoder, pixels, chip=settings.chip, scales=settings.scales, overlap=settings.overlap)
    result = Localizer(encoder, settings).localize(features, query)
    if result.match:
        threshold = result.background + 0.5 * (result.peak[2] - result.background)
        mask = upsample(result.heatmap.grid, (height, width)) >= threshold
    else:
        mask = np.zeros((height, width), bool)
    return Grounding(result, mask, result.regions)


__all__ = ["Grounding", "features_for", "ground", "is_raster", "load_rgb", "localize", "preview"]
