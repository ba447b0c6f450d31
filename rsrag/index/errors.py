"""Errors a library user can act on; each message says what went wrong and what to do."""

from __future__ import annotations


class LibraryError(RuntimeError):
    """Base class of every index/search error rsrag raises on purpose."""


class IndexNotFoundError(LibraryError):
    """No index of that name under the root."""


class IndexExistsError(LibraryError):
    """`create` on a name that is already an index."""


class IndexBusyError(LibraryError):
    """Another process holds the writer lock of the index."""


class EncoderMismatchError(LibraryError):
    """The encoder does not produce the vectors the index was built with (id or dimension)."""


class FilterError(LibraryError, ValueError):
    """A filter names an unknown column or cannot be parsed."""


class SourceError(LibraryError, ValueError):
    """A build SOURCE is neither a folder, a captions file nor a known dataset."""


class RecordError(LibraryError, ValueError):
    """A record cannot be stored as given: a metadata value that does not fit its column's type
    (a float for an int column, an integer outside int64, text for a geo coordinate). Raised
    before anything is written."""


class IndexNameError(LibraryError, ValueError):
    """An index name that is not a plain folder name (path separators, '..', too long, odd characters)."""
