"""`rsrag localize SCENE "query"` and `rsrag ground IMAGE "query"`: where in a scene (or one image) a
text applies, as a heatmap, an overlay, regions, or a mask (rsrag.localize)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from rsrag.cli.common import ROOT_OPTION, user_errors


def _settings(scales: Optional[str], chip: Optional[int], dense_weight: Optional[float]):
    from rsrag.localize import LocalizeSettings

    changes: dict = {}
    if scales:
        changes["scales"] = tuple(int(s) for s in scales.split(","))
    if chip:
        changes["chip"] = chip
    if dense_weight is not None:
        changes["dense_weight"] = dense_weight
    return LocalizeSettings(**changes)


def _progress(label: str):
    """A tqdm bar on stderr counting chips, and its callback."""
    from tqdm import tqdm

    bar = tqdm(desc=label, unit="chip", leave=False, disable=None)
    return bar, bar.update


def localize_command(
    scene: str = typer.Argument(..., help="A scene file (GeoTIFF, JP2, STAC item), a plain image, or with "
                                          "--index the id of an indexed scene."),
    query: str = typer.Argument(..., help="What to look for, e.g. \"farmland\" or \"small lakes among fields\"."),
    index: Optional[str] = typer.Option(None, "--index", "-i", help="Read the scene's stored chips from this index."),
    root: Optional[str] = ROOT_OPTION,
    out: Optional[Path] = typer.Option(None, "--out", help="Write heatmap.tif, overlay.png and regions.geojson here."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    top: int = typer.Option(10, "--top", help="At most this many regions."),
    scales: Optional[str] = typer.Option(None, "--scales", help="Chip scales, e.g. 1,2 (unindexed scenes)."),
    chip: Optional[int] = typer.Option(None, "--chip", help="Chip side in scene pixels at scale 1 (unindexed)."),
    dense_weight: Optional[float] = typer.Option(None, "--dense-weight", help="Share of the patch-level map (0..1)."),
    encoder_name: Optional[str] = typer.Option(None, "--encoder", help="Encoder (unindexed scenes; default rs-lite)."),
) -> None:
    """Heatmap of where a text query applies in a scene; top regions as polygons with scores."""
    from rsrag.localize.api import localize

    with user_errors():
        settings = _settings(scales, chip, dense_weight)
        library = None
        if index:
            from rsrag.index.library import Library

            library = Library.open(root, index)
            encoder = library.encoder
        else:
            from rsrag.encoders import DEFAULT_ENCODER, create_encoder

            if not Path(scene).is_file():
                raise ValueError(f"{scene}: no such file (give --index NAME to use an indexed scene id)")
            encoder = create_encoder(encoder_name or DEFAULT_ENCODER)
        bar, tick = _progress("chips")
        try:
            result, paths = localize(scene, query, encoder=encoder, settings=settings, library=library, out=out,
                                     top=top, progress=tick)
        finally:
            bar.close()
    data = result.to_dict()
    data["files"] = {k: str(v) for k, v in paths.items()}
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(("match: " if result.match else "no match: ") + result.message)
    for region in result.regions:
        area = f"{region.area_m2:,.0f} m2" if region.area_m2 is not None else f"{region.cells} cells (pixels)"
        x0, y0, x1, y1 = region.geometry.bounds
        typer.echo(f"  #{region.rank}  score {region.score:.3f}  mean {region.mean:.3f}  {area}  "
                   f"bounds {x0:.1f},{y0:.1f},{x1:.1f},{y1:.1f}")
    for kind, path in paths.items():
        typer.echo(f"wrote {kind}: {path}", err=True)


def ground_command(
    image: Path = typer.Argument(..., help="One image (JPEG, PNG, TIFF)."),
    query: str = typer.Argument(..., help="What to find inside it."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write mask.png, regions.geojson and overlay.png here."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    encoder_name: Optional[str] = typer.Option(None, "--encoder", help="Encoder (default rs-lite)."),
) -> None:
    """A coarse mask of where a query applies inside one image, with its polygons (pixel coordinates)."""
    from rsrag.encoders import DEFAULT_ENCODER, create_encoder
    from rsrag.localize.api import ground, load_rgb

    with user_errors():
        pixels = load_rgb(image)
        result = ground(pixels, query, encoder=create_encoder(encoder_name or DEFAULT_ENCODER))
        paths = result.save(out, pixels) if out is not None else {}
    data = result.to_dict()
    data["files"] = {k: str(v) for k, v in paths.items()}
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    loc = result.localization
    typer.echo(("match: " if loc.match else "no match: ") + loc.message)
    typer.echo(f"mask covers {result.mask.mean():.1%} of the image; {len(result.regions)} region(s)")
    for kind, path in paths.items():
        typer.echo(f"wrote {kind}: {path}", err=True)
