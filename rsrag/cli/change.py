"""`rsrag change BEFORE AFTER`: the change map of two dates of one place, as files and words.

BEFORE and AFTER are scene files (GeoTIFF, COG, STAC item), or, with `--index`, dates of an indexed
series (`2009`, `2020-08-31`). Prints the regions (area, what it was -> what it became, a sentence) or
JSON; with `--out DIR` writes `DIR/change.tif` (calibrated score 0..1, 0.5 = the threshold),
`DIR/overlay.png` and `DIR/regions.geojson`.

`rsrag change-search TEXT --index I --from D1 --to D2 [--gone]` ranks where TEXT appeared (or went);
`rsrag timeline --index I --lon X --lat Y` gives concept shares at a point over every date.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from rsrag.cli.common import BBOX_OPTION, NEAR_OPTION, ROOT_OPTION, WITHIN_OPTION, fail, user_errors
from rsrag.cli.index import _progress


def change_command(
    before: str = typer.Argument(..., help="BEFORE: a scene file, or a date of the --index series."),
    after: str = typer.Argument(..., help="AFTER: a scene file, or a date of the --index series."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write change.tif, overlay.png and regions.geojson here."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    index: Optional[str] = typer.Option(None, "--index", "-i", help="An indexed series: BEFORE/AFTER are its dates."),
    root: Optional[str] = ROOT_OPTION,
    chip: Optional[int] = typer.Option(None, "--chip", help="Scene pixels per chip side (default: 224, or a "
                                                            "quarter of a small scene's short side)."),
    stride: float = typer.Option(0.5, "--stride", help="Step between chips, as a fraction of the chip."),
    bands: Optional[str] = typer.Option(None, "--bands", help="Band rule, e.g. true-colour or red,green,blue."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Change threshold in units of the "
                                                                        "nuisance null (default: chosen on val)."),
    concepts: Optional[str] = typer.Option(None, "--concepts", help="Comma-separated land covers to label with."),
) -> None:
    """The change map between two dates of one place: regions, areas, before -> after, sentences."""
    from rsrag.change.concepts import DEFAULT_CONCEPTS
    from rsrag.change.detect import ChangeError, ChangeOptions, detect_scenes, scene_background
    from rsrag.encoders import create_encoder

    options = ChangeOptions(chip=chip, stride=stride, bands=bands)
    if threshold is not None:
        options.threshold = threshold
    names = [c.strip() for c in concepts.split(",") if c.strip()] if concepts else list(DEFAULT_CONCEPTS)
    with user_errors():
        try:
            if index:
                from rsrag.change.series import detect_dates
                from rsrag.index import Library

                library = Library.open(root, index)
                result = detect_dates(library, before, after, options=options, concepts=names)
                background = None
            else:
                for path in (before, after):
                    if not Path(path).is_file():
                        fail(f"{path}: no such scene file (to compare dates of an indexed series, pass --index)")
                result = detect_scenes(create_encoder(), before, after, options=options, concepts=names,
                                       progress=_progress("change", unit="chip"))
                background = scene_background(before) if out else None
        except ChangeError as exc:
            fail(exc)
        files = result.write(out, background=background) if out else {}
    for warning in result.warnings:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    if as_json:
        typer.echo(json.dumps({**result.to_dict(), "files": files}, indent=2, ensure_ascii=False))
        return
    typer.echo(result.sentence)
    summary = result.summary()
    area = f", {summary['changed_area_ha']:.1f} ha changed" if summary["changed_area_ha"] is not None else ""
    typer.echo(f"{summary['changed_windows']} of {summary['scored']} chips changed{area}; "
               f"{len(result.regions)} regions")
    for region in result.regions:
        ha = f"{region.area_m2 / 1e4:9.2f} ha" if region.area_m2 is not None else "        - "
        typer.echo(f"  {region.rank:2d}. {ha}  score {region.score:.2f}  {region.transition:40s} {region.sentence}")
    for note in result.notes:
        typer.secho(f"  note: {note}", dim=True, err=True)
    for kind, path in files.items():
        typer.echo(f"wrote {path}", err=True)
    typer.secho(f"  {result.seconds:.2f} s", dim=True, err=True)


def change_search_command(
    text: str = typer.Argument(..., help='What appeared, e.g. "new buildings" (with --gone: what disappeared).'),
    index: str = typer.Option(..., "--index", "-i", help="An indexed series."),
    since: str = typer.Option(..., "--from", help="The earlier date (2009, 2009-08-18)."),
    until: str = typer.Option(..., "--to", help="The later date."),
    gone: bool = typer.Option(False, "--gone", help='Rank where TEXT was and is no more ("forest" cleared).'),
    k: int = typer.Option(10, "--k", help="Locations."),
    root: Optional[str] = ROOT_OPTION,
    bbox: Optional[str] = BBOX_OPTION,
    near: Optional[str] = NEAR_OPTION,
    within: Optional[Path] = WITHIN_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Where did TEXT appear (or, with --gone, disappear) between two dates of an indexed series?"""
    from rsrag.change.detect import ChangeError
    from rsrag.change.series import change_search
    from rsrag.geo.filters import Place
    from rsrag.index import Library

    with user_errors():
        try:
            place = Place.of(bbox=bbox, near=near, within=within) if (bbox or near or within) else None
            hits = change_search(Library.open(root, index), text, since, until, k=k, place=place, gone=gone)
        except ChangeError as exc:
            fail(exc)
    if as_json:
        typer.echo(json.dumps(hits, indent=2))
        return
    for hit in hits:
        typer.echo(f"{hit['rank']:2d}. {hit['score']:+.3f}  {hit['before_share']:.2f} -> {hit['after_share']:.2f}  "
                   f"({hit['lon']:.5f}, {hit['lat']:.5f})  {hit['before_id']} -> {hit['after_id']}")


def timeline_command(
    index: str = typer.Option(..., "--index", "-i", help="An indexed series."),
    lon: float = typer.Option(..., "--lon"),
    lat: float = typer.Option(..., "--lat"),
    radius: float = typer.Option(0.0, "--radius", help="Average the chips within this many metres."),
    concepts: str = typer.Option("buildings,forest,water", "--concepts", help="Comma-separated concepts."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG plot here."),
    root: Optional[str] = ROOT_OPTION,
) -> None:
    """Each concept's share at a point (or region) over every date of an indexed series, as JSON."""
    from rsrag.change.series import plot_timeline, timeline
    from rsrag.index import Library

    with user_errors():
        result = timeline(Library.open(root, index), lon, lat, [c.strip() for c in concepts.split(",") if c.strip()],
                          radius_m=radius)
        if plot:
            result["plot"] = str(plot_timeline(result, plot))
    if result["missing_dates"]:
        typer.secho(f"warning: no chip at this point on {', '.join(result['missing_dates'])}", fg=typer.colors.YELLOW,
                    err=True)
    typer.echo(json.dumps(result, indent=2))
