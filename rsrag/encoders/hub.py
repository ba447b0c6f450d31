"""What published checkpoints need, in one place: the pixel statistics they were trained with,
offline-first access to the Hugging Face hub, and the precisions torch-backed towers run in.

rsrag runs offline. Every backend that can read from the hub (`hf-clip`, `openclip` pretrained tags
and HF text towers) asks `hub_offline()` and `host_reachable()` before touching the network, so a
machine without internet fails at once with a clear error instead of retrying for a minute per file.

Only the standard library is imported at module level; huggingface_hub and torch are imported inside
functions, so importing a backend module stays cheap.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

#: OpenAI CLIP pixel statistics (RGB, on 0..1 pixels): the default of CLIP-family checkpoints
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: EfficientNet-Lite (rs-lite's image tower) was trained on inputs scaled to [-1, 1]
#: (mean 127, std 128 in the TF original)
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)

_TRUE = {"1", "true", "yes", "on"}
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")


def hub_offline() -> bool:
    """True when the user has marked the Hugging Face hub offline (checked now, not at import)."""
    if any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def host_reachable(url: str | None = None, timeout: float = 3.0) -> bool:
    """Quick TCP probe of the hub (or `url`) so an offline machine fails at once.

    huggingface_hub retries failed connections with back-off for most of a minute per file; probing
    first turns that wait into an immediate, clear error. Behind a proxy the probe is skipped.
    """
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return True
    parsed = urlparse(url or os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "", port), timeout=timeout).close()
    except OSError:
        return False
    return True


def offline_advice(model: str) -> str:
    """How to make a hub model available on a machine without internet."""
    return (
        f"download it on a connected machine (`huggingface-cli download {model}`) and copy the hub cache, "
        "or pass the path of a folder saved with save_pretrained"
    )


def load_from_hub(loader: Callable[..., Any], model: str, local_only: bool, what: str, **kwargs) -> Any:
    """Call a transformers `from_pretrained` cache-first; go online only when allowed.

    `local_only` is True for local folders and offline hubs, so nothing can wait on the network.
    """
    try:
        return loader(model, local_files_only=True, **kwargs)
    except (OSError, ValueError) as exc:
        if local_only:
            where = "folder" if Path(model).expanduser().exists() else "local hub cache (hub is offline)"
            raise RuntimeError(f"cannot load the {what} of {model!r} from the {where}: {exc}") from exc
        first = exc
    if not host_reachable():
        raise RuntimeError(
            f"{what} of {model!r} is not cached locally ({first}) and the hub is unreachable; " + offline_advice(model)
        ) from first
    try:
        return loader(model, local_files_only=False, **kwargs)
    except Exception as exc:  # noqa: BLE001 - network, auth and missing-repo errors all mean "not available"
        raise RuntimeError(
            f"{what} of {model!r} is not cached locally ({first}) and could not be downloaded ({exc}); "
            + offline_advice(model)
        ) from exc


def require_hub(name: str, what: str) -> None:
    """Fail fast where a library reads from the hub itself and would retry for a minute offline."""
    if hub_offline() or host_reachable():
        return
    raise RuntimeError(
        f"{what} comes from the Hugging Face hub ({name!r}), which is unreachable; if it is in the local "
        "cache set HF_HUB_OFFLINE=1 before starting Python, otherwise download it on a connected machine"
    )


# ---------------------------------------------------------------------------------------------
# torch-backed CLIP towers (openclip, hf-clip)

#: the precisions a torch backend accepts
PRECISIONS = ("fp32", "fp16", "bf16")


def torch_dtype(precision: str) -> Any:
    """The torch dtype of a precision name; ValueError naming the choices for anything else."""
    import torch

    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision not in dtypes:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return dtypes[precision]


def run_image_tower(forward: Callable[[Any], Any], batch: Any, device: str, dtype: Any) -> Any:
    """(n, 3, size, size) float32 numpy pixels -> `forward(pixels)` on `device` in `dtype`, as a
    float32 numpy array (the shared step of every torch backend's `_encode_arrays`)."""
    import numpy as np
    import torch

    with torch.inference_mode():
        pixels = torch.from_numpy(np.ascontiguousarray(batch)).to(device, dtype)
        return forward(pixels).float().cpu().numpy()
