"""rsrag: multimodal RAG and vector search for remote-sensing imagery."""

__version__ = "0.1.0"

from rsrag.encoders import create_encoder, list_encoders  # noqa: E402

__all__ = ["create_encoder", "list_encoders", "__version__"]
