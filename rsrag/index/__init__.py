"""The library index: LanceDB records + FAISS vectors + BM25 keywords, kept in step (see library.py)."""

from rsrag.index.ann import FLAT_MAX, IndexSpec
from rsrag.index.build import build_index, resolve_source
from rsrag.index.errors import (
                                EncoderMismatchError,
                                FilterError,
                                IndexBusyError,
                                IndexExistsError,
                                IndexNameError,
                                IndexNotFoundError,
                                LibraryError,
                                RecordError,
                                SourceError,
)
from rsrag.index.library import AddReport, Hit, Library

__all__ = [
    "Library", "Hit", "AddReport", "IndexSpec", "FLAT_MAX", "build_index", "resolve_source",
    "LibraryError", "IndexNotFoundError", "IndexExistsError", "IndexBusyError", "EncoderMismatchError",
    "FilterError", "SourceError", "RecordError", "IndexNameError",
]
