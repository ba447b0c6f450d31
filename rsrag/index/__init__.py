"""The library index: LanceDB records + FAISS vectors + BM25 keywords, kept in step.

Owns: where an index lives, a local folder or an `s3://` prefix (`storage`), index folders and
their crash-safe protocol (`folder`: manifest, writer lock, repair, rid reservation, commit counter,
writers without a lock on an object store; `fsutil`), the readers-writer lock that lets a snapshot
follow its writer in place (`rwlock`), the record store and its column types (`store`), FAISS
(`ann`), BM25 (`bm25`), filters (`filters`), hits and in-memory rows (`rows`), embedding many
records (`pipeline`), the `Library` facade (`library`), an index split into shard Libraries and
searched in parallel (`sharded`), building from a SOURCE (`build`) and the `rsrag index` commands (`cli`).

May import: `rsrag.config`, `rsrag.fileio`, `rsrag.fusion`, `rsrag.registry` (through encoders),
`rsrag.encoders`, `rsrag.imageio` and `rsrag.data` (build sources), never `rag`, `knowledge`,
`service` or other packages above it. Other packages use the public names below and `Library`'s
public methods (`rows`, `count`, `get`, `search_*`, `add`/`upsert`/`delete`, ...), never `store`
or private members.
"""

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
from rsrag.index.folder import validate_index_name
from rsrag.index.library import AddReport, Library
from rsrag.index.rows import Hit
from rsrag.index.sharded import ShardedLibrary, open_index
from rsrag.index.store import KNOWN_COLUMNS

__all__ = [
    "Library", "ShardedLibrary", "open_index", "Hit", "AddReport", "IndexSpec", "FLAT_MAX", "build_index", "resolve_source",
    "validate_index_name", "KNOWN_COLUMNS",
    "LibraryError", "IndexNotFoundError", "IndexExistsError", "IndexBusyError", "EncoderMismatchError",
    "FilterError", "SourceError", "RecordError", "IndexNameError",
]
