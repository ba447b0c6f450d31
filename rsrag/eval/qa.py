"""Knowledge-grounded QA evaluation on RSWK (`rsrag eval qa --dataset rswk`).

`evaluate_rswk`: a knowledge index is built from the RSWK records (`convert_rswk`, cached under
`<cache>/qa/`, keyed by the annotation files, the converter version and the encoder), attached to an
empty library. Each world-knowledge question gets its image reference replaced by the landmark's name
(`ground_question`), then goes through `rsrag.rag.ask` with the default configuration (RRF of dense +
BM25, cross-encoder re-ranking of the top candidates, extractive generator). Reported:

- `retrieval_r1` / `retrieval_r5`: the landmark's record is the first / among the first 5 distinct
  records of the re-ranked evidence; `retrieval_r1_no_rerank`: the same before re-ranking;
- `answer_em` / `answer_f1`: SQuAD-normalised exact match and token F1 against the gold answer;
- `per_type`: the same per question type; `category_accuracy`: the category of the top record against
  the classification file's label (the 16 categories only); `latency_ms` p50/p90 of `ask`.

Note on what this measures: the only knowledge that exists for RSWK landmarks is their annotations, so
the knowledge records are built from the same answers that are evaluated. The score therefore measures
finding the right landmark among 2,993 and the right fact (chunk type, span) within it - not world
knowledge. The extractive generator never sees the gold answer or the question's source line.

Ablation (same run, first `ablation_limit` questions): fusion (RRF, or weighted with alpha in
`ALPHAS`), BM25 on/off, re-ranker on/off. RSWK ships no landmark images, so for the weighted fusion's
image channel a stand-in is used: the text embedding of the landmark's name ("identity proxy"),
i.e. an ideal landmark recogniser; alpha = 0 is text only. This is stated in the output.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Sequence

from rsrag.config import cache_dir, data_root
from rsrag.metrics.qa import exact_match, token_f1
from rsrag.rerankers.base import Reranker

CONVERTER_VERSION = "rswk-v1"
ALPHAS = (0.0, 0.3, 0.5, 0.7)


# ---- the cached RSWK knowledge library -----------------------------------------------------------
def _rswk_key(root: Path, encoder_name: str) -> str:
    from rsrag.knowledge import rswk

    h = hashlib.sha1(f"{CONVERTER_VERSION}|{encoder_name}".encode())
    for rel in (rswk.WK_FILE, rswk.CLASS_FILE, *rswk.RSK_FILES, rswk.ENV_FILE, rswk.MINI_VQA, rswk.MINI_CLASS):
        path = root / rel
        if path.is_file():
            st = path.stat()
            h.update(f"{rel}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:10]


def rswk_library(
    root: Path | None = None,
    *,
    encoder: str | None = None,
    cache: Path | None = None,
    rebuild: bool = False,
    threads: int | None = 1,
    log: Callable[[str], None] = lambda m: None,
):
    """An empty library with the RSWK knowledge attached, built on first use and cached.
    `threads`: ONNX Runtime threads of the encoder (1 keeps a shared machine usable)."""
    from rsrag.encoders.registry import DEFAULT_ENCODER
    from rsrag.index import Library
    from rsrag.knowledge import KnowledgeBase, convert_rswk

    from rsrag.encoders import create_encoder

    root = Path(root or data_root() / "rswk")
    name = encoder or DEFAULT_ENCODER
    folder = Path(cache or cache_dir() / "qa") / f"rswk-{_rswk_key(root, name)}"
    done = folder / "rswk" / "knowledge" / ".complete"
    if rebuild and folder.exists():
        shutil.rmtree(folder)
    instance = create_encoder(name, threads=threads) if threads else create_encoder(name)
    if done.is_file():
        return Library.open(folder, "rswk", encoder=instance)
    t0 = time.perf_counter()
    records = convert_rswk(root)
    library = Library.create(folder, "rswk", encoder=instance, encoder_name=name, exist_ok=True)
    kb = KnowledgeBase.attach(library)
    report = kb.add(records)
    done.write_text(json.dumps({**report.to_dict(), "seconds": round(time.perf_counter() - t0, 1)}) + "\n")
    log(
        f"built RSWK knowledge index: {report.records} records, {report.chunks} chunks in "
        f"{time.perf_counter() - t0:.0f}s ({folder})"
    )
    return library


# ---- RSWK QA -------------------------------------------------------------------------------------
class CachedReranker(Reranker):
    """Wraps a reranker, remembering (query, passage) scores: the ablation re-scores the same pairs."""

    def __init__(self, base: Reranker) -> None:
        self.base, self.cache = base, {}
        self.name = getattr(base, "name", "reranker")

    def score(self, query: str, passages: Sequence[str]):
        import numpy as np

        todo = [p for p in dict.fromkeys(passages) if (query, p) not in self.cache]
        if todo:
            for p, s in zip(todo, self.base.score(query, todo)):
                self.cache[(query, p)] = float(s)
        return np.array([self.cache[(query, p)] for p in passages], np.float32)

    def forget(self) -> None:
        self.cache.clear()


def records_rank(evidence: Sequence[dict], record_id: str) -> int | None:
    """The rank (from 1) of a record among the distinct records of an answer's evidence, or None."""
    order = list(dict.fromkeys(e["record_id"] for e in evidence))
    return order.index(record_id) + 1 if record_id in order else None


def _summary(rows: list[dict]) -> dict:
    n = len(rows) or 1
    return {
        "n": len(rows),
        "r1": round(sum(r["r1"] for r in rows) / n, 4),
        "em": round(sum(r["em"] for r in rows) / n, 4),
        "f1": round(sum(r["f1"] for r in rows) / n, 4),
    }


def evaluate_rswk(
    limit: int | None = None,
    *,
    ablation_limit: int | None = 300,
    k: int = 5,
    root: Path | None = None,
    cache: Path | None = None,
    rebuild: bool = False,
    generator: str = "extractive",
    generator_config: dict | None = None,
    log: Callable[[str], None] = lambda m: None,
) -> dict:
    """Run the RSWK QA evaluation (module doc) and return the JSON-able result. With another
    `generator` (hf, openai) the answers come from it and the ablation (extractive) is skipped."""
    from rsrag.generators import create_generator
    from rsrag.generators.extractive import ExtractiveGenerator
    from rsrag.knowledge import KnowledgeBase, convert_rswk, load_qa_items
    from rsrag.knowledge.rswk import CATEGORIES
    from rsrag.rag import RetrievalConfig, ask
    from rsrag.rerankers import create_reranker

    root = Path(root or data_root() / "rswk")
    library = rswk_library(root, cache=cache, rebuild=rebuild, log=log)
    kb = KnowledgeBase.open(library)
    items = load_qa_items(root, limit=limit)
    records = convert_rswk(root)  # the same conversion the index was built from: ids and categories
    record_id = {r.name: r.id for r in records}
    category = {r.name: r.category for r in records}

    reranker = CachedReranker(create_reranker("cross-encoder"))
    config = RetrievalConfig()
    extractive = ExtractiveGenerator(reranker)
    answerer = extractive if generator == "extractive" else create_generator(generator, **(generator_config or {}))
    ask(library, "warm-up question about a landmark", reranker=reranker, generator=answerer)  # load models
    reranker.forget()

    rows, latencies = [], []
    t_start = time.perf_counter()
    for i, item in enumerate(items, start=1):
        question, gold_id = item.grounded, record_id[item.name]
        answer = ask(library, question, k=k, config=config, reranker=reranker, generator=answerer, abstain=False)
        latencies.append(answer.timings["total"])
        rank = records_rank(answer.evidence, gold_id)
        top = answer.evidence[0] if answer.evidence else {}
        fused_first = (answer.extra.get("fused_record_ids") or [None])[0]  # before re-ranking
        rows.append(
            {
                "name": item.name,
                "gold_id": gold_id,
                "qtype": item.qtype or "other",
                "question": question,
                "gold": item.answer,
                "prediction": answer.text,
                "rank": rank,
                "r1": float(rank == 1),
                "r5": float(rank is not None and rank <= 5),
                "r1_plain": float(fused_first == gold_id),
                "em": exact_match(answer.text, item.answer),
                "f1": token_f1(answer.text, item.answer),
                "top_category": top.get("category"),
                "gold_category": category.get(item.name),
                "timings": answer.timings,
            }
        )
        if i % 250 == 0:
            log(f"  {i}/{len(items)} questions, {time.perf_counter() - t_start:.0f}s")

    n = len(rows) or 1
    per_type = defaultdict(list)
    for row in rows:
        per_type[row["qtype"]].append(row)
    cat_rows = [r for r in rows if r["gold_category"] in CATEGORIES]
    result = {
        "dataset": "rswk",
        "n_questions": len(rows),
        "n_records": len(kb.records()),
        "n_chunks": len(kb),
        "retrieval_r1": round(sum(r["r1"] for r in rows) / n, 4),
        "retrieval_r5": round(sum(r["r5"] for r in rows) / n, 4),
        "retrieval_r1_no_rerank": round(sum(r["r1_plain"] for r in rows) / n, 4),
        "answer_em": round(sum(r["em"] for r in rows) / n, 4),
        "answer_f1": round(sum(r["f1"] for r in rows) / n, 4),
        "per_type": {t: _summary(v) for t, v in sorted(per_type.items())},
        "category_accuracy": round(
            sum(r["top_category"] == r["gold_category"] for r in cat_rows) / (len(cat_rows) or 1), 4
        ),
        "n_category_questions": len(cat_rows),
        "latency_ms": {
            "p50": round(statistics.median(latencies), 1) if latencies else None,
            "p90": round(statistics.quantiles(latencies, n=10)[-1], 1) if len(latencies) > 1 else None,
            "stages_p50": {
                s: round(statistics.median(r["timings"].get(s, 0.0) for r in rows), 1)
                for s in ("retrieve", "rerank", "generate")
            }
            if rows
            else {},
        },
        "config": {
            "fusion": config.fusion,
            "depth": config.depth,
            "rerank_top": config.rerank_top,
            "k": k,
            "reranker": getattr(reranker.base, "id", reranker.name),
            "generator": generator,
            "generator_config": {k_: str(v) for k_, v in (generator_config or {}).items() if k_ != "api_key"},
        },
    }
    result["rerank_gain_r1"] = round(result["retrieval_r1"] - result["retrieval_r1_no_rerank"], 4)
    abl_items = rows[: ablation_limit or len(rows)] if generator == "extractive" else []
    log(f"ablation over {len(abl_items)} questions ...")
    result["ablation"] = ablation(kb, abl_items, reranker, extractive, k=k) if abl_items else []
    result["ablation_note"] = (
        "weighted fusion: RSWK has no landmark images, so the image channel is an identity "
        "proxy (text embedding of the landmark name); alpha=0 is text only"
    )
    result["errors_sample"] = [
        {k_: r[k_] for k_ in ("question", "gold", "prediction", "rank")} for r in rows if r["f1"] < 0.5
    ][:10]
    return result


def ablation(kb, rows: list[dict], reranker, generator, k: int = 5) -> list[dict]:
    """R@1 and answer F1 over fusion x BM25 x re-ranker variants (module doc); candidate lists are
    retrieved once per question and re-fused per variant; cross-encoder scores are cached."""
    from rsrag.generators import GenerationRequest
    from rsrag.rag.prompt import PromptBuilder
    from rsrag.rag.retrieval import Candidate, KnowledgeRetriever, RetrievalConfig

    retriever = KnowledgeRetriever(kb, reranker)
    builder = PromptBuilder()
    variants = [("rrf", None)] + [("weighted", a) for a in ALPHAS]
    configs = [
        RetrievalConfig(fusion=f, alpha=a or 0.0, use_bm25=b, rerank=r)
        for f, a in variants
        for b in (True, False)
        for r in (True, False)
    ]
    scores = {i: {"r1": 0.0, "f1": 0.0} for i in range(len(configs))}
    encoder = kb.index.encoder
    qvecs = encoder.encode_texts([r["question"] for r in rows])
    nvecs = encoder.encode_texts([r["name"] for r in rows])
    base = RetrievalConfig()
    for row, qv, nv in zip(rows, qvecs, nvecs):
        lists, pool = retriever.candidate_lists(row["question"], None, base, question_vector=qv)
        lists["image"] = [(h.id, float(h.score)) for h in kb.search_dense(nv, base.depth)]
        for h in kb.search_dense(nv, base.depth):
            pool.setdefault(h.id, Candidate.from_hit(h))
        gold = row["gold_id"]
        for i, cfg in enumerate(configs):
            use = {
                name: v
                for name, v in lists.items()
                if (name != "bm25" or cfg.use_bm25) and (name != "image" or cfg.fusion == "weighted" and cfg.alpha > 0)
            }
            ranked = retriever.rerank(
                row["question"], retriever.fuse(use, pool, cfg), cfg, within_records="image" in use
            )
            cands = retriever.expand(row["question"], ranked[:k], cfg)
            evidence = [c.to_evidence() for c in cands]
            scores[i]["r1"] += float(bool(cands) and cands[0].record_id == gold)
            if evidence:
                prompt = builder.build("question", row["question"], evidence)
                text = generator.generate(GenerationRequest(row["question"], "question", evidence, prompt)).text
                scores[i]["f1"] += token_f1(text, row["gold"])
    n = len(rows) or 1
    return [
        {
            "fusion": c.fusion if c.fusion == "rrf" else f"weighted a={c.alpha}",
            "bm25": c.use_bm25,
            "rerank": c.rerank,
            "r1": round(scores[i]["r1"] / n, 4),
            "f1": round(scores[i]["f1"] / n, 4),
            "n": len(rows),
        }
        for i, c in enumerate(configs)
    ]
