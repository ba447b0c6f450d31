"""Change sentences in people's style: frames mined from the LEVIR-MCI change captions, filled with
the detected before/after land covers and where the change is.

No images come with the LEVIR-MCI captions, so no sentence model can be trained on pixels; the corpus
is used for what it does hold, how people phrase change. Each train-split sentence that names land
covers of the corpus vocabulary (`WORDS`: houses, roads, bareland, trees, ...) becomes a frame with
slots: the cover that was there (`{before}`), the one that came (`{after}`) and the place phrase
(`{where}`: "at the top left corner"). Which mention is which follows the verb ("X is replaced by Y",
"Y are built on the X", "the X are removed"). Frames are counted; generation takes the most frequent
frame that fits what was detected (both covers, only a new one, only a lost one; with or without a
place), rotating through the top few so a list of regions does not repeat one sentence, and fills it
with the corpus word for each detected concept (`CONCEPT_WORDS`; a concept the corpus never names is
used as it is). Nothing changed: the corpus's most frequent no-change sentence ("there is no
difference").
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

# corpus words by land cover; the first of each list is what a detected concept is written as
WORDS: dict[str, tuple[str, ...]] = {
    "houses": ("houses", "buildings", "villas", "house", "building", "villa", "residential area"),
    "roads": ("roads", "road", "path"),
    "bareland": ("bareland", "desert", "wasteland", "open space"),
    "trees": ("trees", "woods", "forest", "vegetation", "plants", "grass", "meadow", "grassland"),
    "parking lot": ("parking lot",),
}
# detected concept -> the corpus word that says it (others are written as the concept text)
CONCEPT_WORDS: dict[str, str] = {
    "dense residential": "houses", "medium residential": "houses", "sparse residential": "houses",
    "sparse houses and green land": "houses", "buildings": "buildings", "town": "buildings",
    "mobile home park": "houses", "industrial area": "buildings", "industrial": "buildings",
    "commercial area": "buildings", "construction site": "bareland", "bare land": "bareland", "desert": "desert",
    "forest": "trees", "park": "trees", "meadow": "grass", "road": "roads", "parking lot": "parking lot",
}
NO_CHANGE = "there is no difference"
PLACE = re.compile(r"\b(?:at|in|on|to) the (?:(?:top|bottom|upper|lower|left|right|middle|center|centre)"
                   r"(?:[ -](?:left|right))?)(?: (?:corner|side|part|area|edge))?(?: of the (?:scene|image|picture))?")
_AFTER_VERBS = re.compile(r"\b(appears?|appeared|built|constructed|show up|shows up|emerges?|added|grow|grows|"
                          r"are covered|replace|replaces)\b")
_BEFORE_VERBS = re.compile(r"\b(removed|disappears?|disappeared|cleared|demolished|destroyed|gone)\b")
_ON = re.compile(r"\b(?:on|in|into|over)(?: the)? $")  # the cover a new thing stands on is what was there
_COUNTING = re.compile(r"\b(?:a|an|one|two|three|four|five|several|many|rows? of)\b")
_EXTRA = re.compile(r"\b(?:and|with|while|cars?|parked|crossroads?|track|turning|street|blocks|bridge|pool|lake)\b")
# the words a frame may hold besides its slots: a frame with any other word says something nobody detected
_FRAME_WORDS = set("""the a an some many several two three few lots of new large small big more most part parts
is are has have been be was were being appear appears appeared built constructed replaced by removed disappear
disappears disappeared cleared demolished on in into over at up show shows emerge emerges become becomes turned
changed converted instead original former all whole area areas""".split())
_REPLACED = re.compile(r"\b(replaced by|turned into|becomes?|become|changed into|converted into)\b")


def _slot_pattern() -> re.Pattern:
    words = sorted({w for ws in WORDS.values() for w in ws}, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b")


_SLOT = _slot_pattern()


def _plural(word: str) -> bool:
    return word.endswith("s") and not word.endswith(("ss", "is"))


@dataclass(frozen=True)
class Frame:
    """A mined sentence with slots; `kind` is "transition", "appear" or "disappear"."""

    text: str  # e.g. "many {after} are built on the {before} {where}"
    kind: str
    plural: bool  # whether the cover in the subject slot was plural in the corpus
    count: int = 0


def frame_of(sentence: str) -> Frame | None:
    """The frame of one corpus sentence, or None when it names no cover or its roles are unclear."""
    found = list(_SLOT.finditer(sentence))
    if not found or len(found) > 2:
        return None
    place = bool(PLACE.search(sentence))
    text = PLACE.sub("{where}", sentence, count=1) if place else sentence
    found = list(_SLOT.finditer(text))
    if len(found) != len(list(_SLOT.finditer(sentence))):
        return None
    first, second = found[0], found[1] if len(found) > 1 else None
    if second is not None:
        replaced, built = _REPLACED.search(text), _AFTER_VERBS.search(text)
        if replaced and first.end() <= replaced.start() < second.start():
            roles, kind = ("before", "after"), "transition"
        elif built and first.end() <= built.start() < second.start() and _ON.search(text[:second.start()]):
            roles, kind = ("after", "before"), "transition"  # "houses are built on the bareland"
        else:
            return None  # "along the road", "with many trees": a landmark, not what was there
        if WORDS_OF.get(first[1]) == WORDS_OF.get(second[1]):
            return None
        spans = [(first, roles[0]), (second, roles[1])]
    elif _BEFORE_VERBS.search(text):
        spans, kind = [(first, "before")], "disappear"
    elif _AFTER_VERBS.search(text):
        spans, kind = [(first, "after")], "appear"
    else:
        return None
    if _EXTRA.search(text) or set(re.findall(r"[a-z]+", PLACE.sub(" ", text.replace("{where}", " ")))) - \
            set(WORDS_OF) - _FRAME_WORDS - {w for ws in WORDS.values() for p in ws for w in p.split()}:
        return None  # a second clause or a thing nobody detected ("and a crossroad", "cars are parked")
    out = text
    for match, role in sorted(spans, key=lambda s: -s[0].start()):
        out = out[:match.start()] + "{" + role + "}" + out[match.end():]
    subject = found[0][1]
    return Frame(" ".join(out.split()), kind, _plural(subject))


WORDS_OF = {w: cover for cover, ws in WORDS.items() for w in ws}


@dataclass
class ChangeCaptioner:
    """Writes change sentences from frames mined out of a change-caption corpus (module doc)."""

    frames: list[Frame] = field(default_factory=list)
    no_change: str = NO_CHANGE
    top: int = 4  # rotate over this many best frames of a kind

    @classmethod
    def from_corpus(cls, path: str | Path, split: str = "train", min_count: int = 2) -> "ChangeCaptioner":
        counts: Counter = Counter()
        sentences: Counter = Counter()
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                if split and row.get("split") != split:
                    continue
                for sentence in row.get("captions", []):
                    sentence = " ".join(str(sentence).lower().split())
                    sentences[sentence] += 1
                    frame = frame_of(sentence)
                    if frame is not None:
                        counts[frame] += 1
        if not sentences:
            raise ValueError(f"{path}: no {split} captions")
        frames = [Frame(f.text, f.kind, f.plural, n) for f, n in counts.most_common() if n >= min_count]
        unnamed = [s for s, _ in sentences.most_common(50) if not _SLOT.search(s)]
        return cls(frames, unnamed[0] if unnamed else NO_CHANGE)

    def word(self, concept: str) -> str:
        return CONCEPT_WORDS.get(concept, concept)

    def sentence(self, before: str | None, after: str | None, where: str | None = None, variant: int = 0) -> str:
        """One sentence: `before`/`after` concepts (None when only one side is known or they are the
        same), `where` a place such as "top left" (None: the whole area)."""
        if before and after and self.word(before) == self.word(after):
            return f"the {self.word(after)} {('change' if _plural(self.word(after)) else 'changes')}" + \
                (f" at the {where}" if where else "")
        kind = "transition" if before and after else ("appear" if after else "disappear")
        if not before and not after:
            return self.no_change
        fillers = {"{before}": self.word(before) if before else "", "{after}": self.word(after) if after else ""}

        def fits_grammar(frame: Frame) -> bool:
            """The frame's subject (its first slot) agrees in number with what fills it, and a mass noun
            ("bareland") never follows "a" / "two" / "many"."""
            first = min((s for s in fillers if s in frame.text), key=frame.text.index)
            word = fillers[first]
            if frame.plural != _plural(word):
                return False
            return not any(slot in frame.text and not _plural(filler)
                           and _COUNTING.search(" ".join(frame.text.split(slot)[0].split()[-2:]))
                           for slot, filler in fillers.items())

        fits = [f for f in self.frames if f.kind == kind and ("{where}" in f.text) == bool(where) and fits_grammar(f)]
        fits = fits or [f for f in self.frames if f.kind == kind and fits_grammar(f)]
        if not fits:
            text = {"transition": "the {before} is replaced by {after} {where}", "appear": "{after} appear {where}",
                    "disappear": "the {before} disappear {where}"}[kind]
        else:
            text = fits[variant % min(self.top, len(fits))].text
        place = f"at the {where}" + (" corner" if where and " " in where else "") if where else ""
        if where and "{where}" not in text:
            text += " {where}"
        out = text.format(before=self.word(before) if before else "", after=self.word(after) if after else "",
                          where=place)
        return " ".join(out.split())


@lru_cache(maxsize=2)
def default_captioner(path: str | None = None) -> ChangeCaptioner:
    """The captioner mined from `$RSRAG_DATA/change/levir_mci_captions.jsonl` (train split); without the
    corpus, a captioner with the built-in fallback frames only."""
    from rsrag.config import data_root

    corpus = Path(path) if path else data_root() / "change" / "levir_mci_captions.jsonl"
    if not corpus.is_file():
        return ChangeCaptioner()
    return ChangeCaptioner.from_corpus(corpus)


def describe_region(region: Any, captioner: ChangeCaptioner | None = None) -> str:
    """The sentence for one `ChangeRegion`."""
    captioner = captioner or default_captioner()
    return captioner.sentence(region.before, region.after, region.position or None, variant=region.rank - 1)


def describe_map(change: Any, captioner: ChangeCaptioner | None = None, most: int = 2) -> str:
    """The sentence for a whole pair: the no-change sentence, or its `most` strongest regions' sentences."""
    captioner = captioner or default_captioner()
    if not change.regions:
        return captioner.no_change
    return " and ".join(describe_region(r, captioner) for r in change.regions[:most])


def describe_transitions(transitions: Sequence[tuple[str, str, str | None]],
                         captioner: ChangeCaptioner | None = None) -> list[str]:
    """Sentences for (before, after, where) triples."""
    captioner = captioner or default_captioner()
    return [captioner.sentence(b, a, w, variant=i) for i, (b, a, w) in enumerate(transitions)]
