"""Records from a captions file (JSONL or CSV): the format of the benchmark datasets and of user data.

Each record needs `filename` or `path` (relative paths resolve against `image_root`, default the
file's folder; `path` wins when both are given). Optional: `id` (default: the file name as written,
without suffix), `captions` (list; in CSV a JSON list or a single caption), else `caption`, else
`text` (one string), `label`, `split`. Every other field is kept in `metadata` (e.g. lon / lat);
CSV cells that read as numbers become int / float, empty CSV cells are dropped.
"""

from __future__ import annotations

import csv
import json
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Iterator

from rsrag.data.records import ImageRecord, check_unique_ids

_CAPTION_KEYS = ("captions", "caption", "text")


def load_captions_file(
    path: str | Path, image_root: str | Path | None = None, *, id_prefix: str | None = None
) -> list[ImageRecord]:
    """Records of a .jsonl / .ndjson / .json-lines or .csv captions file; ids get `id_prefix/` if given.

    Raises FileNotFoundError if the file is missing and ValueError naming the file and line for a
    malformed record. Image files themselves are not checked here (the index build reports them).
    """
    return [record.copy() for record in cached_records(path, image_root, id_prefix)]


def cached_records(
    path: str | Path, image_root: str | Path | None = None, id_prefix: str | None = None
) -> tuple[ImageRecord, ...]:
    """The parsed records, cached in-process until the file changes. Callers must copy before editing."""
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise FileNotFoundError(f"captions file not found: {file}")
    root = Path(image_root).expanduser().resolve() if image_root is not None else file.parent
    stat = file.stat()
    return _parse(str(file), stat.st_mtime_ns, stat.st_size, str(root), id_prefix)


@lru_cache(maxsize=16)
def _parse(
    file: str, mtime_ns: int, size: int, image_root: str, id_prefix: str | None
) -> tuple[ImageRecord, ...]:
    """mtime and size are part of the cache key only, so an edited file is parsed again."""
    path = Path(file)
    rows = _csv_rows(path) if path.suffix.lower() == ".csv" else _jsonl_rows(path)
    records: list[ImageRecord] = []
    lines: list[str] = []
    for line_no, row in rows:
        records.append(_to_record(row, f"{path}, line {line_no}", Path(image_root), id_prefix))
        lines.append(f"line {line_no}")
    check_unique_ids(records, path, lines)
    return tuple(records)


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    if path.suffix.lower() not in (".jsonl", ".ndjson", ".json"):
        raise ValueError(f"{path}: unsupported captions file type (use .jsonl or .csv)")
    with open(path, encoding="utf-8-sig") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {line_no}: invalid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise ValueError(f"{path}, line {line_no}: expected a JSON object, got {type(row).__name__}")
            yield line_no, row


def _csv_rows(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        if header and "filename" not in header and "path" not in header:
            raise ValueError(f"{path}, line 1: the header needs a 'filename' or 'path' column, got {header}")
        for raw in reader:
            where = f"{path}, line {reader.line_num}"
            if None in raw or None in raw.values():
                raise ValueError(f"{where}: expected {len(header)} fields as in the header")
            row = {key: _csv_cell(key, value.strip(), where) for key, value in raw.items() if value.strip()}
            yield reader.line_num, row


def _csv_cell(key: str, text: str, where: str):
    """CSV text -> the value a JSONL file would hold: caption lists parsed, numeric metadata as numbers."""
    if key == "captions":
        if not text.startswith("["):
            return [text]
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: 'captions' is not a JSON list ({exc.msg})") from exc
    if key in ("id", "filename", "path", "label", "split", "caption", "text"):
        return text
    try:
        number = int(text)
        return number if str(number) == text else text  # keep "007" as written
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _to_record(row: dict, where: str, image_root: Path, id_prefix: str | None) -> ImageRecord:
    fields = dict(row)
    path_value, filename_value = fields.pop("path", None), fields.pop("filename", None)
    name = path_value if path_value not in (None, "") else filename_value
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: needs a 'filename' or 'path' string")
    image_path = Path(name).expanduser()
    if not image_path.is_absolute():
        image_path = image_root / image_path
    record_id = fields.pop("id", None)
    if record_id is None and Path(name).is_absolute():
        record_id = image_path.stem
    elif record_id is None:
        record_id = str(PurePosixPath(name.replace("\\", "/")).with_suffix(""))
    if id_prefix:
        record_id = f"{id_prefix}/{record_id}"
    return ImageRecord(
        id=str(record_id),
        path=image_path,
        split=_optional_str(fields.pop("split", None), "split", where),
        label=_optional_str(fields.pop("label", None), "label", where),
        captions=_captions(fields, where),
        metadata=fields,
    )


def _captions(fields: dict, where: str) -> list[str]:
    """Pop the first caption field present; the others stay in metadata."""
    for key in _CAPTION_KEYS:
        if key in fields:
            value = fields.pop(key)
            captions = [value] if isinstance(value, str) else ([] if value is None else value)
            if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
                raise ValueError(f"{where}: '{key}' must be a string or a list of strings")
            return captions
    return []


def _optional_str(value: object, key: str, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, (int, float)):
        return str(value)
    raise ValueError(f"{where}: '{key}' must be a string")
