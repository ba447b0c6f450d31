"""Knowledge-grounded QA: retrieval with fusion and re-ranking, prompt building, `ask`, and what a
library knows about an image (`image_to_text`).

Owns: `ask` / `Answerer` / `AskOptions`, `Answer`, `Evidence` handling, `KnowledgeRetriever` and its
`Retrieval`, the prompt builder, image description over a library, and the `ask` / `knowledge` CLI
commands. May import: `rsrag.index` (public API only: `Library`, its search/read methods, `Hit`),
`rsrag.knowledge`, `rsrag.generators`, `rsrag.rerankers`, `rsrag.encoders`, `rsrag.fusion`, and
`rsrag.change` (change questions over a dated series are answered from change maps). Nothing
below it imports `rsrag.rag`.
"""

from rsrag.generators import Evidence
from rsrag.rag.answer import Answer, QAInputError
from rsrag.rag.ask import Answerer, AskOptions, answerer_for, ask, ask_stream
from rsrag.rag.conversation import Conversation
from rsrag.rag.describe import image_to_text
from rsrag.rag.prompt import Prompt, PromptBuilder
from rsrag.rag.retrieval import Candidate, KnowledgeRetriever, RetrievalConfig, Retrieval

__all__ = [
    "ask",
    "ask_stream",
    "Conversation",
    "Answerer",
    "AskOptions",
    "answerer_for",
    "Answer",
    "Evidence",
    "QAInputError",
    "RetrievalConfig",
    "KnowledgeRetriever",
    "Retrieval",
    "Candidate",
    "PromptBuilder",
    "Prompt",
    "image_to_text",
]
