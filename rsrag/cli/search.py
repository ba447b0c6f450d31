"""`rsrag search`: search an index by text or by image, as a table or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from rsrag.cli.common import (AFTER_OPTION, BBOX_OPTION, BEFORE_OPTION, NEAR_OPTION, ROOT_OPTION, WITHIN_OPTION,
                               user_errors)


FORMATS = ("table", "json", "geojson", "geoparquet")


def search_command(
    query: Optional[str] = typer.Argument(None, help="Text query (or use --image / --like)."),
    index: str = typer.Option(..., "--index", help="Index name."),
    root: Optional[str] = ROOT_OPTION,
    image: Optional[Path] = typer.Option(None, "--image", help="Search by an image instead of text."),
    like: Optional[str] = typer.Option(None, "--like", help="Search by a record already in the index (its id): "
                                                            "more like this chip."),
    same_place: Optional[str] = typer.Option(None, "--same-place", help="Chips of other dates over the footprint "
                                                                        "of this record (by id), oldest first."),
    k: int = typer.Option(10, "--k", "-k", help="Number of results."),
    mode: str = typer.Option("hybrid", "--mode", help="Text search: dense | bm25 | hybrid (RRF)."),
    filters: List[str] = typer.Option([], "--filter",
                                      help="column=value (also != > >= < <=; a,b = either); repeat to AND."),
    where: Optional[str] = typer.Option(None, "--where", help="Raw SQL filter, e.g. \"label IN ('port', 'beach')\"."),
    bbox: Optional[str] = BBOX_OPTION,
    near: Optional[str] = NEAR_OPTION,
    within: Optional[Path] = WITHIN_OPTION,
    after: Optional[str] = AFTER_OPTION,
    before: Optional[str] = BEFORE_OPTION,
    output: str = typer.Option("table", "--format", help="table | json | geojson (FeatureCollection on stdout) | "
                                                         "geoparquet (needs --out)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the results to this file instead of stdout."),
    as_json: bool = typer.Option(False, "--json", help='Same as --format json: {"hits": [...]}'),
) -> None:
    """Search an index by text, by image or by a stored chip, within a place and time."""
    from rsrag.geo.examples import more_like
    from rsrag.geo.filters import Place
    from rsrag.index.sharded import open_index

    output = "json" if as_json else output
    with user_errors():
        if output not in FORMATS:
            raise ValueError(f"--format is one of {', '.join(FORMATS)}, not {output!r}")
        if output == "geoparquet" and out is None:
            raise ValueError("--format geoparquet writes a file: give --out FILE.parquet")
        if sum(x is not None for x in (query, image, like, same_place)) != 1:
            raise ValueError("give one of: a text query, --image PATH, --like ID or --same-place ID")
        lib = open_index(root, index)  # a Library, or a ShardedLibrary for an index built with --shards
        anchor = _record(lib, like or same_place) if like or same_place else None
        if anchor is not None and near is not None and "," not in near:  # --like ID --near METRES
            if anchor.metadata.get("lon") is None:
                raise ValueError(f"record {anchor.id!r} has no place (lon/lat) to search around")
            near = f"{anchor.metadata['lon']},{anchor.metadata['lat']},{near}"
        place = Place.of(bbox=bbox, near=near, within=within, after=after, before=before)
        if same_place is not None:
            hits = _same_place(lib, anchor, place, filters, where, k)
            title = f"{len(hits)} chips of other dates over {anchor.id}"
        elif like is not None:
            hits = more_like(lib, anchor.id, k, filters=filters, where=where, place=place)
            title = f"{len(hits)} hits in {index} like {anchor.id}"
        elif image is not None:
            hits = lib.search_image(image, k, filters=filters, where=where, place=place)
            title = f"{len(hits)} hits in {index} for image {image}"
        else:
            hits = lib.search_text(query, k, mode=mode, filters=filters, where=where, place=place)
            title = f"{len(hits)} hits in {index} for {query!r} ({mode})"
        for rank, hit in enumerate(hits, start=1):
            hit.rank = rank
    _emit(hits, output, out, title)


def _record(lib, record_id: str):
    found = lib.get([record_id])
    if not found:
        raise ValueError(f"no record {record_id!r} in index {lib.name!r}")
    return found[0]


def _same_place(lib, anchor, place, filters, where, k: int) -> list:
    """Records whose footprint intersects the anchor's, from other scenes, by acquisition time."""
    import shapely

    from rsrag.geo.filters import Place
    from rsrag.geo.footprint import footprint_geometry

    footprint = anchor.metadata.get("footprint")
    if not footprint:
        raise ValueError(f"record {anchor.id!r} has no footprint (is it a scene chip?)")
    area = Place.of(within=shapely.geometry.mapping(footprint_geometry(footprint)))
    ids = lib.rows(["id", "scene", "datetime"], filters=filters, where=where, place=area).to_pylist()
    if place is not None:
        allowed = set(lib.rows(["id"], place=place).column("id").to_pylist())
        ids = [r for r in ids if r["id"] in allowed]
    others = sorted((r for r in ids if r["scene"] != anchor.metadata.get("scene")), key=lambda r: (r["datetime"] or "", r["id"]))
    return lib.get([r["id"] for r in others[:k]])


def _emit(hits: list, output: str, out: Optional[Path], title: str) -> None:
    """Print or write the hits in the chosen format."""
    if output == "table":
        _print_hits(hits, title)
        return
    if output == "geoparquet":
        from rsrag.geo.export import write_geoparquet

        write_geoparquet(hits, out)
        typer.echo(f"{len(hits)} hits written to {out}")
        return
    if output == "geojson":
        from rsrag.geo.export import to_feature_collection

        text = json.dumps(to_feature_collection(hits), default=str)
    else:
        text = json.dumps({"hits": [h.to_dict() for h in hits]}, default=str)
    if out is not None:
        out.write_text(text + "\n")
        typer.echo(f"{len(hits)} hits written to {out}")
    else:
        typer.echo(text)


def _print_hits(hits, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    chips = any(h.metadata.get("window") for h in hits)  # scene chips: where and when instead of captions
    columns = [("#", {"justify": "right"}), ("score", {"justify": "right"}), ("id", {})]
    columns += ([("date", {}), ("lon, lat", {}), ("gsd", {"justify": "right"})] if chips else
                [("label", {}), ("caption", {"overflow": "fold", "ratio": 3}), ("path", {"overflow": "fold", "ratio": 2})])
    for col, kw in columns:
        table.add_column(col, **kw)
    for h in hits:
        if chips:
            m = h.metadata
            where = f"{m['lon']:.5f}, {m['lat']:.5f}" if m.get("lon") is not None else "(pixels)"
            table.add_row(str(h.rank), f"{h.score:.4f}", h.id, (m.get("datetime") or "")[:10], where,
                          f"{m['gsd']:.1f} m" if m.get("gsd") else "")
        else:
            table.add_row(str(h.rank), f"{h.score:.4f}", h.id, h.label or "", h.captions[0] if h.captions else "",
                          h.path or "")
    Console().print(table)
