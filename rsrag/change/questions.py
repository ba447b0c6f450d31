"""Questions about change over an indexed series, answered from change maps, citing chips and dates.

"What changed between 2009 and 2020?", "Where?", "How much area?", "When did it start?", "And region 2?"
The dates come from the question, else from the conversation so far (the last two dates named in it),
else the series' first and last; a follow-up naming "region N" (or "it", "there") keeps to that region.
Answers are built from `detect_dates` (regions, areas, transitions, sentences) and, for "when", from
the change maps of consecutive dates over the region: the first step whose windows there pass the
threshold. Every answer cites the chips it rests on (ids of both dates) and the dates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from rsrag.change.detect import ChangeMap, ChangeOptions
from rsrag.change.series import detect_dates, series_dates

_STRONG = re.compile(r"\b(chang\w*|difference|appear\w*|disappear\w*|cleared|clearing|how much area|"
                     r"when did (?:it|the change|region \d+) start)\b", re.I)
_WEAK = re.compile(r"\b(new|built|grew|grown|growth|became|become|turned|lost|gained|since)\b", re.I)
_FOLLOW_UP = re.compile(r"^\s*(and\b|where|how much|when|what about|which)", re.I)
_DATE = re.compile(r"\b((?:19[5-9]\d|20\d\d)(?:-\d\d(?:-\d\d)?)?)\b")
_REGION = re.compile(r"\bregion\s*#?\s*(\d+)\b", re.I)
_ANSWERED = re.compile(r"^(Between \d{4}-\d\d-\d\d and \d{4}-\d\d-\d\d|There is no region|"
                       r"(Region \d+|The change) started between)")


def is_change_question(question: str, history: Sequence[dict] = ()) -> bool:
    """Whether a question asks about change over time: a change word ("changed", "appeared",
    "cleared"), a weaker one ("new", "built") with a date, two dates, or a follow-up ("and region 2?",
    "how much area?") right after a change answer."""
    dates = len(_DATE.findall(question))
    if _STRONG.search(question) or dates >= 2 or (dates and _WEAK.search(question)):
        return True
    last = next((str(t.get("content", "")) for t in reversed(history) if t.get("role") == "assistant"), "")
    return bool(_ANSWERED.search(last)) and bool(_FOLLOW_UP.search(question) or _REGION.search(question))


@dataclass
class ChangeAnswer:
    text: str
    citations: list[dict] = field(default_factory=list)
    context: dict = field(default_factory=dict)  # dates and region in focus, for the next turn


def _dates(question: str, history: Sequence[dict], library: Any) -> tuple[str, str]:
    found = _DATE.findall(question)
    if len(found) < 2:
        earlier = [d for turn in history for d in _DATE.findall(str(turn.get("content", "")))]
        found = (earlier + found)[-2:] if len(earlier + found) >= 2 else found
    scenes = series_dates(library)
    if len(found) >= 2:
        return found[-2], found[-1]
    if len(found) == 1:
        return scenes[0].datetime[:10], found[0]
    return scenes[0].datetime[:10], scenes[-1].datetime[:10]


def _region(question: str, history: Sequence[dict]) -> int | None:
    match = _REGION.search(question)
    if match:
        return int(match[1])
    if re.search(r"\b(it|there|that)\b", question, re.I):
        for turn in reversed(history):
            match = _REGION.search(str(turn.get("content", "")))
            if match:
                return int(match[1])
    return None


def _cite(change: ChangeMap, windows: Sequence[int]) -> list[dict]:
    if not change.chip_ids:
        return []
    return [{"before_id": change.chip_ids[0][i], "after_id": change.chip_ids[1][i], "before_date": change.dates[0][:10],
             "after_date": change.dates[1][:10], "score": round(float(change.scores[i]), 3)}
            for i in sorted(windows, key=lambda i: -float(np.nan_to_num(change.scores[i])))[:5]]


def answer_change_question(library: Any, question: str, history: Sequence[dict] = (),
                           options: ChangeOptions = ChangeOptions()) -> ChangeAnswer:
    """Answer one change question about the library's series (module doc)."""
    before, after = _dates(question, history, library)
    change = detect_dates(library, before, after, options=options)
    d0, d1 = change.dates[0][:10], change.dates[1][:10]
    focus = _region(question, history)
    regions = change.regions
    if focus is not None:
        regions = [r for r in regions if r.rank == focus]
        if not regions:
            return ChangeAnswer(f"There is no region {focus} between {d0} and {d1}; "
                                f"{len(change.regions)} regions changed.", [], {"dates": [d0, d1]})
    windows = sorted({i for r in regions for i in r.chips})
    context = {"dates": [d0, d1], "region": focus}
    lowered = question.lower()
    if not change.regions:
        return ChangeAnswer(f"Between {d0} and {d1}: {change.sentence} (no location passes the calibrated "
                            f"threshold; {change.summary()['scored']} chips compared).", [], context)
    if "when" in lowered:
        return _when(library, change, windows, focus, options, context)
    if "how much" in lowered or "area" in lowered or "hectare" in lowered:
        parts = [f"region {r.rank}: {r.area_m2 / 1e4:.2f} ha ({r.transition})" for r in regions if r.area_m2]
        total = sum(r.area_m2 or 0.0 for r in regions) / 1e4
        text = f"Between {d0} and {d1}, {total:.2f} ha changed" + (": " + "; ".join(parts) if parts else "") + "."
        return ChangeAnswer(text, _cite(change, windows), context)
    if "where" in lowered:
        parts = []
        for r in regions:
            (minx, miny, maxx, maxy) = r.bounds
            parts.append(f"region {r.rank} at the {r.position} ({r.transition}, bounds {minx:.0f},{miny:.0f},"
                         f"{maxx:.0f},{maxy:.0f})")
        return ChangeAnswer(f"Between {d0} and {d1}: " + "; ".join(parts) + ".", _cite(change, windows), context)
    parts = [f"region {r.rank} ({r.position}): {r.transition}, {r.sentence}" for r in regions[:5]]
    text = f"Between {d0} and {d1}: {change.sentence if focus is None else regions[0].sentence}. " + "; ".join(parts) + "."
    return ChangeAnswer(text, _cite(change, windows), context)


def _when(library: Any, change: ChangeMap, windows: Sequence[int], focus: int | None, options: ChangeOptions,
          context: dict) -> ChangeAnswer:
    """The first consecutive pair of dates whose map passes the threshold over the changed windows."""
    scenes = [s for s in series_dates(library) if change.dates[0] <= s.datetime <= change.dates[1]]
    ids = {change.chip_ids[0][i] for i in windows} if change.chip_ids else set()
    cells = {cid.split(":", 1)[1] for cid in ids}  # the chip position part of the id (scale, row, col)
    for first, second in zip(scenes, scenes[1:]):
        step = detect_dates(library, first.datetime[:10], second.datetime[:10], options=options)
        hit = [i for i in range(len(step.windows)) if step.changed[i] and step.chip_ids
               and step.chip_ids[0][i].split(":", 1)[1] in cells]
        if hit:
            what = f"region {focus}" if focus is not None else "the change"
            return ChangeAnswer(f"{what.capitalize()} started between {first.datetime[:10]} and "
                                f"{second.datetime[:10]} ({len(hit)} of its chips change then).", _cite(step, hit),
                                context)
    return ChangeAnswer(f"No single step between consecutive dates passes the threshold there; the change from "
                        f"{change.dates[0][:10]} to {change.dates[1][:10]} built up gradually.",
                        _cite(change, windows), context)
