"""The knowledge table of a library: knowledge records stored with the library's own machinery.

A library `ROOT/NAME/` gets a sub-index `ROOT/NAME/knowledge/`, itself a `rsrag.index.Library`
(LanceDB rows + FAISS + BM25, same encoder, same crash-safety), with one row per chunk:

- `id` = chunk id, `label` = category, `captions` = [the rendered chunk text] (what BM25 indexes),
  `vector` = the text tower's embedding of that text (added with `add_embedded`);
- metadata columns `record_id`, `name`, `category`, `chunk_type`, `text` (the bare fact), `source`,
  and `lon`/`lat` when the record has them;
- knowledge images are rows too (`chunk_type` = "image", `path` = the image, vector from the image tower).

Ingestion validates a whole input before writing anything, so a malformed file leaves the table as it
was. Re-ingesting a record replaces it: chunks it no longer has are deleted.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from rsrag.knowledge.records import IMAGE_CHUNK, KnowledgeFormatError, KnowledgeRecord

log = logging.getLogger(__name__)

FOLDER = "knowledge"
CHUNKS_ONLY = [f"chunk_type!={IMAGE_CHUNK}"]  # index filter syntax: col<op>value, no quotes
IMAGES_ONLY = {"chunk_type": IMAGE_CHUNK}


def read_jsonl(path: str | Path) -> list[KnowledgeRecord]:
    """Parse and validate a knowledge JSONL file (one record object per line; see
    `KnowledgeRecord.from_dict`). Raises `KnowledgeFormatError` naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise KnowledgeFormatError(f"{path}: no such file")
    records: list[KnowledgeRecord] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise KnowledgeFormatError(f"{where}: not valid JSON ({exc.msg})") from None
            record = KnowledgeRecord.from_dict(data, where)
            if record.id in seen:
                raise KnowledgeFormatError(
                    f"{where}: duplicate record id {record.id!r} (first on line {seen[record.id]})"
                )
            seen[record.id] = line_no
            record.resolve_images(path.parent)
            records.append(record)
    return records


def write_jsonl(records: Iterable[KnowledgeRecord], path: str | Path) -> Path:
    path = Path(path)
    with open(path, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
    return path


@dataclass
class _Row:
    """A chunk row as the knowledge table stores it (quacks like an ImageRecord for `Library`)."""

    id: str
    path: str | None
    label: str | None
    captions: list[str]
    metadata: dict
    split: str | None = "knowledge"


@dataclass
class IngestReport:
    records: int = 0
    chunks: int = 0
    images: int = 0
    removed_chunks: int = 0
    failed_images: list[tuple[str, str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "records": self.records,
            "chunks": self.chunks,
            "images": self.images,
            "removed_chunks": self.removed_chunks,
            "failed_images": len(self.failed_images),
        }


class KnowledgeBase:
    """The knowledge sub-index of a library (see module doc). Get one with `attach` or `open`."""

    def __init__(self, index) -> None:
        self.index = index  # an rsrag.index.Library over ROOT/NAME/knowledge
        self._rows_version: int | None = None
        self._by_record: dict[str, list[str]] = {}

    # ---- opening -------------------------------------------------------------------------------
    @staticmethod
    def folder_of(library) -> Path:
        return Path(library.folder) / FOLDER

    @classmethod
    def open(cls, library) -> "KnowledgeBase | None":
        """The library's knowledge base, or None when it has none."""
        from rsrag.index import Library

        folder = cls.folder_of(library)
        if not (folder / "manifest.json").is_file():
            return None
        return cls(Library(folder, encoder=library._encoder, lock_timeout=library.lock_timeout))

    @classmethod
    def attach(cls, library) -> "KnowledgeBase":
        """Open the library's knowledge base, creating an empty one (same encoder) if needed."""
        from rsrag.index import Library

        existing = cls.open(library)
        if existing is not None:
            return existing
        index = Library.create(
            library.folder,
            FOLDER,
            encoder=library.encoder,
            encoder_name=library.manifest["encoder"]["name"],
            exist_ok=True,
            lock_timeout=library.lock_timeout,
        )
        return cls(index)

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"KnowledgeBase({self.index.folder}, rows={len(self.index)})"

    # ---- writing -------------------------------------------------------------------------------
    def add(self, records: Sequence[KnowledgeRecord], *, batch_size: int = 256) -> IngestReport:
        """Embed and store records (replacing records with the same id). Chunks go through the text
        tower; images through the image tower (an unreadable image is reported, not fatal)."""
        records = list(records)
        ids = [r.id for r in records]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise KnowledgeFormatError(f"duplicate record id {dup!r} in one ingestion")
        report = IngestReport(records=len(records))
        rows = [self._chunk_row(rec, c) for rec in records for c in rec.chunks]
        if rows:
            vectors = self.index.encoder.encode_texts([r.captions[0] for r in rows], batch_size=batch_size)
            self.index.add_embedded(rows, vectors, upsert=True)
            report.chunks = len(rows)
        images = [self._image_row(rec, i, p) for rec in records for i, p in enumerate(rec.images, start=1)]
        if images:
            added = self.index.add(images, upsert=True)
            report.images = added.embedded
            report.failed_images = added.failed
        keep = {r.id for r in rows} | {r.id for r in images}
        stale = [cid for cid, rid in self._chunk_ids_of(set(ids)) if cid not in keep]
        if stale:
            report.removed_chunks = len(self.index.delete(stale))
        return report

    def add_jsonl(self, path: str | Path) -> IngestReport:
        """Validate the whole file first (nothing is written if any line is bad), then add it."""
        return self.add(read_jsonl(path))

    def delete(self, record_ids: Iterable[str]) -> list[str]:
        """Delete whole records; returns the chunk ids removed."""
        chunk_ids = [cid for cid, _ in self._chunk_ids_of({str(r) for r in record_ids})]
        return self.index.delete(chunk_ids) if chunk_ids else []

    @staticmethod
    def _meta(rec: KnowledgeRecord, chunk_type: str, text: str, source: str | None) -> dict:
        meta = {
            "record_id": rec.id,
            "name": rec.name,
            "category": rec.category,
            "chunk_type": chunk_type,
            "text": text,
            "source": source or rec.source,
        }
        if rec.lon is not None and rec.lat is not None:
            meta.update(lon=float(rec.lon), lat=float(rec.lat))
        return meta

    def _chunk_row(self, rec: KnowledgeRecord, chunk) -> _Row:
        return _Row(
            chunk.id, None, rec.category, [rec.chunk_text(chunk)], self._meta(rec, chunk.type, chunk.text, chunk.source)
        )

    def _image_row(self, rec: KnowledgeRecord, n: int, path: str) -> _Row:
        return _Row(
            f"{rec.id}#{IMAGE_CHUNK}-{n}",
            path,
            rec.category,
            [rec.name],
            self._meta(rec, IMAGE_CHUNK, rec.name, str(path)),
        )

    def _chunk_ids_of(self, record_ids: set[str]) -> list[tuple[str, str]]:
        if not len(self.index) or "record_id" not in self.index.columns():
            return []
        table = self.index.store.scan(["id", "record_id"])
        return [
            (cid, rid)
            for cid, rid in zip(table.column("id").to_pylist(), table.column("record_id").to_pylist())
            if rid in record_ids
        ]

    # ---- reading -------------------------------------------------------------------------------
    @property
    def has_images(self) -> bool:
        """Whether any knowledge image is stored (checked once per table version)."""
        if not len(self.index):
            return False
        version = self.index.store.version
        if getattr(self, "_images_version", None) != version:
            self._images = bool(len(self.index.store.rids(f"chunk_type = '{IMAGE_CHUNK}'")))
            self._images_version = version
        return self._images

    def search_dense(self, vector: np.ndarray, k: int) -> list:
        """Chunks nearest to a query vector (a question's text embedding or an image's embedding)."""
        if not len(self.index):
            return []
        return self.index.search_vector(vector, k, filters=CHUNKS_ONLY if self.has_images else None)

    def search_bm25(self, query: str, k: int) -> list:
        if not len(self.index):
            return []
        return self.index.search_text(query, k, mode="bm25", filters=CHUNKS_ONLY if self.has_images else None)

    def search_images(self, vector: np.ndarray, k: int) -> list:
        """Knowledge images nearest to a query image's embedding."""
        if not self.has_images:
            return []
        return self.index.search_vector(vector, k, filters=IMAGES_ONLY)

    def chunks_of(self, record_ids: Sequence[str]) -> list:
        """Every text chunk of the given records, as hits (score 0)."""
        if not len(self.index):
            return []
        if self._rows_version != self.index.store.version:
            table = self.index.store.scan(["id", "record_id", "chunk_type"])
            by_record: dict[str, list[str]] = {}
            for cid, rid, ctype in zip(*(table.column(c).to_pylist() for c in ("id", "record_id", "chunk_type"))):
                if ctype != IMAGE_CHUNK:
                    by_record.setdefault(rid, []).append(cid)
            self._by_record, self._rows_version = by_record, self.index.store.version
        return self.index.get([cid for rid in record_ids for cid in self._by_record.get(rid, [])])

    def records(self) -> list[str]:
        """Distinct record ids."""
        if not len(self.index):
            return []
        return sorted(set(self.index.store.scan(["record_id"]).column("record_id").to_pylist()))
