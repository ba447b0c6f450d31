"""Two-turn dialogues over RSWK (`rsrag eval dialogue`): does a follow-up find the landmark of turn 1?

Turn 1 names a landmark (its RSWK question, grounded with the name); turn 2 asks another fact "about
it": the question of another landmark, of another type, with its image reference replaced by "it"
("When was it built?"). The target of turn 2 is turn 1's landmark. Measured: turn-2 landmark R@1 (the
landmark's record first among the re-ranked evidence) in three ways, same dialogues, same run:

- `plain`: turn 2 asked with the history in the prompt only (what rsrag did before);
- `history`: the stateless API with a plain history: the follow-up is resolved against the landmark the
  last self-contained user turn retrieves (`Answerer.history_focus`);
- `conversation`: a `Conversation` (service `conversation_id`, `rsrag chat`): resolved against the names
  turn 1's answer cited.

Turn 1's own R@1 is reported too (turn 2 cannot do better than finding turn 1's landmark).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Callable

from rsrag.config import data_root
from rsrag.eval.qa import CachedReranker, records_rank, rswk_library


def dialogues(items: list, n: int, seed: int = 0) -> list[tuple]:
    """(turn-1 item, turn-2 question) pairs: turn 2 is another type's question about "it"."""
    from rsrag.knowledge.questions import ground_question

    rng = random.Random(seed)
    chosen = rng.sample(items, min(n, len(items)))
    out = []
    for item in chosen:
        others = [o for o in items if o.qtype and o.qtype != item.qtype and o.name != item.name]
        other = rng.choice(others)
        out.append((item, ground_question(other.question, "it")))
    return out


def evaluate_dialogues(limit: int = 300, *, seed: int = 0, k: int = 5, root: Path | None = None,
                       log: Callable[[str], None] = lambda m: None) -> dict:
    from rsrag.knowledge import convert_rswk, load_qa_items
    from rsrag.rag import AskOptions, Conversation, answerer_for
    from rsrag.rerankers import create_reranker

    root = Path(root or data_root() / "rswk")
    library = rswk_library(root, log=log)
    items = load_qa_items(root)
    record_id = {r.name: r.id for r in convert_rswk(root)}
    reranker = CachedReranker(create_reranker("cross-encoder"))
    answerer = answerer_for(library)
    base = AskOptions(k=k, reranker=reranker)
    counts = {"turn1": 0.0, "plain": 0.0, "history": 0.0, "conversation": 0.0}
    examples = []
    pairs = dialogues(items, limit, seed)
    t0 = time.perf_counter()
    for i, (first, follow_up) in enumerate(pairs, start=1):
        gold = record_id[first.name]
        conversation = Conversation()
        turn1 = conversation.ask(library, first.grounded, options=base)
        counts["turn1"] += records_rank(turn1.evidence, gold) == 1
        history = [{"role": "user", "content": first.grounded}, {"role": "assistant", "content": turn1.text}]
        plain = answerer.answer(follow_up, None, AskOptions(k=k, reranker=reranker, history=history,
                                                            resolve_followups=False))
        stateless = answerer.answer(follow_up, None, AskOptions(k=k, reranker=reranker, history=history))
        kept = conversation.ask(library, follow_up, options=base)
        for key, answer in (("plain", plain), ("history", stateless), ("conversation", kept)):
            counts[key] += records_rank(answer.evidence, gold) == 1
        if len(examples) < 5:
            examples.append({"turn1": first.grounded, "turn2": follow_up,
                             "resolved": kept.extra.get("resolved_question"), "gold": first.name,
                             "plain_top": (plain.evidence[0]["name"] if plain.evidence else None)})
        if i % 50 == 0:
            log(f"  {i}/{len(pairs)} dialogues, {time.perf_counter() - t0:.0f}s")
    n = len(pairs) or 1
    return {"dialogues": len(pairs), "seed": seed,
            "turn1_r1": round(counts["turn1"] / n, 4),
            "turn2_r1": {key: round(counts[key] / n, 4) for key in ("plain", "history", "conversation")},
            "examples": examples, "seconds": round(time.perf_counter() - t0, 1)}
