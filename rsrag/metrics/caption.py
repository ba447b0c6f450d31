"""Caption metrics exactly as the COCO caption toolkit computes them (pycocoevalcap).

BLEU-1..4 (corpus level, "closest" reference length), METEOR 1.5, ROUGE-L and CIDEr-D on the
toolkit's scale (x10 inside its formula, so good RSICD models score about 0.9-1.0 and a perfect copy
of the consensus scores several units). References and hypotheses go through the toolkit's PTB
tokenizer (lower-case, punctuation dropped); the PTB tokenizer and METEOR run on Java.
`ptb=False` swaps the tokenizer for a pure-Python one (`words`, which is also the captioner
vocabulary's word rule), used for fast model selection during training.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from collections.abc import Sequence

METRIC_KEYS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider")
ALL_METRICS = ("bleu", "meteor", "rouge", "cider")
_WORD = re.compile(r"[a-z]+")


def words(text: str) -> list[str]:
    """Lower-case alphabetic words; punctuation and digits carry nothing in these captions."""
    return _WORD.findall(text.lower())


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
    gts = {i: [" ".join(words(c)) for c in refs] for i, refs in enumerate(references)}
    return gts, {name: {i: [" ".join(words(h))] for i, h in enumerate(hyps)} for name, hyps in hypothesis_sets.items()}


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
