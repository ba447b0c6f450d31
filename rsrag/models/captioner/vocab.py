"""Word-level vocabulary built from the training captions.

Remote-sensing captions use a small, repetitive vocabulary (about 1,300 words occur four or more
times in RSICD + UCM train), so whole words beat sub-word pieces here: shorter sequences, and every
output token is a word the metrics count. Rare words map to `<unk>`, which is never generated.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rsrag.metrics.caption import words as tokenize  # the same word rule as the fast caption scoring

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)


@dataclass(frozen=True)
class Vocab:
    """Token strings in id order; ids 0..3 are the specials."""

    words: tuple[str, ...]

    def __post_init__(self) -> None:
        if tuple(self.words[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}")
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.words)})

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 4) -> Vocab:
        """Words seen at least `min_count` times, most frequent first (ties alphabetical)."""
        counts = Counter(w for c in captions for w in tokenize(c))
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls(SPECIALS + tuple(kept))

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str, max_len: int) -> list[int]:
        """`<bos> words <eos>`, cut to `max_len` ids (the cut keeps `<eos>` last)."""
        ids = [self._index.get(w, self.unk_id) for w in tokenize(text)][: max_len - 2]
        return [self.bos_id, *ids, self.eos_id]

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> a sentence, stopping at `<eos>`; specials are dropped."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i >= len(SPECIALS):
                words.append(self.words[i])
        return " ".join(words)
