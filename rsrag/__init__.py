"""rsrag: multimodal RAG and vector search for remote-sensing imagery."""

__version__ = "0.1.0"

from rsrag.encoders import create_encoder, list_encoders  # noqa: E402

__all__ = ["create_encoder", "list_encoders", "Library", "ask", "__version__"]


def __getattr__(name: str):
    """`rsrag.Library` is imported lazily: it pulls in FAISS and LanceDB."""
    if name == "Library":
        from rsrag.index import Library

        return Library
    if name == "ask":  # knowledge-grounded QA (rsrag.rag), lazy for the same reason
        from rsrag.rag import ask

        return ask
    raise AttributeError(f"module 'rsrag' has no attribute {name!r}")
