"""Remote-sensing image captioner: a transformer decoder over rs-lite's spatial features, plain or
retrieval-augmented (captions of the nearest training images as extra decoder memory).

    from rsrag.models.captioner import load_captioner
    captioner = load_captioner()            # committed weights (rsrag/weights/captioner-*.safetensors)
    captioner.caption(["scene.jpg"])        # -> ["many buildings and green trees are around a playground"]
"""

from rsrag.models.captioner.api import DEFAULT_CAPTIONER, Captioner, load_captioner

__all__ = ["DEFAULT_CAPTIONER", "Captioner", "load_captioner"]
