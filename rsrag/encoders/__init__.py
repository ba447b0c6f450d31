"""Image-text encoders: one interface (`Encoder`), many backends, chosen by name.

Owns: the `Encoder` interface and its backends (`rs_lite`, `openclip`, `hf_clip`), the registry that
builds them by name (`registry`, `configs/`), the one decode-ahead loop every image batch job runs
(`decoding`), the weights store for trained artefacts (`weights`: `.safetensors` + JSON card),
published-checkpoint constants and offline hub access (`hub`), rs-lite's pair memory (`memory`),
the shared rs-lite feature caches (`features`) and the text-vector LRU (`cache`).

May import: `rsrag.config`, `rsrag.fileio`, `rsrag.imageio`, `rsrag.registry`; nothing above them
(not `data`, `index`, `models`, `training`), so every other package can build on encoders.
"""

from rsrag.encoders.base import EncodeResult, Encoder, Preprocess, l2_normalize
from rsrag.encoders.registry import DEFAULT_ENCODER, create_encoder, encoder_accepts, list_encoders, register_backend

__all__ = [
    "Encoder",
    "EncodeResult",
    "Preprocess",
    "l2_normalize",
    "create_encoder",
    "encoder_accepts",
    "list_encoders",
    "register_backend",
    "DEFAULT_ENCODER",
]
