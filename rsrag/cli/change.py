"""`rsrag change BEFORE AFTER`: the change map of two dates of one place, as files and words.

BEFORE and AFTER are scene files (GeoTIFF, COG, STAC item), or, with `--index`, dates of an indexed
series (`2009`, `2020-08-31`). Prints the regions (area, what it was -> what it became, a sentence) or
JSON; with `--out DIR` writes `DIR/change.tif` (calibrated score 0..1, 0.5 = the threshold),
`DIR/overlay.png` and `DIR/regions.geojson`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from rsrag.cli.common import ROOT_OPTION, fail, user_errors
from rsrag.cli.index import _progress


def change_command(
    before: str = typer.Argument(..., help="BEFORE: a scene file, or a date of the --index series."),
    after: str = typer.Argument(..., help="AFTER: a scene file, or a date of the --index series."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write change.tif, overlay.png and regions.geojson here."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    index: Optional[str] = typer.Option(None, "--index", "-i", help="An indexed series: BEFORE/AFTER are its dates."),
    root: Optional[Path] = ROOT_OPTION,
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
