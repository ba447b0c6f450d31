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
from typing import Sequence

METRIC_KEYS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider")
ALL_METRICS = ("bleu", "meteor", "rouge", "cider")


def _require_java() -> None:
    if shutil.which("java") is None:
        raise RuntimeError("the COCO caption toolkit's PTB tokenizer and METEOR need Java: install a JRE "
                           "(e.g. `apt-get install default-jre-headless`)")


def _tokenized(references: Sequence[Sequence[str]], hypotheses: Sequence[str], ptb: bool
               ) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    if ptb:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        _require_java()
        tok = PTBTokenizer()
        gts = tok.tokenize({i: [{"caption": c} for c in refs] for i, refs in enumerate(references)})
        res = tok.tokenize({i: [{"caption": h}] for i, h in enumerate(hypotheses)})
        return gts, res
    from rsrag.models.captioner.vocab import tokenize

    gts = {i: [" ".join(tokenize(c)) for c in refs] for i, refs in enumerate(references)}
    res = {i: [" ".join(tokenize(h))] for i, h in enumerate(hypotheses)}
    return gts, res


def score_captions(references: Sequence[Sequence[str]], hypotheses: Sequence[str],
                   metrics: Sequence[str] = ALL_METRICS, ptb: bool = True) -> dict[str, float]:
    """Corpus scores of one hypothesis per image against its references, keyed by `METRIC_KEYS`."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} reference sets")
    if not hypotheses:
        raise ValueError("nothing to score")
    unknown = set(metrics) - set(ALL_METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {ALL_METRICS}")
    gts, res = _tokenized(references, hypotheses, ptb)
    # the toolkit's METEOR wrapper hangs on an empty hypothesis line; a lone space is scored as empty
    res = {i: [h[0] if h[0].strip() else " "] for i, h in res.items()}
    out: dict[str, float] = {}
    with contextlib.redirect_stdout(io.StringIO()):  # the BLEU scorer prints its length statistics
        if "bleu" in metrics:
            from pycocoevalcap.bleu.bleu import Bleu

            scores, _ = Bleu(4).compute_score(gts, res)
            out.update({f"bleu{n}": float(s) for n, s in enumerate(scores, start=1)})
        if "meteor" in metrics:
            from pycocoevalcap.meteor.meteor import Meteor

            _require_java()
            scorer = Meteor()
            out["meteor"] = float(scorer.compute_score(gts, res)[0])
            del scorer  # its __del__ ends the Java process
        if "rouge" in metrics:
            from pycocoevalcap.rouge.rouge import Rouge

            out["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
        if "cider" in metrics:
            from pycocoevalcap.cider.cider import Cider

            out["cider"] = float(Cider().compute_score(gts, res)[0])
    return out


def evaluate_captioner(captioner, dataset: str, split: str = "test", *, beam_size: int = 3,
                       limit: int | None = None, examples: int = 5) -> dict:
    """Caption every image of a split (from cached trunk features) and score against its references."""
    from rsrag.models.captioner.training import load_split

    data = load_split(captioner.tower, (dataset,), split, limit)
    start = time.perf_counter()
    hyps = captioner.caption_many(captioner.tower.from_cache(data.trunk), beam_size=beam_size)
    caption_s = time.perf_counter() - start
    result = {"captioner": captioner.name, "dataset": dataset, "split": split, "beam_size": beam_size,
              "n_images": len(hyps), **score_captions(data.captions, hyps),
              "caption_seconds": round(caption_s, 1)}
    step = max(1, len(hyps) // max(1, examples))
    result["examples"] = [{"id": data.ids[i], "caption": hyps[i], "references": data.captions[i]}
                          for i in range(0, len(hyps), step)][:examples]
    return result
