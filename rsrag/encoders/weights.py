"""The weights store: every trained artefact rsrag ships is a `.safetensors` file plus a JSON card
beside it (same stem, `.json`) that records its architecture, training command and results.

rs-lite heads, its pair memory, the captioner and the VQA model all save and load through here, so
they share one naming rule (`weights_path`: a name in `rsrag/weights/`, or a path to a
`.safetensors` file), one crash-safe write (a reader sees the old pair or the new one, never half a
file) and one "not found, here is how to make it" error.

safetensors and torch are imported inside functions; arrays may be torch tensors or numpy arrays.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

from rsrag.config import WEIGHTS_DIR
from rsrag.fileio import atomic_write

SUFFIX = ".safetensors"


def weights_path(name: str | Path) -> Path:
    """`rsrag/weights/NAME.safetensors`, or NAME itself when it already is a .safetensors path."""
    return Path(name) if str(name).endswith(SUFFIX) else WEIGHTS_DIR / f"{name}{SUFFIX}"


def card_path(name: str | Path) -> Path:
    """The JSON card beside the weights file of `name`."""
    path = weights_path(name)
    return path.with_name(path.name[: -len(SUFFIX)] + ".json")


def save(name: str | Path, tensors: Mapping[str, Any], card: Mapping[str, Any]) -> Path:
    """Write the weights file and its card (each atomically); returns the weights path."""
    tensors = dict(tensors)
    if any(type(v).__module__.startswith("torch") for v in tensors.values()):
        from safetensors.torch import save_file
    else:
        from safetensors.numpy import save_file

    path = weights_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))
    atomic_write(card_path(name), lambda tmp: tmp.write_text(json.dumps(dict(card), indent=2) + "\n"))
    return path


def load(name: str | Path, *, what: str, fix: str, framework: str = "pt",
         card_required: bool = True) -> tuple[dict[str, Any], dict]:
    """(tensors, card) of `name`, tensors as stored (`framework` "pt": torch, "np": numpy).

    A missing weights file (or card, when `card_required`) raises FileNotFoundError naming the file
    and `fix`, e.g. "train it with `rsrag train vqa`"; a missing optional card reads as {}.
    """
    from safetensors import safe_open

    path, cpath = weights_path(name), card_path(name)
    for p in (path, cpath) if card_required else (path,):
        if not p.is_file():
            raise FileNotFoundError(f"{what} file not found: {p}; {fix}")
    card = json.loads(cpath.read_text()) if cpath.is_file() else {}
    with safe_open(str(path), framework) as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    return tensors, card


def digest(name: str | Path) -> str:
    """Short content hash of a weights file: encoder ids carry it, so an index or a model trained on
    other weights is recognised."""
    return hashlib.sha256(weights_path(name).read_bytes()).hexdigest()[:10]


def fp16(state: Mapping[str, Any]) -> dict[str, Any]:
    """A torch state dict for storage: floating tensors as contiguous fp16 (half the bytes), others as they are."""
    return {k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous() for k, v in state.items()}


def fp32(state: Mapping[str, Any]) -> dict[str, Any]:
    """A loaded torch state dict for computing: floating tensors as fp32."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def run_card(train_config: Any, command: str, result: Mapping[str, Any], **extra: Any) -> dict:
    """What a weights card records about a training run: seed, the full config, the command line
    and the results (plus `extra` fields such as the encoder id)."""
    config = json.loads(json.dumps(asdict(train_config), default=str))
    return {"seed": config.get("seed"), **extra, "train_config": config, "command": command, "result": dict(result)}
