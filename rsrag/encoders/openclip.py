"""`openclip` backend: any open_clip architecture with weights from a local checkpoint file.

Remote-sensing CLIPs (RemoteCLIP, GeoRSCLIP, ...) are open_clip models fine-tuned on aerial and
satellite captions and published as plain checkpoint files, so one backend covers them all:
`create_encoder("openclip", model="ViT-B-32", checkpoint="RemoteCLIP-ViT-B-32.pt")`, or a named
config such as `remoteclip-vit-b-32` that fixes the architecture and an env-var based path.

rsrag runs offline: nothing here downloads unless a `pretrained` tag is asked for and the hub is
reachable; a missing file or an offline hub is a clear error, never a hang.

torch and open_clip are imported inside functions so `import rsrag.encoders.openclip` stays cheap.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rsrag.config import WEIGHTS_DIR, torch_device
from rsrag.encoders.base import Encoder, Preprocess
from rsrag.encoders.hub import (
    CLIP_MEAN,
    CLIP_STD,
    host_reachable,
    hub_offline,
    require_hub,
    run_image_tower,
    torch_dtype,
)
from rsrag.encoders.registry import register_backend

log = logging.getLogger(__name__)

# innermost ${VAR} or ${VAR:-default}; nested defaults are expanded inside-out
_ENV_REF = re.compile(r"\$\{(\w+)(?::-([^${}]*))?\}")


# ---------------------------------------------------------------------------------------------
# checkpoint paths


def weights_dir() -> Path:
    """Default folder for downloaded weights: `RSRAG_WEIGHTS`, else the package's `weights/`."""
    env = os.environ.get("RSRAG_WEIGHTS")
    return Path(env).expanduser() if env else WEIGHTS_DIR


def expand_env(text: str) -> tuple[str, list[str], list[str]]:
    """Expand `${VAR}` and `${VAR:-default}` (defaults may nest); `$RSRAG_WEIGHTS` has a built-in default.

    Returns (expanded text, every variable referenced, variables that were unset with no default).
    Done here rather than with `os.path.expandvars` because that leaves unset variables in place
    silently and knows no defaults; named configs need both to say where weights belong.
    """
    referenced: list[str] = []
    unset: list[str] = []

    def sub(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        referenced.append(name)
        value = os.environ.get(name)
        if value:
            return value
        if name == "RSRAG_WEIGHTS":
            return str(weights_dir())
        if default is not None:
            return default
        unset.append(name)
        return ""

    while True:
        new = _ENV_REF.sub(sub, text)
        if new == text:
            break
        text = new
    return os.path.expanduser(text), list(dict.fromkeys(referenced)), unset


def resolve_checkpoint(checkpoint: str | os.PathLike, weights_source: str | None = None) -> Path:
    """Expand env vars in `checkpoint` and check that the file exists, saying how to fix it if not."""
    expanded, referenced, unset = expand_env(str(checkpoint))
    path = Path(expanded)
    if not unset and path.is_file():
        return path
    shown = repr(str(checkpoint)) if str(checkpoint) == expanded else f"{str(checkpoint)!r} -> {expanded!r}"
    if unset:
        reason, fix = f"environment variable {', '.join(unset)} is not set", "download the weights"
    else:
        reason = "is a directory, not a file" if path.is_dir() else "file does not exist"
        fix = f"put the weights at {path}"
    user_vars = [v for v in referenced if v != "RSRAG_WEIGHTS"]
    if user_vars:
        fix += f", or set {' / '.join(user_vars)} to the checkpoint file's path"
    if weights_source:
        fix += f" (weights: {weights_source})"
    raise FileNotFoundError(f"open_clip checkpoint not found: {shown} ({reason}). To fix: {fix}.")


# ---------------------------------------------------------------------------------------------
# state dicts


def read_state_dict(path: str | os.PathLike, weights_only: bool = True) -> dict[str, Any]:
    """Load a checkpoint file into a flat {name: tensor} dict.

    Accepts what RS CLIP releases ship: a plain state dict (RemoteCLIP), an open_clip training
    checkpoint with a "state_dict" key (GeoRSCLIP), a {"model": ...} wrapper, DDP "module." prefixes,
    a pickled module, or a .safetensors file.
    """
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj: Any = load_file(str(path), device="cpu")
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=weights_only)
        except pickle.UnpicklingError as exc:
            raise ValueError(
                f"{path} holds pickled Python objects besides tensors, which torch refuses to load "
                f"safely; if you trust the file, pass weights_only=False ({exc})"
            ) from exc
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in ("state_dict", "model", "module") if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{path} does not contain a state dict (found {type(obj).__name__})")
    state = {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ValueError(f"{path} contains no tensors")
    return state


def load_weights(net: Any, state: dict[str, Any], source: str) -> None:
    """Load `state` into an open_clip model strictly, after open_clip's own format fix-ups.

    Mirrors `open_clip.load_checkpoint` (which only takes a path and knows fewer wrappers) and turns
    architecture mismatches into an error that names the checkpoint.
    """
    import torch
    from open_clip.convert import convert_state_dict
    from open_clip.model import convert_to_custom_text_state_dict, resize_pos_embed, resize_text_pos_embed

    state = convert_state_dict(net, dict(state))
    if "positional_embedding" in state and not hasattr(net, "positional_embedding"):
        state = convert_to_custom_text_state_dict(state)
    for name in ("logit_scale", "logit_bias"):
        param = getattr(net, name, None)
        if param is not None and name in state and state[name].ndim != param.ndim:
            state[name] = state[name].reshape(param.shape)
    if getattr(net, "logit_bias", None) is not None and "logit_bias" not in state:
        state["logit_bias"] = torch.zeros_like(net.logit_bias)
    expected = net.state_dict()
    state = {k: v for k, v in state.items() if k in expected or not k.endswith("position_ids")}
    resize_pos_embed(state, net)
    resize_text_pos_embed(state, net)

    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {source} does not match the model architecture: "
            f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}"
        )
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # shape mismatches
        raise ValueError(f"checkpoint {source} does not match the model architecture: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# pretrained tags (hub cache)


def _cached_pretrained_file(cfg: dict, cache_dir: str | None) -> Path | None:
    """The local file for an open_clip pretrained tag if it is already cached, else None."""
    if cfg.get("file") and Path(cfg["file"]).is_file():
        return Path(cfg["file"])
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo_id, filename = os.path.split(cfg["hf_hub"])
        filename = filename or "open_clip_pytorch_model.bin"
        names = [filename]
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        for name in names:
            hit = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(hit, str) and Path(hit).is_file():
                return Path(hit)
    if cfg.get("url"):
        hit = Path(cache_dir or os.path.expanduser("~/.cache/clip")) / os.path.basename(cfg["url"])
        if hit.is_file():
            return hit
    return None


def resolve_pretrained(model: str, tag: str, cache_dir: str | None = None) -> tuple[Path, dict]:
    """Local checkpoint for an open_clip `pretrained` tag: from the cache, else a download if online."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, tag)
    if not cfg:
        known = open_clip.list_pretrained_tags_by_model(model)
        raise ValueError(f"unknown open_clip pretrained tag {tag!r} for {model!r}; known tags: {known}")
    cached = _cached_pretrained_file(cfg, cache_dir)
    if cached is not None:
        return cached, cfg
    advice = (
        f"download the weights on a connected machine (e.g. open_clip.create_model({model!r}, "
        f"pretrained={tag!r}) fills the hub cache) and copy the cache, or pass checkpoint=<file>"
    )
    if hub_offline():
        raise RuntimeError(f"open_clip weights {model}/{tag} are not in the local cache and the hub is offline: {advice}")
    if not host_reachable(None if cfg.get("hf_hub") else cfg.get("url")):
        raise RuntimeError(f"open_clip weights {model}/{tag} are not in the local cache and the hub is unreachable: {advice}")
    try:
        path = open_clip.download_pretrained(cfg, cache_dir=cache_dir)
    except Exception as exc:  # noqa: BLE001 - any network/hub failure means the same thing here
        raise RuntimeError(f"could not download open_clip weights {model}/{tag} (no internet?): {exc}. {advice}") from exc
    if not path or not Path(path).is_file():
        raise RuntimeError(f"open_clip returned no weights file for {model}/{tag}: {advice}")
    return Path(path), cfg


# ---------------------------------------------------------------------------------------------
# model construction


def _load_model_config(model: str, model_config: dict | str | os.PathLike | None) -> tuple[dict, dict]:
    """(architecture config, preprocess overrides) from a built-in name or a custom config.

    A custom config is either open_clip's model config ({"embed_dim", "vision_cfg", "text_cfg"}) or
    the `open_clip_config.json` layout ({"model_cfg": ..., "preprocess_cfg": ...}), as a dict or a
    path to a JSON file.
    """
    import open_clip

    if model_config is None:
        if ":" in model:
            raise ValueError(
                f"model names with a schema ({model!r}) are not supported offline; pass the repo's "
                "open_clip_config.json as model_config and its weights file as checkpoint"
            )
        cfg = open_clip.get_model_config(model)
        if cfg is None:
            raise ValueError(f"unknown open_clip architecture {model!r}; known: {', '.join(open_clip.list_models())}")
        return copy.deepcopy(cfg), {}
    if isinstance(model_config, (str, os.PathLike)):
        model_config = json.loads(Path(model_config).expanduser().read_text())
    cfg = copy.deepcopy(dict(model_config))
    if "model_cfg" in cfg:
        return cfg["model_cfg"], dict(cfg.get("preprocess_cfg", {}))
    return cfg, dict(cfg.pop("preprocess_cfg", {}))


def _build_model(model: str, cfg: dict) -> Any:
    """Instantiate the architecture with random weights on CPU in fp32, never fetching tower weights."""
    from open_clip import CLIP, CoCa, CustomTextCLIP

    cfg = copy.deepcopy(cfg)
    text_cfg, vision_cfg = cfg.setdefault("text_cfg", {}), cfg.setdefault("vision_cfg", {})
    hf_text = "hf_model_name" in text_cfg
    if hf_text:
        text_cfg["hf_model_pretrained"] = False
    if "timm_model_name" in vision_cfg:
        vision_cfg["timm_model_pretrained"] = False
    if hf_text:
        require_hub(text_cfg["hf_model_name"], f"the text tower of {model!r}")
    custom_text = cfg.pop("custom_text", False) or hf_text
    cls = (CoCa if "multimodal_cfg" in cfg else CustomTextCLIP) if custom_text else CLIP
    try:
        return cls(**cfg)
    except OSError as exc:  # HF text towers read their config from the hub even without weights
        raise RuntimeError(f"cannot build open_clip model {model!r} offline: {exc}") from exc


def _build_tokenizer(model: str, cfg: dict, builtin: bool) -> Any:
    """open_clip's tokenizer for the model; custom configs get one from their `text_cfg`."""
    import open_clip
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    text_cfg = cfg.get("text_cfg", {})
    try:
        if text_cfg.get("hf_tokenizer_name"):
            require_hub(text_cfg["hf_tokenizer_name"], f"the tokenizer of {model!r}")
        if builtin:
            return open_clip.get_tokenizer(model)
        context_length = text_cfg.get("context_length", 77)
        kwargs = dict(text_cfg.get("tokenizer_kwargs", {}))
        if text_cfg.get("hf_tokenizer_name"):
            return HFTokenizer(
                text_cfg["hf_tokenizer_name"],
                context_length=context_length,
                tokenizer_mode=text_cfg.get("tokenizer_mode"),
                **kwargs,
            )
        return SimpleTokenizer(context_length=context_length, **kwargs)
    except OSError as exc:
        raise RuntimeError(f"cannot load the tokenizer for open_clip model {model!r} (offline?): {exc}") from exc


def _preprocess_from(net: Any, *overrides: dict) -> tuple[Preprocess, dict]:
    """rsrag `Preprocess` from the model's image size and the tag's/config's mean, std, interpolation."""
    size = net.visual.image_size
    if isinstance(size, (tuple, list)):
        if len(set(size)) != 1:
            raise ValueError(f"non-square model input {tuple(size)} is not supported by rsrag's Preprocess")
        size = size[0]
    cfg: dict[str, Any] = {
        "size": int(size),
        "mean": CLIP_MEAN,
        "std": CLIP_STD,
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    }
    for extra in overrides:
        cfg.update({k: v for k, v in extra.items() if k in ("mean", "std", "interpolation", "resize_mode")})
    resample = cfg["interpolation"] if cfg["interpolation"] in ("bicubic", "bilinear") else "bicubic"
    pre = Preprocess(
        size=cfg["size"],
        mean=tuple(float(x) for x in cfg["mean"]),
        std=tuple(float(x) for x in cfg["std"]),
        resample=resample,
    )
    return pre, cfg


@register_backend("openclip")
class OpenClipEncoder(Encoder):
    """An open_clip CLIP model (ViT/ResNet/ConvNeXt/... towers) behind rsrag's `Encoder` interface.

    Weights come from `checkpoint` (a local file; env vars such as `${RSRAG_REMOTECLIP_CKPT}` are
    expanded) or from an open_clip `pretrained` tag that must already be in the hub cache when
    offline. `model_config` replaces the built-in architecture (a dict or JSON path), which is how
    tests build a tiny model. `random_init=True` allows a model without weights (tests, timing only).

    Preprocessing difference: open_clip resizes the shortest side and centre-crops (resize_mode
    "shortest"), while rsrag's `Preprocess` resizes the whole image to size x size. For square
    remote-sensing tiles the two are identical; for non-square images rsrag keeps the whole scene
    (slightly squashed) instead of cropping its borders away. Mean/std/size follow the model.
    """

    def __init__(
        self,
        model: str = "ViT-B-32",
        checkpoint: str | os.PathLike | None = None,
        pretrained: str | None = None,
        device: str | None = None,
        precision: str = "fp32",
        model_config: dict | str | os.PathLike | None = None,
        cache_dir: str | None = None,
        weights_only: bool = True,
        random_init: bool = False,
        weights_source: str | None = None,
    ) -> None:
        dtype = torch_dtype(precision)
        if checkpoint and pretrained:
            raise ValueError("give either checkpoint (a local file) or pretrained (an open_clip tag), not both")

        # Resolve the weights first: a missing file should fail before the (slow) model build.
        tag_cfg: dict = {}
        ckpt_path: Path | None = None
        if checkpoint:
            ckpt_path = resolve_checkpoint(checkpoint, weights_source)
            label = ckpt_path.stem
        elif pretrained:
            ckpt_path, tag_cfg = resolve_pretrained(model, pretrained, cache_dir)
            label = pretrained
        elif random_init:
            label = "random"
        else:
            raise ValueError(
                "the openclip backend needs weights: checkpoint=<file> or pretrained=<tag> "
                "(random_init=True builds an untrained model, for tests only)"
            )

        cfg, config_preprocess = _load_model_config(model, model_config)
        if tag_cfg and tag_cfg.get("quick_gelu", False) != cfg.get("quick_gelu", False):
            log.warning("QuickGELU mismatch between %s and pretrained tag %s; use the -quickgelu model", model, pretrained)
        net = _build_model(model, cfg)
        if ckpt_path is not None:
            load_weights(net, read_state_dict(ckpt_path, weights_only=weights_only), str(ckpt_path))

        self.device = device or torch_device()
        self.dtype = dtype
        self.model = net.to(device=self.device, dtype=self.dtype).eval()
        self.tokenizer = _build_tokenizer(model, cfg, builtin=model_config is None)
        self.preprocess, self.openclip_preprocess_cfg = _preprocess_from(net, tag_cfg, config_preprocess)
        self.dim = int(cfg["embed_dim"])
        self.id = f"openclip:{model}:{label}"
        self.checkpoint = ckpt_path

    def _encode_arrays(self, batch: np.ndarray) -> np.ndarray:
        return run_image_tower(self.model.encode_image, batch, self.device, self.dtype)

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            tokens = self.tokenizer(texts).to(self.device)
            feats = self.model.encode_text(tokens)
        return feats.float().cpu().numpy()
