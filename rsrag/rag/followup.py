"""Follow-up questions: "When was it built?" after a turn about Wrigley Field asks about Wrigley Field.

A question that points back (a pronoun or "the place", "there", ...) and names nothing new is rewritten
with the name in focus before retrieval: "When was it built?" -> "When was Wrigley Field built?". The
focus is what the conversation last talked about: the names of the records the previous answer cited
(kept by `Conversation`), or, for a caller that only sends a plain history, the landmark that the last
self-contained user turn retrieves. A question that stands on its own is left alone, so a new topic is
never dragged back to the old one.

`ordinal("describe the second one")` finds "the first/second/.../last one" references to the
previous turn's results (RS-CapRet-style dialogues over images).
"""

from __future__ import annotations

import re

_BACK = re.compile(
    r"\b(?P<word>its|it|there|here|they|them|their|this (?:place|site|landmark|building|area|one)|"
    r"that (?:place|site|landmark|building|area|one)|the (?:same )?(?:place|site|landmark|building|area))\b",
    re.I,
)
_ORDINALS = {"first": 0, "second": 1, "third": 2, "fourth": 3, "fifth": 4, "sixth": 5, "seventh": 6,
             "eighth": 7, "ninth": 8, "tenth": 9, "last": -1}
_ORDINAL = re.compile(r"\b(?:the\s+)?(" + "|".join(_ORDINALS) + r")\s+(?:one|image|picture|result|hit)\b", re.I)
_CAPITALISED = re.compile(r"\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)+\b")  # a multi-word proper name ("Hoover Dam")


_EXISTENTIAL = re.compile(r"\b(?:is|are|was|were|will|has|have|had)\s+$", re.I)  # "is there a port" is no reference


def _references(question: str) -> list[re.Match]:
    return [m for m in _BACK.finditer(question)
            if not (m.group("word").lower() == "there" and _EXISTENTIAL.search(question[:m.start()]))]


def refers_back(question: str) -> bool:
    """True when the question points back to something earlier and names no place of its own."""
    if not question or not _references(question):
        return False
    return not _CAPITALISED.search(question[1:])  # the first word is capitalised anyway


def resolve(question: str, name: str) -> str:
    """The question with its first back-reference replaced by `name` ("its" -> "NAME's", "there" ->
    "at NAME")."""

    def replace(match: re.Match) -> str:
        word = match.group("word").lower()
        if word == "its":
            return f"{name}'s"
        if word in ("there", "here"):
            return f"at {name}"
        return name

    found = _references(question)
    if not found:
        return question
    first = found[0]
    return question[:first.start()] + replace(first) + question[first.end():]


def ordinal(question: str) -> int | None:
    """The index (0-based; -1 for "last") of "the second one"-style references, or None."""
    match = _ORDINAL.search(question or "")
    return _ORDINALS[match.group(1).lower()] if match else None
