"""Image-text encoders: one interface (`Encoder`), many backends, chosen by name."""

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
