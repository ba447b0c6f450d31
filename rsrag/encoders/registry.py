"""Encoder registry and factory, in the open_clip style.

A *backend* is a class that knows how to build an encoder (`rs-lite`, `openclip`, `hf-clip`),
registered in `BACKENDS` (an `rsrag.registry.Registry`). A *named config* is a JSON file in
`encoders/configs/` that fixes a backend plus its arguments, so `create_encoder("rs-lite")` and
`create_encoder("openclip", model="ViT-B-32", checkpoint="x.pt")` both work. Keyword arguments
override the config. A path to a config JSON file of one's own (`create_encoder("my/encoder.json")`,
`rsrag eval ... --encoder my/encoder.json`) is read as its backend plus arguments, so weights one
trained can be scored and indexed without adding a file to the package.

Every encoder `create_encoder` returns carries its `EncoderSpec` as `encoder.spec`: the name and
arguments it was made from (except `RUNTIME_ARGS` such as `device`, so an index built on one
machine opens on another), plus the resolved path and sha256 of every argument that names a file
(an OpenCLIP `checkpoint`). An index keeps the spec in its manifest, and `create_encoder_from_spec`
makes the same encoder again later, refusing (`EncoderSpecError`) when such a file is gone or
its contents changed, since the index's vectors would no longer be comparable.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rsrag.encoders.base import Encoder
from rsrag.registry import Registry

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_ENCODER = "rs-lite"
RUNTIME_ARGS = ("device", "threads")  # where and how fast an encoder runs, not what it computes: not in its spec
# importing the backend modules registers them; done lazily so `import rsrag` stays light
BACKENDS: Registry[Encoder] = Registry("encoder backend", builtins=(
    "rsrag.encoders.rs_lite", "rsrag.encoders.openclip", "rsrag.encoders.hf_clip"))


class EncoderSpecError(ValueError):
    """An encoder spec cannot be made again as recorded: a weights file is gone or has changed."""


def register_backend(name: str) -> Callable:
    """Class decorator: make a backend constructible by name."""
    return BACKENDS.register(name)


@dataclass(frozen=True)
class EncoderSpec:
    """How an encoder was made: `create_encoder(name, **args)`, with the files it read.

    `files` maps each argument that named an existing file to {"path": resolved absolute path,
    "sha256": hex digest}; `args` holds such arguments as that absolute path too, so the spec does
    not depend on the working directory."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    files: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-ready dict; ValueError when an argument is not JSON data (then it cannot be kept)."""
        out = {"name": self.name, "args": dict(self.args), "files": {k: dict(v) for k, v in self.files.items()}}
        try:
            json.dumps(out)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"encoder {self.name!r} was made with an argument JSON cannot hold: {exc}") from None
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "EncoderSpec":
        return cls(str(data["name"]), dict(data.get("args") or {}), {k: dict(v) for k, v in (data.get("files") or {}).items()})


def _named_configs() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(CONFIG_DIR.glob("*.json"))}


def list_encoders() -> list[str]:
    """Every name `create_encoder` accepts: named configs and bare backends."""
    return sorted(set(_named_configs()) | set(BACKENDS.names()))


def read_config_file(path: str | Path) -> tuple[str, dict]:
    """(backend, arguments) of a config JSON file outside the package. A relative path in it that
    names a file beside the config (a checkpoint) is made absolute, so the config works from any
    folder. Its arguments become the spec's own, so an index built with it does not depend on the
    file staying as it was."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"encoder config file {str(path)!r} not found")
    try:
        cfg = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"encoder config file {str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("backend"), str):
        raise ValueError(f"encoder config file {str(path)!r} must be a JSON object with a \"backend\" "
                         f"({', '.join(BACKENDS.names())}) and that backend's arguments")
    backend = cfg.pop("backend")
    if backend not in BACKENDS:
        raise ValueError(f"encoder config file {str(path)!r} names unknown backend {backend!r}")
    for key, value in cfg.items():
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute() \
                and (path.parent / value).is_file():
            cfg[key] = str((path.parent / value).resolve())
    return backend, cfg


def _resolve(name: str | None, overrides: dict) -> tuple[str, str, dict]:
    """(name, backend, arguments) for `create_encoder(name, **overrides)`."""
    name = name or DEFAULT_ENCODER
    configs = _named_configs()
    if name in configs:
        cfg = dict(configs[name])
        backend = cfg.pop("backend")
        cfg.update(overrides)
    elif name in BACKENDS:
        backend, cfg = name, dict(overrides)
    else:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(list_encoders())}")
    if backend not in BACKENDS:
        raise ValueError(f"encoder config {name!r} names unknown backend {backend!r}")
    return name, backend, cfg


def create_encoder(name: str | None = None, **overrides) -> Encoder:
    """Build an encoder by config name, backend name or config file; `overrides` replace config
    arguments. The encoder's `spec` records how (module doc)."""
    if name and name.endswith(".json"):
        backend, file_args = read_config_file(name)
        return create_encoder(backend, **{**file_args, **overrides})
    name, backend, cfg = _resolve(name, overrides)
    files = {key: _file_stamp(path) for key, path in _file_arguments(cfg).items()}
    encoder = BACKENDS.create(backend, **cfg)
    args = {key: files[key]["path"] if key in files else value for key, value in overrides.items()
            if key not in RUNTIME_ARGS}
    args.update({key: value for key, value in encoder.pinned_args().items() if key not in cfg})
    encoder.spec = EncoderSpec(name, args, files)
    return encoder


def create_encoder_from_spec(spec: EncoderSpec, encoder_id: str | None = None, **runtime) -> Encoder:
    """The encoder `spec` describes, after checking that every file it read is still there with
    the same contents (`EncoderSpecError` otherwise). `runtime` options (a device, rs-lite's
    `text_precision`) are added to or replace the recorded arguments. `encoder_id`, the id the
    encoder had, fills in what an older spec did not record (`Encoder.args_for_id`): an index built
    before a default changed reopens with the model it was built with."""
    args = {**spec.args, **runtime}
    if encoder_id:
        _, backend, _ = _resolve(spec.name, {})
        args = {**BACKENDS.get(backend).args_for_id(encoder_id), **args}
    _, _, cfg = _resolve(spec.name, args)
    now = _file_arguments(cfg)
    for key, recorded in spec.files.items():
        path = now.get(key) or Path(recorded["path"])
        if not path.is_file():
            raise EncoderSpecError(f"encoder {spec.name!r}: its {key} {recorded['path']} is gone; "
                                   f"put that file back or rebuild the index with the weights you have")
        digest = _file_stamp(path)["sha256"]
        if digest != recorded["sha256"]:
            raise EncoderSpecError(f"encoder {spec.name!r}: its {key} {path} has changed since the index was "
                                   f"built (sha256 {digest[:12]}..., recorded {recorded['sha256'][:12]}...); "
                                   f"restore that file or rebuild the index")
    return create_encoder(spec.name, **args)


def _file_arguments(cfg: dict) -> dict[str, Path]:
    """The arguments that name an existing file (env vars and `~` expanded), resolved."""
    from rsrag.encoders.openclip import expand_env

    out = {}
    for key, value in cfg.items():
        if isinstance(value, (str, os.PathLike)) and str(value):
            path = Path(expand_env(str(value))[0])
            if path.is_file():
                out[key] = path.resolve()
    return out


def _file_stamp(path: Path) -> dict[str, str]:
    st = path.stat()
    return {"path": str(path), "sha256": _sha256(str(path), st.st_size, st.st_mtime_ns, st.st_ino)}


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int, inode: int) -> str:
    """A file's sha256, remembered per (path, size, mtime, inode): a checkpoint of hundreds of MB is
    read once per process, not at every open."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def encoder_accepts(name: str, option: str) -> bool:
    """Whether `create_encoder(name, option=...)` is understood: the backend takes that argument."""
    import inspect

    backend = _named_configs().get(name, {}).get("backend", name)
    if backend not in BACKENDS:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(list_encoders())}")
    return option in inspect.signature(BACKENDS.get(backend)).parameters
