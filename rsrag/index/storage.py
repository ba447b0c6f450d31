"""Where an index lives: a local folder, or a prefix on an S3-compatible object store.

An indexes root is a local path or an `s3://bucket/prefix` URI (`--root`, `RSRAG_INDEXES`, the
Python API). `location(root)` turns it into a `Storage`; `Storage.child(name)` is one index. The
record table is a LanceDB/Lance dataset, which reads and writes both natively (`lance_uri`,
`lance_options`); the few derived files (manifest, FAISS, BM25) go through the small byte
interface here, each written whole: a rename on a local disk, one PUT on an object store, so a
reader sees the old object or the new one, never half of one.

Object stores are configured by the standard AWS environment variables, read by both pyarrow's S3
client (derived files) and Lance's (records): `AWS_ENDPOINT_URL` (AWS, GCS's S3 API, MinIO,
SeaweedFS, ...), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`.
Plain HTTP is allowed for a loopback endpoint (a test or a sidecar server on the same machine);
elsewhere it needs `AWS_ALLOW_HTTP=true`, so keys are never sent in clear text by accident.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

from rsrag.config import indexes_root
from rsrag.fileio import atomic_write
from rsrag.index.errors import LibraryError

SCHEMES = ("s3://",)


class StorageError(LibraryError):
    """An object store that cannot be reached or is configured unsafely."""


def is_remote(root: str | Path | None) -> bool:
    return isinstance(root, str) and root.startswith(SCHEMES)


def location(root: "str | Path | Storage | None" = None) -> "Storage":
    """The storage of an indexes root: `root`, else `RSRAG_INDEXES`, else `./indexes`."""
    if isinstance(root, Storage):
        return root
    if root is None and is_remote(os.environ.get("RSRAG_INDEXES")):
        root = os.environ["RSRAG_INDEXES"]
    if is_remote(root):
        return ObjectStorage(str(root))
    return LocalStorage(indexes_root(root))


class Storage:
    """A folder of named objects (keys are plain names or `a/b` paths relative to it)."""

    uri: str
    name: str

    @property
    def local_path(self) -> Path | None:
        """The folder on this machine's file system, or None for an object store."""
        return None

    def child(self, name: str) -> "Storage":
        raise NotImplementedError

    def read_bytes(self, key: str) -> bytes:
        """The object's bytes; `FileNotFoundError` when there is none."""
        raise NotImplementedError

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write the whole object at once (readers see the old or the new one)."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def stamp(self, key: str) -> tuple:
        """Something that changes whenever the object is replaced; () when it is missing."""
        raise NotImplementedError

    def names(self) -> list[str]:
        """The names directly inside this folder (objects and sub-folders), sorted."""
        raise NotImplementedError

    def delete(self, key: str) -> None:
        """Remove an object (missing is fine)."""
        raise NotImplementedError

    def download(self, key: str, path: Path) -> None:
        Path(path).write_bytes(self.read_bytes(key))

    def upload(self, path: Path, key: str) -> None:
        self.write_bytes(key, Path(path).read_bytes())

    def read_json(self, key: str) -> dict:
        return json.loads(self.read_bytes(key))

    def write_json(self, key: str, data: dict) -> None:
        self.write_bytes(key, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())

    @property
    def lance_uri(self) -> str:
        return self.uri

    @property
    def lance_options(self) -> dict[str, str]:
        """`storage_options` for LanceDB/Lance."""
        return {}

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Storage) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)


class LocalStorage(Storage):
    """A folder on a local (or network) file system; writes are temp file + rename."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.uri = str(self.path.resolve())
        self.name = self.path.name

    @property
    def local_path(self) -> Path:
        return self.path

    def child(self, name: str) -> "LocalStorage":
        return LocalStorage(self.path / name)

    def read_bytes(self, key: str) -> bytes:
        return (self.path / key).read_bytes()

    def write_bytes(self, key: str, data: bytes) -> None:
        target = self.path / key
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda tmp: tmp.write_bytes(data))

    def exists(self, key: str) -> bool:
        return (self.path / key).exists()

    def stamp(self, key: str) -> tuple:
        try:
            st = os.stat(self.path / key)
            return st.st_mtime_ns, st.st_size, st.st_ino
        except FileNotFoundError:
            return ()

    def names(self) -> list[str]:
        return sorted(p.name for p in self.path.iterdir()) if self.path.is_dir() else []

    def delete(self, key: str) -> None:
        (self.path / key).unlink(missing_ok=True)

    def download(self, key: str, path: Path) -> None:
        shutil.copyfile(self.path / key, path)

    def upload(self, path: Path, key: str) -> None:
        target = self.path / key
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda tmp: shutil.copyfile(path, tmp))


def _is_loopback(host: str | None) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def s3_settings() -> dict[str, str | None]:
    """The object-store settings from the standard AWS environment variables (None = SDK default)."""
    env = os.environ.get
    return {
        "endpoint": env("AWS_ENDPOINT_URL_S3") or env("AWS_ENDPOINT_URL"),
        "region": env("AWS_REGION") or env("AWS_DEFAULT_REGION"),
        "access_key": env("AWS_ACCESS_KEY_ID"),
        "secret_key": env("AWS_SECRET_ACCESS_KEY"),
        "session_token": env("AWS_SESSION_TOKEN"),
    }


def _allow_http(endpoint: str | None) -> bool:
    """Whether plain HTTP may be used: a loopback endpoint, or `AWS_ALLOW_HTTP=true` said so."""
    if not endpoint or urlparse(endpoint).scheme != "http":
        return False
    if _is_loopback(urlparse(endpoint).hostname):
        return True
    if os.environ.get("AWS_ALLOW_HTTP", "").lower() in ("1", "true", "yes"):
        return True
    raise StorageError(f"AWS_ENDPOINT_URL {endpoint} is plain HTTP to a host that is not this machine: "
                       f"use https, or set AWS_ALLOW_HTTP=true if the network is trusted")


class ObjectStorage(Storage):
    """A prefix in an S3-compatible bucket (pyarrow's S3 client for the derived files)."""

    def __init__(self, uri: str, filesystem=None) -> None:
        """`filesystem`: a pyarrow S3 client to share (a child prefix reuses its parent's)."""
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise StorageError(f"not an object-store URI: {uri!r} (expected s3://bucket/prefix)")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.name = self.prefix.rsplit("/", 1)[-1] if self.prefix else self.bucket
        self._fs = filesystem

    @property
    def fs(self):
        if self._fs is None:
            self._fs = _s3_filesystem()
        return self._fs

    def _key(self, key: str = "") -> str:
        return "/".join(p for p in (self.bucket, self.prefix, key.strip("/")) if p)

    def child(self, name: str) -> "ObjectStorage":
        return ObjectStorage(f"{self.uri}/{name}", self._fs)

    def read_bytes(self, key: str) -> bytes:
        try:
            with self.fs.open_input_stream(self._key(key)) as stream:
                return stream.read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            if "NoSuchKey" in str(exc) or "not found" in str(exc).lower():
                raise FileNotFoundError(f"{self.uri}/{key}") from None
            raise StorageError(f"cannot read {self.uri}/{key}: {exc}") from exc

    def write_bytes(self, key: str, data: bytes) -> None:
        try:
            with self.fs.open_output_stream(self._key(key)) as stream:
                stream.write(data)
        except OSError as exc:
            raise StorageError(f"cannot write {self.uri}/{key}: {exc}") from exc

    def _info(self, key: str):
        try:
            return self.fs.get_file_info(self._key(key))
        except OSError as exc:
            raise StorageError(f"cannot reach {self.uri}: {exc}") from exc

    def exists(self, key: str) -> bool:
        from pyarrow import fs

        return self._info(key).type != fs.FileType.NotFound

    def stamp(self, key: str) -> tuple:
        from pyarrow import fs

        info = self._info(key)
        if info.type == fs.FileType.NotFound:
            return ()
        return info.mtime_ns, info.size

    def names(self) -> list[str]:
        from pyarrow import fs

        try:
            infos = self.fs.get_file_info(fs.FileSelector(self._key(), allow_not_found=True))
        except OSError as exc:
            raise StorageError(f"cannot list {self.uri}: {exc}") from exc
        return sorted(info.base_name for info in infos)

    def delete(self, key: str) -> None:
        try:
            self.fs.delete_file(self._key(key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            if "NoSuchKey" not in str(exc):
                raise StorageError(f"cannot delete {self.uri}/{key}: {exc}") from exc

    @property
    def lance_options(self) -> dict[str, str]:
        settings = s3_settings()
        options = {"allow_http": "true"} if _allow_http(settings["endpoint"]) else {}
        names = {"endpoint": "aws_endpoint", "region": "aws_region", "access_key": "aws_access_key_id",
                 "secret_key": "aws_secret_access_key", "session_token": "aws_session_token"}
        options.update({names[k]: v for k, v in settings.items() if v})
        return options


def _s3_filesystem():
    from pyarrow.fs import S3FileSystem

    settings = s3_settings()
    kwargs = {"allow_bucket_creation": False, "region": settings["region"] or "us-east-1"}
    if settings["endpoint"]:
        _allow_http(settings["endpoint"])  # refuses clear text to another machine
        kwargs["endpoint_override"] = settings["endpoint"]
    if settings["access_key"] and settings["secret_key"]:
        kwargs.update(access_key=settings["access_key"], secret_key=settings["secret_key"],
                      session_token=settings["session_token"])
    return S3FileSystem(**kwargs)
