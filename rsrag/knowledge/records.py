"""Knowledge records: everything known about one place (a landmark), as typed text chunks.

A record is stored in a library's knowledge table as one row per chunk (see `store.py`), so a chunk
is the unit of retrieval and citation. Chunk ids are stable: `<record id>#<chunk type>[-<n>]`.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# The chunk types a record may hold, with the phrase used when a chunk is rendered as text
# ("Piazza Navona - construction period: 1st century AD"). `description` is free text.
CHUNK_TYPES: dict[str, str] = {
    "name": "name",
    "location": "location",
    "area": "area",
    "address": "address",
    "construction_period": "construction period",
    "history": "historical background",
    "significance": "historical significance",
    "culture": "cultural significance",
    "architecture": "architectural characteristics",
    "function": "primary function",
    "original_function": "original primary function",
    "current_function": "current primary function",
    "events": "major events",
    "visitors": "notable visitors",
    "rs_measurements": "remote-sensing measurements",
    "environment": "environment",
    "description": "description",
}
IMAGE_CHUNK = "image"  # rows of the knowledge table that hold a knowledge image, not text


class KnowledgeFormatError(ValueError):
    """A knowledge record that cannot be used; the message names its source and line."""


@dataclass
class Chunk:
    """One typed fact about a record. `id` is filled in by the record (see `KnowledgeRecord.chunk_ids`)."""

    type: str
    text: str
    source: str | None = None
    id: str = ""


@dataclass
class KnowledgeRecord:
    """What is known about one place: typed chunks, optional images, coordinates and provenance."""

    id: str
    name: str
    category: str | None = None
    chunks: list[Chunk] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    lon: float | None = None
    lat: float | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        self.assign_chunk_ids()

    def assign_chunk_ids(self) -> None:
        """Give every chunk a stable id: `<record>#<type>`, then `-2`, `-3` for repeats of a type."""
        seen: dict[str, int] = {}
        for chunk in self.chunks:
            seen[chunk.type] = seen.get(chunk.type, 0) + 1
            n = seen[chunk.type]
            chunk.id = f"{self.id}#{chunk.type}" + (f"-{n}" if n > 1 else "")

    def chunk_text(self, chunk: Chunk) -> str:
        """The text a chunk is embedded, keyword-indexed and re-ranked as: it names the place and the
        kind of fact, so a chunk stands on its own ("Salts Mill (Historic Site) - location: Saltaire, England")."""
        head = f"{self.name} ({self.category})" if self.category else self.name
        return f"{head} - {CHUNK_TYPES.get(chunk.type, chunk.type)}: {chunk.text}"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["chunks"] = [
            {"type": c.type, "text": c.text, **({"source": c.source} if c.source else {})} for c in self.chunks
        ]
        return {k: v for k, v in out.items() if v not in (None, [], "")}

    @classmethod
    def from_dict(cls, data: Any, where: str = "record") -> "KnowledgeRecord":
        """Validate and build a record from parsed JSON; errors say `where` (file:line) and what is wrong.

        `chunks` is a list of {"type", "text"} objects or a {type: text | [texts]} mapping.
        """

        def bad(msg: str) -> KnowledgeFormatError:
            return KnowledgeFormatError(f"{where}: {msg}")

        if not isinstance(data, dict):
            raise bad(f"expected a JSON object, got {type(data).__name__}")
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise bad("missing or empty 'name'")
        rid = data.get("id", slug(name))
        if not isinstance(rid, (str, int)) or not str(rid).strip():
            raise bad("bad 'id'")
        raw = data.get("chunks", [])
        if isinstance(raw, dict):
            raw = [{"type": t, "text": x} for t, v in raw.items() for x in (v if isinstance(v, list) else [v])]
        if not isinstance(raw, list):
            raise bad("'chunks' must be a list of {type, text} or a {type: text} mapping")
        chunks = []
        for i, item in enumerate(raw):
            if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not item["text"].strip():
                raise bad(f"chunk {i} needs a non-empty string 'text'")
            ctype = str(item.get("type", "description"))
            if ctype not in CHUNK_TYPES:
                raise bad(f"chunk {i} has unknown type {ctype!r}; known: {', '.join(CHUNK_TYPES)}")
            chunks.append(Chunk(ctype, item["text"].strip(), item.get("source")))
        images = data.get("images", [])
        if isinstance(images, str):
            images = [images]
        for key in ("lon", "lat"):
            value = data.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise bad(f"'{key}' must be a number")
        category = data.get("category")
        record = cls(
            str(rid),
            name.strip(),
            None if category is None else str(category),
            chunks,
            images,
            None if data.get("lon") is None else float(data["lon"]),
            None if data.get("lat") is None else float(data["lat"]),
            data.get("source"),
        )
        record.validate(where)
        return record

    def validate(self, where: str | None = None) -> None:
        """Check every field's type and value, so that a record that passes can be stored as is (the
        knowledge table's columns are typed by the first values they get: a wrong type would either
        be refused half-way through a write or fix the column's type for every later record).
        Raises `KnowledgeFormatError` naming `where` (file:line) or the record."""
        where = where or f"record {self.id!r}"

        def bad(msg: str) -> KnowledgeFormatError:
            return KnowledgeFormatError(f"{where}: {msg}")

        def optional_text(value: Any, what: str) -> None:
            if value is not None and not isinstance(value, str):
                raise bad(f"{what} must be a string or null, got {type(value).__name__} {value!r}")

        if not isinstance(self.id, str) or not self.id.strip():
            raise bad("bad 'id'")
        if not isinstance(self.name, str) or not self.name.strip():
            raise bad("missing or empty 'name'")
        optional_text(self.category, "'category'")
        optional_text(self.source, "'source'")
        if not isinstance(self.chunks, list):
            raise bad("'chunks' must be a list")
        for i, chunk in enumerate(self.chunks):
            if not isinstance(chunk, Chunk):
                raise bad(f"chunk {i} is a {type(chunk).__name__}, not a Chunk")
            if not isinstance(chunk.text, str) or not chunk.text.strip():
                raise bad(f"chunk {i} needs a non-empty string 'text'")
            if chunk.type not in CHUNK_TYPES:
                raise bad(f"chunk {i} has unknown type {chunk.type!r}; known: {', '.join(CHUNK_TYPES)}")
            optional_text(chunk.source, f"chunk {i} 'source'")
        if not isinstance(self.images, list) or not all(isinstance(p, str) and p.strip() for p in self.images):
            raise bad("'images' must be a list of paths")
        for key, low, high in (("lon", -180, 180), ("lat", -90, 90)):
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad(f"'{key}' must be a number")
            if not low <= value <= high:
                raise bad("lon/lat out of range")
        if not self.chunks and not self.images:
            raise bad("a record needs at least one chunk or image")

    def check_images(self, where: str | None = None) -> None:
        """Every image path names a readable file (checked before anything is written)."""
        for path in self.images:
            if not Path(path).is_file() or not os.access(path, os.R_OK):
                raise KnowledgeFormatError(f"{where or f'record {self.id!r}'}: image {path!r} is not a readable file")

    def resolve_images(self, base: Path) -> None:
        """Make relative image paths relative to `base` (the folder of the file they came from)."""
        self.images = [str(p if Path(p).is_absolute() else Path(base) / p) for p in self.images]


def slug(name: str) -> str:
    """A record id from a name: lower case, words joined by '-' (non-ASCII letters kept)."""
    return re.sub(r"[^\w]+", "-", name.lower()).strip("-") or "record"
