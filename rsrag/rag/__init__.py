"""Knowledge-grounded QA: retrieval with fusion and re-ranking, prompt building, `ask`."""

from rsrag.rag.answer import Answer, QAInputError
from rsrag.rag.ask import ask
from rsrag.rag.prompt import Prompt, PromptBuilder
from rsrag.rag.retrieval import Candidate, KnowledgeRetriever, RetrievalConfig, fuse_rrf, fuse_weighted

__all__ = [
    "ask",
    "Answer",
    "QAInputError",
    "RetrievalConfig",
    "KnowledgeRetriever",
    "Candidate",
    "fuse_rrf",
    "fuse_weighted",
    "PromptBuilder",
    "Prompt",
]
