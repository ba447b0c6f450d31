"""Building an index from a SOURCE: an image folder, a captions JSONL/CSV file, a named dataset, or
scenes (GeoTIFF / COG / JP2 files, folders of them, STAC items) cut into chips (rsrag.geo)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from rsrag.encoders.base import Encoder
from rsrag.index.ann import IndexSpec
from rsrag.index.errors import SourceError
from rsrag.index.folder import validate_index_name
from rsrag.index.library import AddReport, Library

if TYPE_CHECKING:
    from rsrag.geo import SceneIndexReport, Tiling

DATASETS = ("rsicd", "ucm")
CAPTION_SUFFIXES = (".jsonl", ".json", ".csv")


def _has_image_subfolders(folder: Path) -> bool:
    from rsrag.imageio import SUPPORTED_SUFFIXES

    return any(child.is_dir() and any(f.suffix.lower() in SUPPORTED_SUFFIXES for f in child.iterdir())
               for child in folder.iterdir())


def resolve_source(source: str | Path, split: str | None = None, limit: int | None = None) -> list:
    """The records of a SOURCE, as `rsrag.data.ImageRecord`s.

    - a folder: its images (`load_image_folder`), or with one subfolder per class, those images
      labelled by folder (`load_class_folder`);
    - a `.jsonl` / `.csv` captions file (`load_captions_file`: filename/path, captions, label, and
      any other column as metadata, e.g. lon/lat);
    - `rsicd` or `ucm` (optionally `rsicd:test`): the dataset from the data root, with its captions,
      labels and splits.

    `split` keeps one split; `limit` keeps that many records evenly spread over the source (so a
    small subset still covers every class).
    """
    from rsrag import data

    text = str(source)
    path = Path(text).expanduser()
    name, _, name_split = text.partition(":")
    if path.is_dir():
        records = data.load_class_folder(path) if _has_image_subfolders(path) else data.load_image_folder(path)
    elif path.is_file() and path.suffix.lower() in CAPTION_SUFFIXES:
        records = data.load_captions_file(path)
    elif name.lower() in DATASETS and not path.exists():
        records = data.load_dataset(name.lower(), split=split or name_split or None)
    elif path.exists():
        raise SourceError(f"SOURCE {text!r} is a file but not a captions file ({', '.join(CAPTION_SUFFIXES)})")
    else:
        raise SourceError(f"SOURCE {text!r} is not a folder, a captions file or a dataset ({', '.join(DATASETS)})")
    records = list(records)
    if split:
        records = [r for r in records if r.split == split]
    if limit is not None and 0 <= limit < len(records):
        step = len(records) / max(limit, 1)
        records = [records[int(i * step)] for i in range(limit)]
    return records


def open_for_build(root: str | Path | None, name: str, encoder: Encoder | str | None, index_type: str,
                   create: bool) -> Library:
    """The index a build writes to: created when missing (and `create`), else opened with the given
    encoder, which must match it; an explicit new index type rebuilds FAISS."""
    if create and not Library.exists(root, name):
        return Library.create(root, name, encoder=encoder, index_type=index_type)
    if isinstance(encoder, str):
        from rsrag.encoders import create_encoder

        encoder = create_encoder(encoder)
    lib = Library.open(root, name, encoder=encoder)
    if index_type != "auto" and str(IndexSpec.parse(index_type)) != str(lib.spec):
        lib.rebuild(index_type)
    return lib


def build_index(source: str | Path | Sequence, name: str, root: str | Path | None = None, *,
                encoder: Encoder | str | None = None, index_type: str = "auto", split: str | None = None,
                limit: int | None = None, upsert: bool = False, create: bool = True, batch_size: int = 64,
                workers: int = 2, chunk_size: int = 512,
                progress: Callable[[int, int], None] | None = None) -> tuple[Library, AddReport]:
    """Create (or resume) index NAME and add SOURCE's records (a source string or a list of records).

    Running it again after an interruption adds only what is missing. With `create=False` the
    index must exist (`rsrag index add`). The encoder defaults to the index's own, else rs-lite.
    """
    validate_index_name(name)  # before reading a possibly large source
    records = list(source) if isinstance(source, (list, tuple)) else resolve_source(source, split, limit)
    lib = open_for_build(root, name, encoder, index_type, create)
    report = lib.add(records, upsert=upsert, batch_size=batch_size, workers=workers, chunk_size=chunk_size,
                     progress=progress)
    lib.note_build(str(source) if isinstance(source, (str, Path)) else f"{len(records)} records", report)
    return lib, report



def is_scene_source(source: str | Path, chip_size: int = 224) -> bool:
    """Whether SOURCE is scenes rather than images: a STAC item JSON, a raster file (.tif, .jp2, ...),
    or a folder whose first raster is georeferenced and larger than a chip on both sides (a folder of
    small image tiles stays an image folder)."""
    from rsrag.geo.scene import RASTER_SUFFIXES, SceneError, find_scenes, is_stac_item, open_scene

    path = Path(str(source)).expanduser()
    if path.is_file():
        return path.suffix.lower() in RASTER_SUFFIXES or (path.suffix.lower() == ".json" and is_stac_item(path))
    if not path.is_dir():
        return False
    try:
        first = next(iter(find_scenes(path)), None)
        scene = open_scene(first) if first is not None else None
    except SceneError:
        return False
    return scene is not None and scene.crs is not None and min(scene.width, scene.height) > chip_size


def build_scene_index(sources: str | Path | Sequence[str | Path], name: str, root: str | Path | None = None, *,
                      encoder: Encoder | str | None = None, index_type: str = "auto", tiling: "Tiling | None" = None,
                      bands: str | None = None, sensor: str | None = None, datetime: Any = None,
                      create: bool = True, batch_size: int = 16, chunk_size: int = 2048,
                      progress: Callable[[int, int], None] | None = None) -> tuple[Library, "SceneIndexReport"]:
    """Create (or resume) index NAME from scenes: every chip of every scene, with its footprint and time
    (see rsrag.geo). Running it again adds only the chips that are missing."""
    from rsrag.geo import Tiling, index_scenes

    lib = open_for_build(root, name, encoder, index_type, create)  # Library.create/open check the name
    items = [sources] if isinstance(sources, (str, Path)) else list(sources)
    report = index_scenes(lib, items, tiling=tiling or Tiling(), bands=bands, sensor=sensor, datetime=datetime,
                          batch_size=batch_size, chunk_size=chunk_size, progress=progress)
    add = AddReport(added=report.added, skipped=report.skipped_existing, seconds=report.seconds,
                    failed=[(source, source, error) for source, error in report.failed])
    lib.note_build(", ".join(map(str, items)), add)
    return lib, report
