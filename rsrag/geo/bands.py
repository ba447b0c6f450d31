"""Band rules: which three bands of a scene make the RGB chip the encoder sees.

A band is known by its 1-based index in the scene, and where the sensor is known, by its sensor name
(`B04`, `B4`) and its common name (`red`, `nir`, `swir16`, the STAC `eo:bands` vocabulary). A rule is:

- `None` (default): the sensor's true colour when the red, green and blue bands are known; else the
  GeoTIFF's colour interpretation (red, green, blue); else bands 1, 2, 3 (a 1-band scene is grey);
- a composite name: `true-colour` (red, green, blue), `false-colour` (nir, red, green: vegetation
  bright red), `swir` (swir22, nir, red: burn scars, bare soil), `agriculture` (swir16, nir, blue),
  `urban` (swir22, swir16, red), `water` (nir, swir16, red);
- three band references separated by commas: sensor names (`B8,B4,B3`), common names
  (`nir,red,green`) or 1-based indexes (`4,1,2`).

A rule the scene cannot satisfy is an error naming the file and the bands it has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

COMPOSITES: dict[str, tuple[str, str, str]] = {
    "true-colour": ("red", "green", "blue"),
    "false-colour": ("nir", "red", "green"),
    "swir": ("swir22", "nir", "red"),
    "agriculture": ("swir16", "nir", "blue"),
    "urban": ("swir22", "swir16", "red"),
    "water": ("nir", "swir16", "red"),
}
_ALIASES = {"true-color": "true-colour", "truecolour": "true-colour", "rgb": "true-colour",
            "false-color": "false-colour", "falsecolour": "false-colour", "cir": "false-colour"}

# sensor -> the band names of its files in order, each with its common name (None: no colour role)
SENSORS: dict[str, list[tuple[str, str | None]]] = {
    "sentinel-2": [("B01", "coastal"), ("B02", "blue"), ("B03", "green"), ("B04", "red"), ("B05", "rededge1"),
                   ("B06", "rededge2"), ("B07", "rededge3"), ("B08", "nir"), ("B8A", "nir08"), ("B09", "nir09"),
                   ("B10", "cirrus"), ("B11", "swir16"), ("B12", "swir22")],
    "landsat-8": [("B1", "coastal"), ("B2", "blue"), ("B3", "green"), ("B4", "red"), ("B5", "nir"),
                  ("B6", "swir16"), ("B7", "swir22"), ("B8", "pan"), ("B9", "cirrus"), ("B10", "lwir11"),
                  ("B11", "lwir12")],
    "naip": [("R", "red"), ("G", "green"), ("B", "blue"), ("N", "nir")],
}
SENSORS["landsat-9"] = SENSORS["landsat-8"]
SENSORS["sentinel-2-l2a"] = [b for b in SENSORS["sentinel-2"] if b[0] != "B10"]  # 12 bands: no cirrus band
_SENSOR_ALIASES = {"s2": "sentinel-2", "sentinel2": "sentinel-2", "sentinel-2a": "sentinel-2",
                   "sentinel-2b": "sentinel-2", "sentinel-2c": "sentinel-2", "l8": "landsat-8", "landsat8": "landsat-8",
                   "landsat-8-oli": "landsat-8", "l9": "landsat-9", "landsat9": "landsat-9"}
_COMMON = {"red", "green", "blue", "nir", "swir16", "swir22", "coastal", "rededge1", "rededge2", "rededge3",
           "nir08", "nir09", "cirrus", "pan", "lwir11", "lwir12"}


class BandRuleError(ValueError):
    """A band rule the scene cannot satisfy, or an unknown sensor/composite."""


def canonical_sensor(name: str | None) -> str | None:
    """'S2' / 'Sentinel-2B' / 'landsat8' -> the key of SENSORS (None stays None)."""
    if name is None:
        return None
    key = re.sub(r"[\s_]+", "-", str(name).strip().lower())
    key = _SENSOR_ALIASES.get(key, key)
    if key not in SENSORS:
        raise BandRuleError(f"unknown sensor {name!r}; known: {', '.join(sorted(SENSORS))}")
    return key


@dataclass(frozen=True)
class Band:
    """One band of a scene: its 1-based index, its sensor name and common name where known."""

    index: int
    name: str | None = None
    common: str | None = None

    def matches(self, ref: str) -> bool:
        ref = ref.strip().lower()
        names = {n.lower() for n in (self.name, self.common) if n}
        if self.name and re.fullmatch(r"b0?\d+a?", self.name.lower()):  # B04 == B4, B8A == B8a
            names.add(re.sub(r"^b0+(?=\d)", "b", self.name.lower()))
        if re.fullmatch(r"b0?\d+a?", ref):
            ref = re.sub(r"^b0+(?=\d)", "b", ref)
        return ref in names


def sensor_bands(sensor: str | None, count: int) -> list[Band]:
    """The bands of a `count`-band file of a known sensor (names only when the count fits)."""
    layout = SENSORS.get(sensor or "", [])
    if sensor == "sentinel-2" and count == 12:
        layout = SENSORS["sentinel-2-l2a"]
    if len(layout) != count:
        return [Band(i) for i in range(1, count + 1)]
    return [Band(i, name, common) for i, (name, common) in enumerate(layout, start=1)]


def described_bands(descriptions: Sequence[str | None], colours: Sequence[str | None]) -> list[Band]:
    """Bands named by the file itself: GDAL band descriptions ('B4', 'red') and colour interpretation."""
    bands = []
    for i, (desc, colour) in enumerate(zip(descriptions, colours), start=1):
        common = colour if colour in ("red", "green", "blue") else None
        if desc and desc.strip().lower() in _COMMON:
            common = desc.strip().lower()
        bands.append(Band(i, desc.strip() if desc else None, common))
    return bands


def resolve_rule(rule: str | Sequence[str | int] | None, bands: Sequence[Band], where: str) -> list[Band]:
    """The three bands (R, G, B order) a rule picks from a scene's bands; `where` names the scene in errors."""
    if not bands:
        raise BandRuleError(f"{where}: the scene has no bands")
    have = ", ".join(b.name or b.common or str(b.index) for b in bands)
    if rule is None:
        for refs in (COMPOSITES["true-colour"],):
            picked = [next((b for b in bands if b.common == ref), None) for ref in refs]
            if all(picked):
                return picked  # type: ignore[return-value]
        if len(bands) == 1:
            return [bands[0]] * 3
        if len(bands) == 2:
            raise BandRuleError(f"{where}: a 2-band scene has no RGB reading; name three bands (it has {have})")
        return list(bands[:3])
    if isinstance(rule, str):
        key = _ALIASES.get(rule.strip().lower(), rule.strip().lower())
        refs: list[str] = list(COMPOSITES[key]) if key in COMPOSITES else [r for r in rule.split(",")]
    else:
        refs = [str(r) for r in rule]
    if len(refs) == 1:
        refs = refs * 3
    if len(refs) != 3:
        raise BandRuleError(f"{where}: a band rule names 1 or 3 bands or a composite "
                            f"({', '.join(COMPOSITES)}), got {rule!r}")
    picked = []
    for ref in refs:
        ref = str(ref).strip()
        if ref.isdigit():
            idx = int(ref)
            band = next((b for b in bands if b.index == idx), None)
        else:
            band = next((b for b in bands if b.matches(ref)), None)
        if band is None:
            raise BandRuleError(f"{where}: band rule {rule!r} needs band {ref!r}, which this scene does not have "
                                f"(its bands: {have}; name the sensor, or give 1-based band numbers)")
        picked.append(band)
    return picked
