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
from pathlib import Path
from typing import Any

import numpy as np

from rsrag.config import torch_device
from rsrag.encoders.base import Encoder, Preprocess
from rsrag.encoders.hub import CLIP_MEAN, CLIP_STD, host_reachable, hub_offline, load_from_hub, run_image_tower, torch_dtype
from rsrag.encoders.registry import register_backend

log = logging.getLogger(__name__)

# PIL resampling codes used in HF preprocessor configs
_RESAMPLE = {2: "bilinear", 3: "bicubic"}


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
        from transformers import AutoTokenizer, CLIPModel

        dtype = torch_dtype(precision)
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
        self.dtype = dtype
        self.model = net.to(device=self.device, dtype=self.dtype).eval()
        self.max_length = int(net.config.text_config.max_position_embeddings)
        size = int(net.config.vision_config.image_size)
        self.preprocess = Preprocess(
            size=size,
            mean=tuple(float(x) for x in pp.get("image_mean", CLIP_MEAN)),
            std=tuple(float(x) for x in pp.get("image_std", CLIP_STD)),
            resample=_RESAMPLE.get(pp.get("resample"), "bicubic"),
        )
        self.dim = int(net.config.projection_dim)
        self.id = f"hf-clip:{path.name if is_local else model}"

    def _encode_arrays(self, batch: np.ndarray) -> np.ndarray:
        def forward(pixels: Any) -> Any:
            return _features(self.model.get_image_features(pixel_values=pixels))

        return run_image_tower(forward, batch, self.device, self.dtype)

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
