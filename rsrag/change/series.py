"""Series: the dates of one place in an index, and change, search and timelines over them.

An index built from a folder of dated scenes of one area (`rsrag index build FOLDER`) holds each
date's chips with their scene, window, CRS, bounds and acquisition time. Chips of two dates cover the
same place when their scenes share a grid (the same CRS and bounds: the same window means the same
ground); scenes on different grids are matched by chip centre in the BEFORE scene's CRS (the nearest
AFTER chip within half a chip), which is said in the notes. Nothing is re-embedded: a change map of two
indexed dates uses the stored vectors, so it costs a table scan and a few matrix products. The
calibration's self-pairs need pixels: they are read from the BEFORE scene file once and cached on disk
per (index, scene, encoder).

- `series_dates(library)`: the dated scenes of the index, oldest first.
- `detect_dates(library, "2009", "2020")`: the change map between two dates (`ChangeMap`).
- `change_search(library, "new buildings", "2009", "2020")`: locations whose AFTER chip matches the text
  and whose BEFORE chip does not ("where did new buildings appear?"), with place filters.
- `timeline(library, lon, lat, concepts)`: each concept's share at a point over every date; `plot_timeline`.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rsrag.change.concepts import DEFAULT_CONCEPTS, ConceptBank
from rsrag.change.detect import ChangeError, ChangeMap, ChangeOptions, detect_vectors, encode_images
from rsrag.change.nuisance import jitter
from rsrag.change.score import Calibration, raw_scores
from rsrag.geo.footprint import footprint_wkt

MAP_COLUMNS = ["id", "window", "scale", "bounds"]  # what matching chips and citing them needs
PLACE_COLUMNS = MAP_COLUMNS + ["lon", "lat", "footprint"]  # and where they are, for search results


@dataclass(frozen=True)
class SeriesScene:
    """One date of a series: the scene, its file, grid and time."""

    scene: str
    path: str
    datetime: str
    crs: str
    chips: int

    def to_dict(self) -> dict:
        return {"scene": self.scene, "path": self.path, "datetime": self.datetime, "date": self.datetime[:10],
                "crs": self.crs, "chips": self.chips}


_DATES: dict[tuple[str, int], list[SeriesScene]] = {}


def series_dates(library: Any) -> list[SeriesScene]:
    """The dated scenes of an index, oldest first (chips without a time or a scene are not a series);
    one scan per table version."""
    key = (str(library.location), library.version)
    if key not in _DATES:
        _DATES.clear()
        _DATES[key] = _scan_dates(library)
    return _DATES[key]


def _scan_dates(library: Any) -> list[SeriesScene]:
    if not {"scene", "datetime", "crs"} <= set(library.columns()):
        return []  # an index of plain images: no series
    table = library.rows(["scene", "path", "datetime", "crs"])
    seen: dict[str, list] = {}
    for scene, path, when, crs in zip(*(table.column(c).to_pylist() for c in ("scene", "path", "datetime", "crs"))):
        if scene and when:
            entry = seen.setdefault(scene, [path, when, crs or "", 0])
            entry[3] += 1
    return sorted((SeriesScene(s, p, w, c, n) for s, (p, w, c, n) in seen.items()), key=lambda s: (s.datetime, s.scene))


def pick_date(library: Any, date: str) -> SeriesScene:
    """The scene of a date ("2009", "2009-08", "2009-08-18"); an unknown or ambiguous date is an error
    that lists the series' dates."""
    scenes = series_dates(library)
    if not scenes:
        raise ChangeError(f"index {library.name!r} holds no dated scene chips (build it from dated scenes)")
    text = str(date).strip()
    matches = [s for s in scenes if s.datetime.startswith(text) or s.scene == text]
    listed = ", ".join(s.datetime[:10] for s in scenes)
    if not matches:
        raise ChangeError(f"no date {text!r} in the series of index {library.name!r}; its dates are {listed}")
    if len({m.datetime for m in matches}) > 1:
        raise ChangeError(f"{text!r} matches several dates of index {library.name!r} "
                          f"({', '.join(m.datetime[:10] for m in matches)}); give the full date")
    return matches[0]


def _chips(library: Any, scene: SeriesScene, place: Any = None, columns: Sequence[str] = MAP_COLUMNS) -> dict[str, list]:
    table = library.rows(list(columns) + ["vector"], filters={"scene": scene.scene}, place=place)
    out = {c: table.column(c).to_pylist() for c in columns}
    scales = np.array([int(s or 1) for s in out["scale"]])
    keep = np.flatnonzero(scales == scales.min()) if len(scales) else np.zeros(0, int)  # the finest scale
    column = table.column("vector").combine_chunks()
    vectors = np.asarray(column.flatten(), np.float32).reshape(len(column), -1) if len(column) else \
        np.zeros((0, library.dim), np.float32)  # one buffer, not a Python array per row
    out = {c: [v[i] for i in keep] for c, v in out.items()}
    out["vector"] = vectors[keep]
    return out


def _window(text: str) -> tuple[int, int, int, int]:
    col, row, width, height = (int(v) for v in str(text).split(","))
    return col, row, width, height


def match_chips(before: dict, after: dict, before_crs: str, after_crs: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Index pairs (i in BEFORE, j in AFTER) of chips covering the same ground, and notes."""
    notes = []
    pairs: list[tuple[int, int]] = []
    if before_crs == after_crs:  # aligned grids give chips with identical bounds, whatever the scene sizes
        where = {b: j for j, b in enumerate(after["bounds"]) if b}
        pairs = [(i, where[b]) for i, b in enumerate(before["bounds"]) if b in where]
    if len(pairs) < 0.5 * min(len(before["bounds"]), len(after["bounds"])):  # other grids: by chip centre
        from pyproj import Transformer

        def centres(rows: dict) -> np.ndarray:
            boxes = np.array([[float(v) for v in b.split(",")] for b in rows["bounds"]])
            return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1), boxes

        cb, boxes_b = centres(before)
        ca, _ = centres(after)
        if before_crs != after_crs:
            transformer = Transformer.from_crs(after_crs, before_crs, always_xy=True)
            ca = np.stack(transformer.transform(ca[:, 0], ca[:, 1]), axis=1)
            notes.append(f"the AFTER scene ({after_crs}) is matched to the BEFORE grid ({before_crs}) by chip centre")
        else:
            notes.append("the two dates' scenes have different grids: chips matched by centre")
        half = np.abs(boxes_b[:, 2] - boxes_b[:, 0]) / 2
        pairs = []
        for i in range(len(cb)):
            d = np.hypot(*(ca - cb[i]).T)
            j = int(np.argmin(d)) if len(d) else -1
            if j >= 0 and d[j] <= half[i]:
                pairs.append((i, j))
    if not pairs:
        raise ChangeError("the two dates share no chip location (the scenes do not overlap)")
    idx = np.array(pairs)
    return idx[:, 0], idx[:, 1], notes


def scene_calibration(library: Any, scene: SeriesScene, bank: ConceptBank, options: ChangeOptions,
                      cache: Path | None = None) -> Calibration:
    """The calibration for a scene of an index: its self-pairs read from the scene file once, then
    cached (their raw scores) per index, scene, encoder and concept bank."""
    from rsrag.config import cache_dir
    from rsrag.geo import ChipSource

    key = hashlib.sha1(json.dumps([library.name, library.encoder_id, scene.scene, scene.path, bank.texts,
                                   bank.temperature, options.embedding_weight, options.calibration_chips,
                                   options.seed]).encode()).hexdigest()[:16]
    path = (cache or cache_dir()) / f"change-null-{key}.json"
    if path.is_file():
        null = np.array(json.loads(path.read_text()), np.float32)
        return Calibration.for_bank(bank, null, options.threshold)
    rows = library.rows(["id", "path", "window", "size", "bands", "stretch", "scale"], filters={"scene": scene.scene})
    records = rows.to_pylist()
    rng = np.random.default_rng(options.seed)
    picked = rng.choice(len(records), size=min(options.calibration_chips, len(records)), replace=False)
    source = ChipSource()
    try:
        images = [source.read(records[i]["path"], records[i]) for i in picked]
    finally:
        source.close()
    encode = encode_images(library.encoder)
    copies = [im for im in images for _ in range(options.calibration_copies)]
    null = raw_scores(bank, encode(copies), encode([jitter(im, rng) for im in copies]), options.embedding_weight)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([round(float(v), 6) for v in null]))
    return Calibration.for_bank(bank, null, options.threshold)


_BANKS: dict[tuple, ConceptBank] = {}


def concept_bank(encoder: Any, concepts: Sequence[str]) -> ConceptBank:
    """Concept banks are reused across calls (in the process, and on disk per encoder): encoding their
    prompts is most of the cost of a change map from stored vectors."""
    from rsrag.config import cache_dir

    key = (encoder.id, tuple(concepts))
    if key not in _BANKS:
        digest = hashlib.sha1(json.dumps([encoder.id, list(concepts), "texts=names"]).encode()).hexdigest()[:16]
        path = cache_dir() / f"change-concepts-{digest}.npz"
        if path.is_file():
            data = np.load(path)
            _BANKS[key] = ConceptBank(list(concepts), [str(t) for t in data["texts"]], data["vectors"])
        else:
            bank = ConceptBank.from_texts(encoder, list(concepts), texts=list(concepts))
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, texts=np.array(bank.texts), vectors=bank.vectors)
            tmp.replace(path)
            _BANKS[key] = bank
    return _BANKS[key]


def detect_dates(library: Any, before: str, after: str, *, options: ChangeOptions = ChangeOptions(),
                 concepts: Sequence[str] = DEFAULT_CONCEPTS, place: Any = None) -> ChangeMap:
    """The change map of two dates of an indexed series, from the stored vectors (module doc)."""
    from rsrag.geo.scene import open_scene

    t0 = time.perf_counter()
    first, second = pick_date(library, before), pick_date(library, after)
    if first.scene == second.scene:
        raise ChangeError(f"{before!r} and {after!r} are the same scene ({first.scene}) of index {library.name!r}")
    rows_b, rows_a = _chips(library, first, place), _chips(library, second, place)
    if not len(rows_b["id"]) or not len(rows_a["id"]):
        raise ChangeError(f"no chips of {first.datetime[:10] if not len(rows_b['id']) else second.datetime[:10]} "
                          f"in index {library.name!r} within the place asked")
    ib, ia, notes = match_chips(rows_b, rows_a, first.crs, second.crs)
    bank = concept_bank(library.encoder, concepts)
    calibration = scene_calibration(library, first, bank, options)
    scene = open_scene(first.path)
    windows = [_window(rows_b["window"][i]) for i in ib]
    warnings = []
    lost = len(rows_b["id"]) - len(ib)
    if lost > 0.5 * len(rows_b["id"]):
        warnings.append(f"{second.path}: only {len(ib)} of {len(rows_b['id'])} chips of {first.datetime[:10]} have a "
                        f"chip of {second.datetime[:10]} at the same place (nodata, cloud or a smaller scene)")
    result = detect_vectors(bank, calibration, windows, rows_b["vector"][ib], rows_a["vector"][ia], width=scene.width,
                            height=scene.height, transform=scene.transform, crs=scene.crs,
                            names=(first.path, second.path), options=options)
    result.notes = notes + [f"{library.name}: {first.datetime[:10]} ({first.scene}) -> {second.datetime[:10]} "
                            f"({second.scene}), {len(ib)} chip pairs from stored vectors"]
    result.warnings = warnings
    result.dates = (first.datetime, second.datetime)
    result.chip_ids = ([rows_b["id"][i] for i in ib], [rows_a["id"][j] for j in ia])
    result.seconds = time.perf_counter() - t0
    return result


def change_search(library: Any, text: str, before: str, after: str, *, k: int = 10, place: Any = None,
                  gone: bool = False) -> list[dict]:
    """Locations whose AFTER chip matches `text` and whose BEFORE chip does not (with `gone`: the
    reverse, "where was forest cleared?"), best first. Score: the rise of the text's share among the
    default concepts plus the text, so "matches" is relative to what else the chip could be."""
    first, second = pick_date(library, before), pick_date(library, after)
    rows_b, rows_a = _chips(library, first, place, PLACE_COLUMNS), _chips(library, second, place, PLACE_COLUMNS)
    if not len(rows_b["id"]) or not len(rows_a["id"]):
        return []
    ib, ia, _ = match_chips(rows_b, rows_a, first.crs, second.crs)
    base = concept_bank(library.encoder, DEFAULT_CONCEPTS)
    query = ConceptBank.from_texts(library.encoder, [text], texts=[text])
    bank = ConceptBank(base.names + [text], base.texts + [text], np.concatenate([base.vectors, query.vectors]),
                       base.temperature)
    pb = bank.probabilities(rows_b["vector"][ib])[:, -1]
    pa = bank.probabilities(rows_a["vector"][ia])[:, -1]
    rise = (pb - pa) if gone else (pa - pb)
    order = np.argsort(-rise)[:k]
    return [{"rank": r + 1, "score": round(float(rise[o]), 4), "before_share": round(float(pb[o]), 4),
             "after_share": round(float(pa[o]), 4), "before_id": rows_b["id"][ib[o]], "after_id": rows_a["id"][ia[o]],
             "before_date": first.datetime[:10], "after_date": second.datetime[:10], "lon": rows_b["lon"][ib[o]],
             "lat": rows_b["lat"][ib[o]], "footprint": footprint_wkt(rows_b["footprint"][ib[o]])} for r, o in enumerate(order)]


def timeline(library: Any, lon: float, lat: float, concepts: Sequence[str] = ("buildings", "forest", "water"),
             radius_m: float = 0.0) -> dict:
    """Each concept's share (softmax over the default concepts plus these) at a point, or averaged over the
    chips within `radius_m`, for every date of the series, oldest first; the chips cited per date."""
    from rsrag.geo.filters import Place

    place = Place.of(near=f"{lon},{lat},{max(radius_m, 1.0)}")
    concepts = list(concepts)
    base = concept_bank(library.encoder, DEFAULT_CONCEPTS)
    extra = [c for c in concepts if c not in base.names]
    bank = base
    if extra:
        more = ConceptBank.from_texts(library.encoder, extra, texts=extra)
        bank = ConceptBank(base.names + extra, base.texts + more.texts, np.concatenate([base.vectors, more.vectors]),
                           base.temperature)
    columns = [bank.names.index(c) for c in concepts]
    points = []
    for scene in series_dates(library):
        rows = _chips(library, scene, place)
        if not len(rows["id"]):
            points.append({"date": scene.datetime[:10], "scene": scene.scene, "chips": [], "scores": None})
            continue
        shares = bank.probabilities(rows["vector"])[:, columns].mean(axis=0)
        points.append({"date": scene.datetime[:10], "scene": scene.scene, "chips": rows["id"][:5],
                       "scores": {c: round(float(s), 4) for c, s in zip(concepts, shares)}})
    missing = [p["date"] for p in points if p["scores"] is None]
    return {"index": library.name, "lon": lon, "lat": lat, "radius_m": radius_m, "concepts": concepts,
            "points": points, "missing_dates": missing}


def plot_timeline(result: dict, path: str | Path) -> Path:
    """A line per concept over the dates (matplotlib, PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    points = [p for p in result["points"] if p["scores"]]
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    dates = [p["date"] for p in points]
    for concept in result["concepts"]:
        ax.plot(dates, [p["scores"][concept] for p in points], marker="o", label=concept)
    ax.set_ylabel("share")
    ax.set_title(f"{result['index']} at {result['lon']:.4f}, {result['lat']:.4f}")
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
