"""Evaluators: run a model over a benchmark split and report what it scores.

Owns the evaluation protocols: image-text retrieval (`retrieval`), zero-shot scene classification
(`zeroshot`), captioning (`caption`), VQA (`vqa`), knowledge-grounded QA on RSWK with its ablation
(`qa`) and retrieval-augmented classification on RSICD (`classify`). Evaluators encode, build the
cached libraries they need and keep the bookkeeping of what was evaluated; the numbers themselves
come from `rsrag.metrics`. They print nothing and write no files: the `rsrag eval` commands
(`rsrag.cli.eval`) do that.

May import: `rsrag.metrics`, `rsrag.config`, `rsrag.data`, `rsrag.encoders`, `rsrag.index`,
`rsrag.knowledge`, `rsrag.rag`, `rsrag.rerankers`, `rsrag.generators` and `rsrag.models`; never
`rsrag.cli` or `rsrag.service`. Nothing below imports this package: training code scores itself
with `rsrag.metrics`.
"""

from rsrag.encoders.prompts import LABEL_TEXT, TEMPLATES, class_text_embeddings, pretty_label
from rsrag.eval.retrieval import RetrievalEvaluator
from rsrag.eval.zeroshot import ZeroShotEvaluator

__all__ = [
    "RetrievalEvaluator",
    "ZeroShotEvaluator",
    "class_text_embeddings",
    "pretty_label",
    "TEMPLATES",
    "LABEL_TEXT",
]
