"""`hf-clip` backend: a Hugging Face transformers `CLIPModel` from a local folder or the hub cache.

Covers CLIP-family checkpoints published in transformers format (e.g. openai/clip-vit-base-patch32
or RS fine-tunes saved with `save_pretrained`). rsrag runs offline, so a local folder is read with
`local_files_only=True` and a hub id is looked up in the local cache first; a download is only
tried when the hub is not marked offline, and any failure becomes one clear error.

transformers and torch are imported inside functions so importing this module stays cheap.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import numpy as np

from rsrag.config import torch_device
from rsrag.encoders.base import Encoder, Preprocess
from rsrag.encoders.registry import register_backend

log = logging.getLogger(__name__)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_TRUE = {"1", "true", "yes", "on"}
# PIL resampling codes used in HF preprocessor configs
_RESAMPLE = {2: "bilinear", 3: "bicubic"}


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
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return True
    parsed = urlparse(url or os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "", port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _offline_advice(model: str) -> str:
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
            f"{what} of {model!r} is not cached locally ({first}) and the hub is unreachable; " + _offline_advice(model)
        ) from first
    try:
        return loader(model, local_files_only=False, **kwargs)
    except Exception as exc:  # noqa: BLE001 - network, auth and missing-repo errors all mean "not available"
        raise RuntimeError(
            f"{what} of {model!r} is not cached locally ({first}) and could not be downloaded ({exc}); "
            + _offline_advice(model)
        ) from exc


def _read_preprocessor_config(model: str, is_local: bool, local_only: bool, cache_dir: str | None) -> dict:
    """The model's preprocessor_config.json as a dict ({} when the model ships none)."""
    if is_local:
        path = Path(model).expanduser() / "preprocessor_config.json"
        return json.loads(path.read_text()) if path.is_file() else {}
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    hit = try_to_load_from_cache(model, "preprocessor_config.json", cache_dir=cache_dir)
    if not isinstance(hit, str) and not local_only and host_reachable():
        try:
            hit = hf_hub_download(model, "preprocessor_config.json", cache_dir=cache_dir)
        except Exception as exc:  # noqa: BLE001
            log.warning("no preprocessor_config.json for %s (%s); using CLIP defaults", model, exc)
            hit = None
    return json.loads(Path(hit).read_text()) if isinstance(hit, str) else {}


def _looks_like_path(model: str) -> bool:
    """Hub ids are "name" or "org/name"; anything else is meant as a local folder."""
    return model.startswith((".", "~", "/")) or "\\" in model or model.count("/") > 1


def _features(out: Any) -> Any:
    """transformers 4.x returns the projected tensor, 5.x an output object with it in `pooler_output`."""
    import torch

    return out if isinstance(out, torch.Tensor) else out.pooler_output


@register_backend("hf-clip")
class HFClipEncoder(Encoder):
    """A transformers `CLIPModel` (+ its tokenizer and preprocessor config) as an rsrag `Encoder`.

    Image size comes from the model's vision config, mean/std/resampling from its
    preprocessor_config.json. As with every rsrag encoder the whole image is resized to a square;
    CLIPImageProcessor would resize the short side and centre-crop, which matches for square tiles.
    """

    def __init__(
        self,
        model: str,
        device: str | None = None,
        precision: str = "fp32",
        local_files_only: bool | None = None,
        cache_dir: str | None = None,
    ) -> None:
        import torch
        from transformers import AutoTokenizer, CLIPModel

        dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
        if precision not in dtypes:
            raise ValueError(f"precision must be one of {tuple(dtypes)}, got {precision!r}")
        model = str(model)
        path = Path(model).expanduser()
        is_local = path.exists()
        if not is_local and _looks_like_path(model):
            raise FileNotFoundError(f"CLIP model folder not found: {path}")
        if is_local and not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a transformers model folder (no config.json)")
        source = str(path) if is_local else model
        local_only = bool(local_files_only) or is_local or hub_offline()

        net = load_from_hub(CLIPModel.from_pretrained, source, local_only, "CLIP model", cache_dir=cache_dir)
        self.tokenizer = load_from_hub(AutoTokenizer.from_pretrained, source, local_only, "tokenizer", cache_dir=cache_dir)
        pp = _read_preprocessor_config(source, is_local, local_only, cache_dir)

        self.device = device or torch_device()
        self.dtype = dtypes[precision]
        self.model = net.to(device=self.device, dtype=self.dtype).eval()
        self.max_length = int(net.config.text_config.max_position_embeddings)
        size = int(net.config.vision_config.image_size)
        self.preprocess = Preprocess(
            size=size,
            mean=tuple(float(x) for x in pp.get("image_mean", OPENAI_MEAN)),
            std=tuple(float(x) for x in pp.get("image_std", OPENAI_STD)),
            resample=_RESAMPLE.get(pp.get("resample"), "bicubic"),
        )
        self.dim = int(net.config.projection_dim)
        self.id = f"hf-clip:{path.name if is_local else model}"

    def _encode_arrays(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            pixels = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, self.dtype)
            feats = _features(self.model.get_image_features(pixel_values=pixels))
        return feats.float().cpu().numpy()

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        tokens = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        with torch.inference_mode():
            feats = _features(
                self.model.get_text_features(
                    input_ids=tokens["input_ids"].to(self.device),
                    attention_mask=tokens["attention_mask"].to(self.device),
                )
            )
        return feats.float().cpu().numpy()
