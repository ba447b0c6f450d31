"""Knowledge records (typed text chunks about places), their ingestion, and a library's knowledge table.

Owns: `KnowledgeRecord` / `Chunk` and their validation, JSONL and RSWK conversion, question typing
(`questions.py`), and `KnowledgeBase`, the knowledge sub-index of a library (all-or-nothing
ingestion). May import: `rsrag.index` (the `Library` public API only), `rsrag.encoders` and
`rsrag.config`; never `rsrag.rag`, `rsrag.generators` or `rsrag.service` (they import knowledge).
"""

from rsrag.knowledge.questions import clean_question, ground_question, question_type
from rsrag.knowledge.records import CHUNK_TYPES, IMAGE_CHUNK, Chunk, KnowledgeFormatError, KnowledgeRecord, slug
from rsrag.knowledge.rswk import QAItem, convert_rswk, load_qa_items
from rsrag.knowledge.store import IngestReport, KnowledgeBase, read_jsonl, write_jsonl

__all__ = [
    "CHUNK_TYPES",
    "IMAGE_CHUNK",
    "Chunk",
    "KnowledgeRecord",
    "KnowledgeFormatError",
    "KnowledgeBase",
    "IngestReport",
    "QAItem",
    "convert_rswk",
    "load_qa_items",
    "read_jsonl",
    "write_jsonl",
    "question_type",
    "ground_question",
    "clean_question",
    "slug",
]
