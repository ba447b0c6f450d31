"""Prompt builder: numbered context chunks with their source ids, a token budget, task templates and
multi-turn history, as chat messages any generator can use.

Budget rule: the instructions and the question are always kept. History gets at most `history_share`
of what is left (most recent turns first, whole turns only); the context chunks get the rest, in rank
order, the last one cut to fit when at least `min_chunk_tokens` remain, the ones after it dropped.
Evidence items are `rsrag.generators.Evidence` (mappings of the same keys are accepted); the prompt
shows an item's `passage` when it has one, else its `text`. Token counts come from `count_tokens` (default: a word-piece estimate, ~1.3 tokens per word, so no
tokenizer is needed; a generator can pass its own tokenizer's counter).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from rsrag.generators import Evidence, as_evidence

TASKS = ("question", "vqa", "caption", "classify")
SYSTEM = (
    "You are a remote-sensing assistant. Answer from the numbered context only; cite the numbers "
    "of the context items you use, like [1]. If the context does not contain the answer, say so."
)
TEMPLATES = {
    "question": "Question: {question}\nAnswer briefly, citing the context numbers.",
    "vqa": "The question is about the remote-sensing image the context was retrieved for.\n"
    "Question: {question}\nAnswer with a short phrase, citing the context numbers.",
    "caption": "Write one sentence describing the remote-sensing image the context was retrieved for.{question_line}",
    "classify": "Which one of these classes does the remote-sensing image show: {labels}?{question_line}\n"
    "Answer with the class name only.",
}
_TOKEN = re.compile(r"\w+|[^\w\s]")


def estimate_tokens(text: str) -> int:
    """Sub-word token estimate: words and punctuation, long words counted as more than one."""
    return sum(1 + len(t) // 7 for t in _TOKEN.findall(text))


@dataclass
class Prompt:
    messages: list[dict]  # [{"role": "system"|"user"|"assistant", "content": str}]
    evidence_ids: list[str]  # ids of the context chunks that made it in, numbered from 1
    tokens: int
    truncated: bool = False  # a chunk was cut or dropped, or history was dropped
    dropped_history: int = 0

    def text(self) -> str:
        """The messages as one plain string (for models without a chat template)."""
        return "\n\n".join(f"{m['role'].upper()}: {m['content']}" for m in self.messages) + "\n\nASSISTANT:"


@dataclass
class PromptBuilder:
    """See module doc."""

    budget: int = 1024
    history_share: float = 0.25
    min_chunk_tokens: int = 16
    count_tokens: Callable[[str], int] = estimate_tokens
    system: str = SYSTEM
    templates: dict = field(default_factory=lambda: dict(TEMPLATES))

    def build(
        self,
        task: str = "question",
        question: str | None = None,
        evidence: Sequence[Evidence | Mapping[str, Any]] = (),
        history: Sequence[dict] | None = None,
        labels: Sequence[str] | None = None,
    ) -> Prompt:
        if task not in self.templates:
            raise ValueError(f"unknown task {task!r}; choose one of {', '.join(self.templates)}")
        if task == "classify" and not labels:
            raise ValueError("the classify task needs a label set")
        if task in ("question", "vqa") and not question:
            raise ValueError(f"the {task} task needs a question")
        instruction = self.templates[task].format(
            question=question or "",
            labels=", ".join(labels or []),
            question_line=f"\nQuestion: {question}" if question else "",
        )
        fixed = self.count_tokens(self.system) + self.count_tokens(instruction) + 8
        left = max(self.budget - fixed, 0)

        kept_history: list[dict] = []
        hist_budget = int(left * self.history_share)
        turns = [h for h in (history or []) if h.get("content")]
        for turn in reversed(turns):
            cost = self.count_tokens(str(turn["content"])) + 4
            if cost > hist_budget:
                break
            kept_history.insert(0, {"role": turn.get("role", "user"), "content": str(turn["content"])})
            hist_budget -= cost
            left -= cost
        dropped = len(turns) - len(kept_history)

        lines, ids, truncated = [], [], dropped > 0
        for n, item in enumerate(as_evidence(evidence), start=1):
            head = f"[{n}] ({item.id}) "
            body = item.passage or item.text
            cost = self.count_tokens(head + body) + 1
            if cost <= left:
                lines.append(head + body)
                ids.append(item.id)
                left -= cost
                continue
            truncated = True
            room = left - self.count_tokens(head) - 2
            if room >= self.min_chunk_tokens:
                lines.append(head + self._cut(body, room) + " ...")
                ids.append(item.id)
            break
        context = "Context:\n" + ("\n".join(lines) if lines else "(no context found)")
        messages = [
            {"role": "system", "content": self.system},
            *kept_history,
            {"role": "user", "content": f"{context}\n\n{instruction}"},
        ]
        tokens = sum(self.count_tokens(m["content"]) for m in messages)
        return Prompt(messages, ids, tokens, truncated, dropped)

    def _cut(self, text: str, tokens: int) -> str:
        """The longest word prefix of `text` within `tokens` tokens (binary search on words)."""
        words = text.split()
        lo, hi = 0, len(words)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.count_tokens(" ".join(words[:mid])) <= tokens:
                lo = mid
            else:
                hi = mid - 1
        return " ".join(words[:lo])
