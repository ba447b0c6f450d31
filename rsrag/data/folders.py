"""Records from image folders on disk: a plain folder, or one sub-folder per class."""

from __future__ import annotations

from pathlib import Path

from rsrag.data.records import ImageRecord, check_unique_ids
from rsrag.imageio import SUPPORTED_SUFFIXES


def load_image_folder(folder: str | Path, recursive: bool = True) -> list[ImageRecord]:
    """Every supported image under `folder`, sorted; id = relative path without suffix, label None.

    Hidden files and folders (".name") are skipped; suffixes match case-insensitively.
    """
    root = _existing_folder(folder)
    records = [ImageRecord(id=_relative_id(p, root), path=p) for p in _image_files(root, recursive)]
    check_unique_ids(records, root)
    return records


def load_class_folder(folder: str | Path) -> list[ImageRecord]:
    """One sub-folder per class (ImageFolder layout): label = sub-folder name, id = relative path
    without suffix ("forest/img01"). Images directly in `folder` are ignored; sub-folders of a
    class folder belong to that class."""
    root = _existing_folder(folder)
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise ValueError(f"{root} has no class sub-folders; use load_image_folder for a flat folder")
    records = [
        ImageRecord(id=_relative_id(p, root), path=p, label=class_dir.name)
        for class_dir in class_dirs
        for p in _image_files(class_dir, recursive=True)
    ]
    check_unique_ids(records, root)
    return records


def _existing_folder(folder: str | Path) -> Path:
    root = Path(folder).expanduser().resolve()
    if not root.exists():
        raise FileNotFoundError(f"image folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder: {root}")
    return root


def _image_files(folder: Path, recursive: bool) -> list[Path]:
    """Supported, non-hidden image files under `folder`, sorted by relative path."""
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    files = [
        p
        for p in candidates
        if p.suffix.lower() in SUPPORTED_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.is_file()
    ]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def _relative_id(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()
