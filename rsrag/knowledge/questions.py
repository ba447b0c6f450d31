"""Question wording -> chunk type, and image references -> a place name.

RSWK questions are asked about an image ("the landmark in the remote image"); with no landmark
images available, `ground_question` puts the landmark's name in place of the reference so the
question is answerable from text. `question_type` reads which kind of fact a question asks for;
the RSWK converter uses it to type each answer, and retrieval / the extractive generator use it as a
cue for which chunk answers a question.
"""

from __future__ import annotations

import re
from typing import Iterable

# (chunk type, pattern) in order: the first match wins, so specific wordings come before general ones.
_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*"
_TYPE_PATTERNS: list[tuple[str, re.Pattern]] = [
    (t, re.compile(p, re.I))
    for t, p in [
        ("rs_measurements", rf"\b{_MONTHS}\s+(?:19|20)\d\d\b"),
        ("original_function", r"\boriginal(?:ly)?\b.*\b(?:function|purpose|use)|\bbuilt for\b"),
        ("current_function", r"\bcurrent(?:ly)?\b.*\b(?:function|purpose|use)|\bused (?:for|as) (?:today|now)\b"),
        ("function", r"\bfunction\b|\bpurpose\b|\bused (?:for|as)\b"),
        ("construction_period", r"\bconstruct\w*|\bwhen was\b.*\b(?:built|erected|founded|completed|opened)\b"),
        ("events", r"\bevents?\b|\bwhat happened\b"),
        ("significance", r"\bhistoric(?:al(?:ly)?)? significan\w*|\bhistorically\b"),
        ("history", r"\bhistor(?:y|ical)\b"),
        ("culture", r"\bcultur\w*"),
        ("architecture", r"\barchitect\w*|\bstyle\b"),
        ("visitors", r"\bvisit\w*|\bwho (?:came|went)\b"),
        ("address", r"\baddress\b"),
        (
            "environment",
            r"\bvegetation|\bsoil\b|\bmoisture|\bprecipitation|\btemperature|\bwind\b|\bsolar\b|"
            r"\bsnow\w*|\bpressure\b|\bhumidity|\breflectance|\burban\b|\bbuilt-up|\bclimate|"
            r"\bland\b|\bazimuth|\bzenith|\bwater\b|\bindex\b|\bindices\b|\bvalues?\b|\bsurface|\bemissiv|"
            r"\balbedo|\bthermal|\burbani[sz]|\brain|\benergy|\bspectral|\breflect|\bsun\b|\bheat|"
            r"\b(?-i:[A-Z][A-Z0-9_]{2,})\b",
        ),
        ("area", r"\barea\b|\bregion\b"),
        ("location", r"\blocat\w*|\bwhere\b|\bcoordinates?\b|\bcountry\b|\bcity\b"),
        ("name", r"\bname\b|\bcalled\b|\bwhich landmark\b|\bcategory\b|\bkind of\b|\btype of\b"),
        ("description", r"\bdetails?\b|\binteresting\b|\bdescribe\b|\btell me about\b|\bmore\b"),
    ]
]

# Phrases that point at the image, replaced by the place name (longest forms first).
_NOUN = r"(?:landmark|site|place|structure|location|area|region|remote\s+site|remote\s+location)"
_IMAGE = r"(?:remote(?:\s+sensing)?\s+image|image|picture|photo)"
_REFERENCES = [
    re.compile(p, re.I)
    for p in [
        rf"\b(?:the|this)\s+{_NOUN}(?:\s+(?:shown|captured|visible|depicted|pictured))?\s+(?:in|from|of)\s+(?:the|this)\s+{_IMAGE}",
        rf"\b(?:the|this)\s+{_IMAGE}\s+{_NOUN}",
        rf"\bthis\s+{_IMAGE}\s+location",
        rf"\b(?:the|this)\s+{_NOUN}\s+(?:shown|captured|visible|depicted|pictured)\b",
        rf"\b(?:the|this)\s+{_IMAGE}",
        rf"\bthis\s+{_NOUN}\b",
        rf"\bthe\s+{_NOUN}\b(?!\s+(?:of|where)\b)",
    ]
]
_HERE = re.compile(r"\bhere\b(?=\s*[?.!]?\s*$)", re.I)
_IMAGE_TAG = re.compile(r"<image>\s*", re.I)


def clean_question(question: str) -> str:
    """Drop the `<image>` tag and repair RSWK's one run-together template ("Whatarchitectural")."""
    text = _IMAGE_TAG.sub("", question or "").strip()
    return re.sub(r"\bWhat(?=architectural)", "What ", text)


def question_type(question: str, names: Iterable[str] = ()) -> str | None:
    """The chunk type a question asks for (see `records.CHUNK_TYPES`), or None when no cue matches.

    `names`: place names that may occur in the question; they are removed first, so the words of a
    name ("Kings Landing Historical Settlement") are not read as the question's cue ("historical").
    """
    text = _strip_references(clean_question(question))
    for name in sorted({n for n in names if n}, key=len, reverse=True):
        text = re.sub(re.escape(name), " it ", text, flags=re.I)
    for ctype, pattern in _TYPE_PATTERNS:
        if pattern.search(text):
            return ctype
    return None


def _replace_reference(text: str, replacement: str) -> tuple[str, bool]:
    """Replace the first image reference (by the first pattern that matches) with `replacement`."""
    for pattern in _REFERENCES:
        text, n = pattern.subn(replacement, text, count=1)
        if n:
            return text, True
    return text, False


def _strip_references(text: str) -> str:
    """The question with its image reference replaced by a neutral word (so "this remote image
    location" does not read as a question about location)."""
    return _replace_reference(text, "it")[0]


def ground_question(question: str, name: str) -> str:
    """Replace the question's reference to the image ("the site in the remote image", "this place",
    "here") by `name`; a question with no such reference gets ` (about NAME)` appended."""
    text, found = _replace_reference(clean_question(question), name)
    if found:
        return text
    text, n = _HERE.subn(f"at {name}", text, count=1)
    if n:
        return text
    return f"{text.rstrip()} (about {name})"
