"""The knowledge table of a library: knowledge records stored with the library's own machinery.

A library `ROOT/NAME/` gets a sub-index `ROOT/NAME/knowledge/`, itself a `rsrag.index.Library`
(LanceDB rows + FAISS + BM25, same encoder, same crash-safety), with one row per chunk:

- `id` = chunk id, `label` = category, `captions` = [the rendered chunk text] (what BM25 indexes),
  `vector` = the text tower's embedding of that text;
- metadata columns `record_id`, `name`, `category`, `chunk_type`, `text` (the bare fact), `source`,
  and `lon`/`lat` when the record has them;
- knowledge images are rows too (`chunk_type` = "image", `path` = the image, vector from the image tower).

Ingestion is all or nothing. Every record is validated completely first (field types included, image
files readable), then everything is embedded, and only then written: one upsert (a single LanceDB
commit, so it lands whole or not at all), then the deletion of the chunks re-ingested records no
longer have. Should that deletion fail, the upsert is undone (the rows it replaced are written back,
the rows it added deleted). So a refused input leaves the table's rows as they were. Re-ingesting a
record replaces it. An image that exists but cannot be decoded is reported (`failed_images`) and
its row skipped, as in a library build. Only the `Library` public API is used.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from rsrag.knowledge.records import IMAGE_CHUNK, Chunk, KnowledgeFormatError, KnowledgeRecord

if TYPE_CHECKING:
    from rsrag.geo.filters import Place
    from rsrag.index import Hit, Library

log = logging.getLogger(__name__)

FOLDER = "knowledge"
CHUNKS_ONLY = [f"chunk_type!={IMAGE_CHUNK}"]  # index filter syntax: col<op>value, no quotes
IMAGES_ONLY = {"chunk_type": IMAGE_CHUNK}
META_KEYS = ("record_id", "name", "category", "chunk_type", "text", "source", "lon", "lat")
ROW_KEYS = ("id", "path", "label", "captions")


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

    def __init__(self, index: Library) -> None:
        self.index = index  # an rsrag.index.Library over ROOT/NAME/knowledge
        self._chunks_by_record: tuple[int, dict[str, list[str]]] | None = None  # (table version, record -> chunk ids)
        self._has_images: tuple[int, bool] | None = None  # (table version, any image row)

    # ---- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, library: Library) -> "KnowledgeBase | None":
        """The library's knowledge base (on the library's own encoder), or None when it has none."""
        from rsrag.index import Library

        if not Library.exists(library.location, FOLDER):
            return None
        folder = library.location.child(FOLDER)
        return cls(Library(folder, encoder=library.encoder, lock_timeout=library.lock_timeout))

    @classmethod
    def attach(cls, library: Library) -> "KnowledgeBase":
        """Open the library's knowledge base, creating an empty one (same encoder) if needed."""
        from rsrag.index import Library

        existing = cls.open(library)
        if existing is not None:
            return existing
        index = Library.create(
            library.location,
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
        """Validate, embed and store records, all or nothing (module doc); a record whose id is
        stored already replaces it. Raises `KnowledgeFormatError` (nothing written) for a bad record."""
        records = list(records)
        ids = [r.id for r in records]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise KnowledgeFormatError(f"duplicate record id {dup!r} in one ingestion")
        for rec in records:
            if not isinstance(rec, KnowledgeRecord):
                raise KnowledgeFormatError(f"expected KnowledgeRecord objects, got {type(rec).__name__}")
            rec.validate()
            rec.check_images()

        report = IngestReport(records=len(records))
        rows = [self._chunk_row(rec, c) for rec in records for c in rec.chunks]
        vectors = [self.index.encoder.encode_texts([r.captions[0] for r in rows], batch_size=batch_size)] if rows else []
        images = [self._image_row(rec, i, p) for rec in records for i, p in enumerate(rec.images, start=1)]
        keep = {r.id for r in rows} | {r.id for r in images}  # an image that fails to decode keeps its old row
        if images:
            encoded = self.index.encoder.encode_images_lenient([r.path for r in images])
            report.failed_images = [(images[i].id, str(images[i].path), err) for i, err in encoded.failures]
            images = [images[i] for i in encoded.ok]
            vectors.append(encoded.vectors)
        report.chunks, report.images = len(rows), len(images)
        new = rows + images
        stored = self._chunk_ids_of(set(ids))
        stale = [cid for cid, _ in stored if cid not in keep]
        if not new:
            if stale:
                report.removed_chunks = len(self.index.delete(stale))
            return report
        # the rows the upsert replaces, to put back should the deletion after it fail
        before = self._snapshot({cid for cid, _ in stored} & keep) if stale else None
        self.index.add_embedded(new, np.concatenate(vectors), upsert=True, chunk_size=len(new))  # one commit
        if stale:
            try:
                report.removed_chunks = len(self.index.delete(stale))
            except BaseException:
                self._undo_upsert([r.id for r in new], before)
                raise
        return report

    def add_jsonl(self, path: str | Path) -> IngestReport:
        """Validate the whole file first (nothing is written if any line is bad), then add it."""
        return self.add(read_jsonl(path))

    def delete(self, record_ids: Iterable[str]) -> list[str]:
        """Delete whole records; returns the chunk ids removed."""
        chunk_ids = [cid for cid, _ in self._chunk_ids_of({str(r) for r in record_ids})]
        return self.index.delete(chunk_ids) if chunk_ids else []

    def _snapshot(self, chunk_ids: set[str]) -> tuple[list[_Row], np.ndarray]:
        """The stored rows (with their vectors) among `chunk_ids`."""
        if not chunk_ids:
            return [], np.zeros((0, self.index.dim), np.float32)
        present = set(self.index.columns())
        columns = [c for c in (*ROW_KEYS, *META_KEYS) if c in present]
        table = self.index.rows([*columns, "vector"], filters={"id": sorted(chunk_ids)})
        data = {c: table.column(c).to_pylist() for c in columns}
        rows = [
            _Row(
                data["id"][i],
                data["path"][i],
                data["label"][i],
                list(data["captions"][i] or []),
                {k: data[k][i] for k in META_KEYS if k in data and data[k][i] is not None},
            )
            for i in range(table.num_rows)
        ]
        vectors = np.asarray(table.column("vector").to_pylist(), np.float32).reshape(len(rows), self.index.dim)
        return rows, vectors

    def _undo_upsert(self, written: list[str], before: tuple[list[_Row], np.ndarray]) -> None:
        """Put back what an upsert replaced and delete what it added (module doc)."""
        rows, vectors = before
        replaced = {r.id for r in rows}
        try:
            added = [cid for cid in written if cid not in replaced]
            if added:
                self.index.delete(added)
            if rows:
                self.index.add_embedded(rows, vectors, upsert=True, chunk_size=len(rows))
        except Exception:  # the original error is the one to report; this one is logged
            log.exception("knowledge table %s: could not undo a failed ingestion", self.index.folder)

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

    def _chunk_row(self, rec: KnowledgeRecord, chunk: Chunk) -> _Row:
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
        if not record_ids or not len(self.index) or "record_id" not in self.index.columns():
            return []
        table = self.index.rows(["id", "record_id"], filters={"record_id": sorted(record_ids)})
        return list(zip(table.column("id").to_pylist(), table.column("record_id").to_pylist()))

    # ---- reading -------------------------------------------------------------------------------
    @property
    def has_images(self) -> bool:
        """Whether any knowledge image is stored (checked once per table version)."""
        if not len(self.index):
            return False
        version = self.index.version
        cached = self._has_images
        if cached is None or cached[0] != version:
            cached = self._has_images = (version, self.index.count(filters=IMAGES_ONLY) > 0)
        return cached[1]

    def search_dense(self, vector: np.ndarray, k: int, place: Place | None = None) -> list[Hit]:
        """Chunks nearest to a query vector (a question's text embedding or an image's embedding),
        of records inside `place` (their lon/lat) when one is given."""
        if not len(self.index):
            return []
        return self.index.search_vector(vector, k, filters=CHUNKS_ONLY if self.has_images else None, place=place)

    def search_bm25(self, query: str, k: int, place: Place | None = None) -> list[Hit]:
        if not len(self.index):
            return []
        return self.index.search_text(query, k, mode="bm25", filters=CHUNKS_ONLY if self.has_images else None,
                                      place=place)

    def search_images(self, vector: np.ndarray, k: int, place: Place | None = None) -> list[Hit]:
        """Knowledge images nearest to a query image's embedding."""
        if not self.has_images:
            return []
        return self.index.search_vector(vector, k, filters=IMAGES_ONLY, place=place)

    def chunks_of(self, record_ids: Sequence[str]) -> list[Hit]:
        """Every text chunk of the given records, as hits (score 0)."""
        if not len(self.index):
            return []
        version = self.index.version
        cached = self._chunks_by_record
        if cached is None or cached[0] != version:
            table = self.index.rows(["id", "record_id", "chunk_type"])
            by_record: dict[str, list[str]] = {}
            for cid, rid, ctype in zip(*(table.column(c).to_pylist() for c in ("id", "record_id", "chunk_type"))):
                if ctype != IMAGE_CHUNK:
                    by_record.setdefault(rid, []).append(cid)
            cached = self._chunks_by_record = (version, by_record)  # one assignment: threads share it
        return self.index.get([cid for rid in record_ids for cid in cached[1].get(rid, [])])

    def records(self) -> list[str]:
        """Distinct record ids."""
        if not len(self.index):
            return []
        return sorted(set(self.index.rows(["record_id"]).column("record_id").to_pylist()))
