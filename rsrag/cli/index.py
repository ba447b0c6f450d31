"""`rsrag index build|add|delete|info|list`: build and maintain search indexes.

Errors the user can fix (missing, busy or badly named index, bad filter, encoder mismatch, bad
SOURCE) print one line `error: ...` and exit with status 2 (`rsrag.cli.common.user_errors`).
"""

from __future__ import annotations

import json
import sys
from typing import List, Optional

import typer

from rsrag.cli.common import ROOT_OPTION, user_errors

app = typer.Typer(help="Build and maintain search indexes (ROOT/NAME; ROOT from --root, $RSRAG_INDEXES or ./indexes).",
                  no_args_is_help=True)

_JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _progress(desc: str, unit: str = "img"):
    """A tqdm bar (rate and ETA) created on the first callback, when the total is known."""
    from tqdm import tqdm

    state: dict = {}

    def update(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def _index_type(index_type: str, memory_budget: Optional[str]) -> str:
    """--index-type, or with --memory-budget `auto:budget=BYTES`: auto then picks the type that fits
    (rsrag.index.sizing) now and again as the index grows."""
    if memory_budget is None:
        return index_type
    from rsrag.index.ann import IndexSpec
    from rsrag.index.sizing import parse_size

    if IndexSpec.parse(index_type).kind != "auto":
        raise ValueError(f"--memory-budget picks the index type itself; leave out --index-type {index_type}")
    return f"auto:budget={parse_size(memory_budget)}"


def _index_choice(lib, index_type: str) -> dict:
    """{"index_choice": what a memory budget made auto pick for this index, and why}, or {}."""
    from rsrag.index.ann import IndexSpec
    from rsrag.index.sizing import choose

    spec = IndexSpec.parse(index_type)
    if spec.kind != "auto" or "budget" not in spec.params or not len(lib):
        return {}
    return {"index_choice": choose(len(lib), lib.dim, spec.params["budget"]).why}


def _run_build(source: str, name: str, root: Optional[str], encoder: Optional[str], index_type: str,
               split: Optional[str], limit: Optional[int], upsert: bool, create: bool, batch_size: int,
               chunk_size: int, workers: int, as_json: bool, ray: Optional[dict] = None) -> None:
    from rsrag.index.build import build_index

    with user_errors():
        if ray:  # `--ray ADDRESS`: the same build on a Ray cluster (rsrag.index.distributed)
            from rsrag.index.distributed import RayOptions, build_index_ray

            lib, report = build_index_ray(source, name, root, address=ray["address"], encoder=encoder,
                                          index_type=index_type, split=split, limit=limit, create=create,
                                          options=RayOptions(actors=ray["actors"], batch_size=ray["batch_size"]),
                                          chunk_size=chunk_size, progress=_progress(name))
        else:
            lib, report = build_index(source, name, root, encoder=encoder, index_type=index_type, split=split,
                                      limit=limit, upsert=upsert, create=create, batch_size=batch_size,
                                      chunk_size=chunk_size, workers=workers, progress=_progress(name))
    summary = {"index": str(lib.location), "records": len(lib), **report.to_dict(),
               "failures": [{"id": i, "path": p, "error": e} for i, p, e in report.failed]}
    summary |= _index_choice(lib, index_type)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    if "index_choice" in summary:
        typer.echo(f"index type {summary['index_choice']}")
    rate = f", {summary['images_per_second']} img/s" if summary["images_per_second"] else ""
    typer.echo(f"{lib.location}: {summary['records']} records (added {report.added}, replaced {report.replaced}, "
               f"already there {report.skipped}, failed {len(report.failed)}) in {report.seconds:.1f}s{rate}")
    for i, p, e in report.failed[:20]:
        typer.secho(f"skipped {i} ({p}): {e}", fg=typer.colors.YELLOW, err=True)
    if len(report.failed) > 20:
        typer.secho(f"... and {len(report.failed) - 20} more (see `rsrag index info`)", fg=typer.colors.YELLOW,
                    err=True)


def _scene_options(tile: Optional[int], overlap: float, overlap_unit: str, scales: str, gsd: Optional[float],
                   max_nodata: float):
    """The tiling the scene options describe (rsrag.geo.Tiling)."""
    from rsrag.geo import Tiling

    try:
        levels = tuple(int(v) for v in scales.split(","))
    except ValueError:
        raise ValueError(f"--scales takes whole numbers separated by commas, e.g. 1,2,4 (got {scales!r})") from None
    return Tiling(size=tile or 224, overlap=overlap, unit=overlap_unit, gsd=gsd, scales=levels, max_nodata=max_nodata)


def _run_scene_build(source: List[str], name: str, root: Optional[str], encoder: Optional[str], index_type: str,
                     tiling, bands: Optional[str], sensor: Optional[str], when: Optional[str], create: bool,
                     batch_size: int, as_json: bool, ray: Optional[dict] = None) -> None:
    from rsrag.index.build import build_scene_index

    with user_errors():
        if ray:  # `--ray ADDRESS`: the workers read and embed the chips (rsrag.index.distributed)
            from rsrag.index.distributed import RayOptions, build_scene_index_ray

            lib, report = build_scene_index_ray(
                source, name, root, address=ray["address"], encoder=encoder, index_type=index_type, tiling=tiling,
                bands=bands, sensor=sensor, datetime=when, create=create,
                options=RayOptions(actors=ray["actors"], batch_size=ray["batch_size"]),
                progress=_progress(name, unit="chip"))
        else:
            lib, report = build_scene_index(source, name, root, encoder=encoder, index_type=index_type,
                                            tiling=tiling, bands=bands, sensor=sensor, datetime=when, create=create,
                                            batch_size=batch_size, progress=_progress(name, unit="chip"))
    summary = {"index": str(lib.location), "records": len(lib), **report.to_dict(), **_index_choice(lib, index_type)}
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    if "index_choice" in summary:
        typer.echo(f"index type {summary['index_choice']}")
    rate = f", {summary['chips_per_second']} chips/s" if summary["chips_per_second"] else ""
    typer.echo(f"{lib.location}: {summary['records']} records from {report.scenes} scene(s): added {report.added} "
               f"chips, already there {report.skipped_existing}, mostly nodata {report.skipped_nodata}, "
               f"failed {len(report.failed)} in {report.seconds:.1f}s{rate}")
    for note in report.notes[:20]:
        typer.secho(note, fg=typer.colors.YELLOW, err=True)
    for src, err in report.failed[:20]:
        typer.secho(f"skipped {src}: {err}", fg=typer.colors.YELLOW, err=True)


def _run_sharded_build(source: List[str], name: str, root: Optional[str], encoder: Optional[str], index_type: str,
                       shards: int, shard_by: str, split: Optional[str], limit: Optional[int], batch_size: int,
                       chunk_size: int, workers: int, tiling, bands: Optional[str], sensor: Optional[str],
                       when: Optional[str], as_json: bool) -> None:
    """A build into N shards (`rsrag.index.sharded`): records, or scenes' chips when `tiling` is set."""
    from rsrag.index.sharded import build_sharded, build_sharded_scenes

    with user_errors():
        if tiling is not None:
            lib, report = build_sharded_scenes(source, name, root, shards=shards, by=shard_by, encoder=encoder,
                                               index_type=index_type, tiling=tiling, bands=bands, sensor=sensor,
                                               datetime=when, batch_size=min(batch_size, 16),
                                               progress=_progress(name, unit="chip"))
        else:
            lib, report = build_sharded(source[0], name, root, shards=shards, by=shard_by, encoder=encoder,
                                        index_type=index_type, split=split, limit=limit, batch_size=batch_size,
                                        chunk_size=chunk_size, workers=workers, progress=_progress(name))
    info = lib.info()
    if as_json:
        typer.echo(json.dumps({**info, **report.to_dict()}, indent=2, default=str))
        return
    sizes = ", ".join(f"{s['name']} {s['records']}" for s in info["shards"])
    typer.echo(f"{lib.location}: {info['records']} records in {shards} shards by {shard_by} ({sizes}); added "
               f"{report.added}, failed {len(report.failed)} in {report.seconds:.1f}s")


_TILE = typer.Option(None, "--tile", help="Scenes: chip side in pixels (default 224).")
_OVERLAP = typer.Option(0.0, "--overlap", help="Scenes: overlap of neighbouring chips (see --overlap-unit).")
_OVERLAP_UNIT = typer.Option("px", "--overlap-unit", help="Scenes: px (chip pixels) or m (metres).")
_SCALES = typer.Option("1", "--scales", help="Scenes: pyramid of scales, e.g. 1,2,4 (2 = chips of 2x the ground).")
_GSD = typer.Option(None, "--gsd", help="Scenes: resample to this many metres per chip pixel.")
_BANDS = typer.Option(None, "--bands", help="Scenes: band rule: true-colour, false-colour, swir, ... or B8,B4,B3 "
                                            "or 1-based numbers 4,3,2 (default: the sensor's true colour).")
_SENSOR = typer.Option(None, "--sensor", help="Scenes: sentinel-2 | landsat-8 | landsat-9 | naip (default: detected).")
_DATETIME = typer.Option(None, "--datetime", help="Scenes: acquisition time (default: from the file, item or name).")
_MAX_NODATA = typer.Option(0.5, "--max-nodata", help="Scenes: skip chips with more than this fraction of nodata.")
_SCENES = typer.Option(None, "--scenes/--images", help="Treat SOURCE as scenes to tile, or as images "
                                                       "(default: scenes for rasters, STAC items and folders of "
                                                       "georeferenced rasters larger than a chip).")


def _wants_scenes(source: List[str], scenes: Optional[bool], tile: Optional[int]) -> bool:
    from rsrag.index.build import is_scene_source

    if scenes is not None:
        return scenes
    return len(source) > 1 or is_scene_source(source[0], tile or 224)


@app.command("build")
def build_cmd(
    source: List[str] = typer.Argument(..., help="Image folder, captions .jsonl/.csv, dataset rsicd / ucm "
                                                 "(rsicd:test), or scenes: GeoTIFF/COG/JP2 files, folders of them, "
                                                 "STAC item JSONs (several allowed)."),
    name: str = typer.Option(..., "--name", help="Index name (a folder under ROOT)."),
    root: Optional[str] = ROOT_OPTION,
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder (default: the index's own, else rs-lite)."),
    index_type: str = typer.Option("auto", "--index-type",
                                   help="auto | flat | ivf[:nlist=N,nprobe=N] | hnsw[:m=N,ef_search=N] | "
                                        "ivfpq[:nlist=N,m=N,nprobe=N,opq=0|1,rerank=N]"),
    memory_budget: Optional[str] = typer.Option(None, "--memory-budget",
                                                help="Memory for the ANN structure, e.g. 512MB, 2GB, 1.5GiB: "
                                                     "auto picks flat, ivf or ivfpq to fit it, and says why."),
    split: Optional[str] = typer.Option(None, "--split", help="Only records of this split."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only N records, spread evenly over the source."),
    batch_size: int = typer.Option(64, "--batch-size"),
    chunk_size: int = typer.Option(512, "--chunk-size", help="Records per LanceDB commit (what a kill can lose)."),
    workers: int = typer.Option(2, "--workers", help="Image decoding threads."),
    scenes: Optional[bool] = _SCENES,
    tile: Optional[int] = _TILE,
    overlap: float = _OVERLAP,
    overlap_unit: str = _OVERLAP_UNIT,
    scales: str = _SCALES,
    gsd: Optional[float] = _GSD,
    bands: Optional[str] = _BANDS,
    sensor: Optional[str] = _SENSOR,
    when: Optional[str] = _DATETIME,
    max_nodata: float = _MAX_NODATA,
    shards: Optional[int] = typer.Option(None, "--shards", help="Split the index into N shards NAME.000.. "
                                                                "(searched in parallel, merged)."),
    shard_by: str = typer.Option("hash", "--shard-by", help="With --shards: hash (of the id) or geo (S2 cell "
                                                            "of lon/lat, so place queries ask few shards)."),
    ray: Optional[str] = typer.Option(None, "--ray", help="Run the build on the Ray cluster at ADDRESS "
                                                          "(host:port, or auto: the one this machine is in)."),
    ray_actors: Optional[int] = typer.Option(None, "--ray-actors", help="Ray: encoder actors (default: one per CPU)."),
    ray_batch_size: int = typer.Option(32, "--ray-batch-size", help="Ray: images per task."),
    as_json: bool = _JSON,
) -> None:
    """Create index NAME from SOURCE, or resume an interrupted build (finished items are kept)."""
    with user_errors():
        index_type = _index_type(index_type, memory_budget)
        as_scenes = _wants_scenes(source, scenes, tile)
        tiling = _scene_options(tile, overlap, overlap_unit, scales, gsd, max_nodata) if as_scenes else None
    if shards:
        _run_sharded_build(source, name, root, encoder, index_type, shards, shard_by, split, limit, batch_size,
                           chunk_size, workers, tiling, bands, sensor, when, as_json)
        return
    on_ray = ray and {"address": ray, "actors": ray_actors, "batch_size": ray_batch_size}
    if as_scenes:
        _run_scene_build(source, name, root, encoder, index_type, tiling, bands, sensor, when, True,
                         min(batch_size, 16), as_json, ray=on_ray)
        return
    _run_build(source[0], name, root, encoder, index_type, split, limit, False, True, batch_size, chunk_size,
               workers, as_json, ray=on_ray)


@app.command("add")
def add_cmd(
    source: str = typer.Argument(..., help="Image folder, captions .jsonl/.csv, or dataset name."),
    name: str = typer.Option(..., "--name"),
    root: Optional[str] = ROOT_OPTION,
    upsert: bool = typer.Option(False, "--upsert", help="Replace records whose id is already indexed."),
    split: Optional[str] = typer.Option(None, "--split"),
    limit: Optional[int] = typer.Option(None, "--limit"),
    batch_size: int = typer.Option(64, "--batch-size"),
    chunk_size: int = typer.Option(512, "--chunk-size"),
    workers: int = typer.Option(2, "--workers"),
    as_json: bool = _JSON,
) -> None:
    """Add SOURCE's records to an existing index (ids already there are skipped unless --upsert)."""
    _run_build(source, name, root, None, "auto", split, limit, upsert, False, batch_size, chunk_size, workers,
               as_json)


@app.command("delete")
def delete_cmd(
    ids: List[str] = typer.Option(..., "--id", help="Record id to delete (repeat for several)."),
    name: str = typer.Option(..., "--name"),
    root: Optional[str] = ROOT_OPTION,
) -> None:
    """Delete records by id; they are never returned by a search again."""
    from rsrag.index.library import Library

    with user_errors():
        deleted = Library.open(root, name).delete(ids)
    missing = [i for i in ids if i not in set(deleted)]
    typer.echo(f"deleted {len(deleted)} record(s) from {name}")
    if missing:
        typer.secho(f"not in the index: {', '.join(missing)}", fg=typer.colors.YELLOW, err=True)


@app.command("info")
def info_cmd(name: str = typer.Option(..., "--name"), root: Optional[str] = ROOT_OPTION, as_json: bool = _JSON) -> None:
    """Encoder, index type, counts, columns and last build of an index."""
    from rsrag.index.library import Library

    with user_errors():
        info = Library.open(root, name).info()
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    idx, counts, last = info["index"], info["counts"], info.get("last_build") or {}
    params = ", ".join(f"{k}={v}" for k, v in idx["params"].items())
    lines = [
        f"index     {info['name']}  ({info['folder']}, {info['bytes'] / 1e6:.1f} MB)",
        f"encoder   {info['encoder']['name']}  id={info['encoder']['id']}  dim={info['encoder']['dim']}",
        f"faiss     {idx['type']} {params}  (requested: {idx['requested']})",
        f"records   {info['records']}  (faiss {counts['faiss']}, bm25 {counts['bm25']}, "
        f"tombstones {counts['tombstones']})",
        f"columns   {', '.join(info['columns'])}",
        f"updated   {info['updated']}",
    ]
    if last:
        lines.append(f"last build  {last.get('source')}: added {last.get('added')}, failed {last.get('failed')}")
        lines += [f"  skipped {f['id']} ({f['path']}): {f['error']}" for f in last.get("failures", [])[:10]]
    typer.echo("\n".join(lines))


@app.command("list")
def list_cmd(root: Optional[str] = ROOT_OPTION, as_json: bool = _JSON) -> None:
    """The indexes under ROOT."""
    from rich.console import Console
    from rich.table import Table

    from rsrag.index.library import Library
    from rsrag.index.storage import location

    items = Library.list(root)
    if as_json:
        typer.echo(json.dumps({"root": str(location(root)), "indexes": items}, indent=2))
        return
    if not items:
        typer.echo(f"no indexes under {location(root)}")
        return
    table = Table("name", "records", "faiss", "encoder", "dim", "updated")
    for m in items:
        table.add_row(m.get("name", "?"), str(m.get("counts", {}).get("records", "?")),
                      str(m.get("index", {}).get("type")), m.get("encoder", {}).get("id", "?"),
                      str(m.get("encoder", {}).get("dim", "?")), m.get("updated", "?"))
    Console().print(table)
