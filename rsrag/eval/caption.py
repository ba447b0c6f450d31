"""Caption metrics exactly as the COCO caption toolkit computes them (pycocoevalcap).

BLEU-1..4 (corpus level, "closest" reference length), METEOR 1.5, ROUGE-L and CIDEr-D on the
toolkit's scale (x10 inside its formula, so good RSICD models score about 0.9-1.0 and a perfect copy
of the consensus scores several units). References and hypotheses go through the toolkit's PTB
tokenizer (lower-case, punctuation dropped); the PTB tokenizer and METEOR run on Java.
`ptb=False` swaps the tokenizer for a pure-Python one (`vocab.tokenize`), used for fast model
selection during training.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import time
from collections.abc import Sequence

METRIC_KEYS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider")
ALL_METRICS = ("bleu", "meteor", "rouge", "cider")


def _require_java() -> None:
    if shutil.which("java") is None:
        raise RuntimeError("the COCO caption toolkit's PTB tokenizer and METEOR need Java: install a JRE "
                           "(e.g. `apt-get install default-jre-headless`)")


def _tokenized(references: Sequence[Sequence[str]], hypothesis_sets: dict[str, Sequence[str]], ptb: bool
               ) -> tuple[dict[int, list[str]], dict[str, dict[int, list[str]]]]:
    """Tokenised references and hypothesis sets; one PTB tokenizer run for each (the JVM start dominates)."""
    if ptb:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        _require_java()
        tok = PTBTokenizer()
        gts = tok.tokenize({i: [{"caption": c} for c in refs] for i, refs in enumerate(references)})
        flat = tok.tokenize({(name, i): [{"caption": h}] for name, hyps in hypothesis_sets.items()
                             for i, h in enumerate(hyps)})
        return gts, {name: {i: flat[(name, i)] for i in range(len(hyps))} for name, hyps in hypothesis_sets.items()}
    from rsrag.models.captioner.vocab import tokenize

    gts = {i: [" ".join(tokenize(c)) for c in refs] for i, refs in enumerate(references)}
    return gts, {name: {i: [" ".join(tokenize(h))] for i, h in enumerate(hyps)} for name, hyps in hypothesis_sets.items()}


def score_caption_sets(references: Sequence[Sequence[str]], hypothesis_sets: dict[str, Sequence[str]],
                       metrics: Sequence[str] = ALL_METRICS, ptb: bool = True) -> dict[str, dict[str, float]]:
    """`score_captions` for several systems' hypotheses against the same references, sharing the Java
    tokenizer and METEOR processes."""
    for name, hyps in hypothesis_sets.items():
        if len(references) != len(hyps):
            raise ValueError(f"{len(hyps)} hypotheses ({name}) for {len(references)} reference sets")
    if not references:
        raise ValueError("nothing to score")
    unknown = set(metrics) - set(ALL_METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {ALL_METRICS}")
    gts, tokenized = _tokenized(references, hypothesis_sets, ptb)
    meteor = None
    if "meteor" in metrics:
        from pycocoevalcap.meteor.meteor import Meteor

        _require_java()
        meteor = Meteor()
    results = {}
    for name, res in tokenized.items():
        # the toolkit's METEOR wrapper hangs on an empty hypothesis line; a lone space is scored as empty
        res = {i: [h[0] if h[0].strip() else " "] for i, h in res.items()}
        out: dict[str, float] = {}
        with contextlib.redirect_stdout(io.StringIO()):  # the BLEU scorer prints its length statistics
            if "bleu" in metrics:
                from pycocoevalcap.bleu.bleu import Bleu

                scores, _ = Bleu(4).compute_score(gts, res)
                out.update({f"bleu{n}": float(s) for n, s in enumerate(scores, start=1)})
            if meteor is not None:
                out["meteor"] = float(meteor.compute_score(gts, res)[0])
            if "rouge" in metrics:
                from pycocoevalcap.rouge.rouge import Rouge

                out["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
            if "cider" in metrics:
                from pycocoevalcap.cider.cider import Cider

                out["cider"] = float(Cider().compute_score(gts, res)[0])
        results[name] = out
    del meteor  # its __del__ ends the Java process
    return results


def score_captions(references: Sequence[Sequence[str]], hypotheses: Sequence[str],
                   metrics: Sequence[str] = ALL_METRICS, ptb: bool = True) -> dict[str, float]:
    """Corpus scores of one hypothesis per image against its references, keyed by `METRIC_KEYS`."""
    return score_caption_sets(references, {"hypotheses": hypotheses}, metrics, ptb)["hypotheses"]


def evaluate_captioners(captioners: Sequence, dataset: str, split: str = "test", *,
                        beam_sizes: Sequence[int] = (3,), limit: int | None = None, examples: int = 5) -> list[dict]:
    """Caption every image of a split (from cached trunk features) with each captioner and beam size,
    and score all of them against the references in one toolkit run. One result dict per pair."""
    from rsrag.models.captioner.training import load_split

    data = load_split(captioners[0].tower, (dataset,), split, limit)
    runs = []
    for captioner in captioners:
        feats = captioner.tower.from_cache(data.trunk)
        for beam in beam_sizes:
            start = time.perf_counter()
            hyps = captioner.caption_many(feats, beam_size=beam)
            runs.append((captioner.name, beam, hyps, time.perf_counter() - start))
    scores = score_caption_sets(data.captions, {f"{name}@{beam}": hyps for name, beam, hyps, _ in runs})
    step = max(1, len(data.ids) // max(1, examples))
    shown = list(range(0, len(data.ids), step))[:examples]
    return [{"captioner": name, "dataset": dataset, "split": split, "beam_size": beam, "n_images": len(hyps),
             **scores[f"{name}@{beam}"], "caption_seconds": round(seconds, 1),
             "examples": [{"id": data.ids[i], "caption": hyps[i], "references": data.captions[i]} for i in shown]}
            for name, beam, hyps, seconds in runs]


def evaluate_captioner(captioner, dataset: str, split: str = "test", *, beam_size: int = 3,
                       limit: int | None = None, examples: int = 5) -> dict:
    """`evaluate_captioners` for one captioner and beam size."""
    return evaluate_captioners([captioner], dataset, split, beam_sizes=(beam_size,), limit=limit,
                               examples=examples)[0]
