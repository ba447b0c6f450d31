"""Where rsrag finds data, caches and indexes. Every location can be overridden by an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent
WEIGHTS_DIR = PACKAGE_DIR / "weights"


def data_root() -> Path:
    """The shared data folder: `RSRAG_DATA`, else `../shared/data` beside the project root."""
    env = os.environ.get("RSRAG_DATA")
    return Path(env).expanduser().resolve() if env else (PROJECT_ROOT.parent / "shared" / "data").resolve()


def cache_dir() -> Path:
    """Derived artefacts (ONNX exports, cached features): `RSRAG_CACHE`, else `~/.cache/rsrag`."""
    env = os.environ.get("RSRAG_CACHE")
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "rsrag"
    path.mkdir(parents=True, exist_ok=True)
    return path


def indexes_root(root: str | Path | None = None) -> Path:
    """Index root: an explicit `root`, else `RSRAG_INDEXES`, else `./indexes`."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("RSRAG_INDEXES")
    return Path(env).expanduser() if env else Path("indexes")


def results_dir() -> Path:
    """Where evaluation commands write their JSON results: `RSRAG_RESULTS`, else `./results`."""
    env = os.environ.get("RSRAG_RESULTS")
    path = Path(env).expanduser() if env else Path("results")
    path.mkdir(parents=True, exist_ok=True)
    return path


def torch_device() -> str:
    """`cuda` when a GPU is usable, else `cpu`."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
