"""Scenes and geography: georeferenced rasters cut into chips that carry where and when they are.

Owns: reading scenes (GeoTIFF / COG / JP2 files and STAC items with local assets) window by window,
band rules per sensor, one stretch per scene, tiling with overlap and a scale pyramid, WGS84
footprints, place-and-time filters, chip records, and streaming scenes into a `Library` (through the
Library's public API, handed in by the caller). May import: config, fileio, data, imageio, encoders; the
index imports geo (for its place filters), so geo never imports index, nor rag, service or cli.
"""

from rsrag.geo.bands import COMPOSITES, SENSORS, BandRuleError
from rsrag.geo.chips import CHIP_COLUMNS, ChipSource, chip_id
from rsrag.geo.footprint import Footprint, FootprintError, footprint
from rsrag.geo.indexing import SceneIndexReport, index_scenes
from rsrag.geo.scene import Scene, SceneError, SceneReader, Stretch, find_scenes, open_scene, parse_time
from rsrag.geo.tiling import ChipWindow, Tiling, chip_windows, count_chips

__all__ = [
    "COMPOSITES", "SENSORS", "BandRuleError", "CHIP_COLUMNS", "ChipSource", "chip_id", "Footprint",
    "FootprintError", "footprint", "SceneIndexReport", "index_scenes", "Scene", "SceneError", "SceneReader",
    "Stretch", "find_scenes", "open_scene", "parse_time", "ChipWindow", "Tiling", "chip_windows", "count_chips",
]
