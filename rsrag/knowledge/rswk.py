"""RSWK annotations -> knowledge records: one record per landmark, every fact as a typed chunk.

RSWK (RS-RAG, Wen et al. 2025) ships question-answer pairs per landmark image, no knowledge base.
The converter aggregates, per landmark (named by its image file name):

- world-knowledge answers (`vqa_wk`, and the WK questions of `mini/`), typed by the question wording
  (`questions.question_type`: location, address, construction period, ...);
- the category from the classification files;
- remote-sensing measurements (`vqa_rsk` train+test, and the measurement questions of `mini/`),
  gathered into one `rs_measurements` chunk ("ALBEDO January 2019: 0.45; ...");
- environmental statements (`vqa_c`, and the environment questions of `mini/`), in chunks of a few
  sentences.

Every landmark also gets a `name` chunk. By default only the landmarks that have a world-knowledge
answer or a category (2,993) become records; `all_landmarks=True` keeps the measurement-only ones too.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from rsrag.config import data_root
from rsrag.knowledge.questions import clean_question, ground_question, question_type
from rsrag.knowledge.records import Chunk, KnowledgeRecord, slug

WK_FILE = "vqa/vqa_wk/vqa_wk_full_test_2993.jsonl"
CLASS_FILE = "image_classification/image_classification_full_test_2993.jsonl"
RSK_FILES = ("vqa/vqa_rsk/vqa_rsk_full_train_11827.jsonl", "vqa/vqa_rsk/vqa_rsk_full_test_2993.jsonl")
ENV_FILE = "vqa/vqa_c/vqa_c_full_test_4501.json"
MINI_VQA = "mini/image_vqa_mini_test_5242.jsonl"
MINI_CLASS = "mini/image_classification_mini_test_1600.jsonl"
CATEGORIES = (
    "Airport",
    "Amusement Park",
    "Beach",
    "Bridge",
    "Casino",
    "Church",
    "Government Building",
    "Historic Site",
    "Mansion",
    "Museum",
    "Park",
    "Stadium",
    "Theater",
    "Tower",
    "University",
    "Forest",
)
ENV_SENTENCES_PER_CHUNK = 4

_MONTH = re.compile(
    r"\b(January|February|March|April|May|June|July|August|September|October|November|December)"
    r"\s+((?:19|20)\d\d)\b",
    re.I,
)
_VARIABLE = re.compile(r"\b([A-Z][A-Z0-9_]{1,})\b")
_DMS = re.compile(r"(\d+(?:\.\d+)?)°\s*(?:(\d+(?:\.\d+)?)[′']\s*)?(?:(\d+(?:\.\d+)?)[″\"]\s*)?([NSEW])")


@dataclass
class QAItem:
    """One RSWK question with its landmark, gold answer and type (for evaluation)."""

    name: str
    question: str  # as in the file, without the <image> tag
    answer: str
    qtype: str | None

    @property
    def grounded(self) -> str:
        """The question with the image reference replaced by the landmark name."""
        return ground_question(self.question, self.name)


def landmark_name(image: str) -> str:
    """`/any/path/Piazza Navona.png` -> `Piazza Navona`."""
    return Path(str(image).replace("\\", "/")).stem


def _jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if line.strip():
                yield line_no, json.loads(line)


def _qa(row: dict) -> tuple[str, str, str]:
    """(landmark name, question, answer) of a chat-format row."""
    msgs = row["messages"]
    question = next(m["content"] for m in msgs if m["role"] == "user")
    answer = next(m["content"] for m in msgs if m["role"] == "assistant")
    return landmark_name(row["images"][0]), clean_question(question), str(answer).strip()


def parse_coordinates(text: str) -> tuple[float, float] | None:
    """(lon, lat) from a coordinate string like `34°44′12″N 92°17′56″W` or `21.365°N 157.95°W`."""
    lat = lon = None
    for deg, minutes, seconds, hemi in _DMS.findall(text):
        value = float(deg) + float(minutes or 0) / 60 + float(seconds or 0) / 3600
        if hemi in "SW":
            value = -value
        if hemi in "NS" and lat is None:
            lat = value
        elif hemi in "EW" and lon is None:
            lon = value
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return round(lon, 6), round(lat, 6)


def measurement_fact(question: str, answer: str) -> str:
    """A measurement question + answer as a compact fact: `ALBEDO January 2019: 0.45`."""
    month = _MONTH.search(question)
    variable = next((v for v in _VARIABLE.findall(question) if v not in {"I", "A"}), None)
    if month and variable:
        return f"{variable} {month.group(1).capitalize()} {month.group(2)}: {answer}"
    return f"{ground_question(question, 'the site').rstrip('?')}: {answer}"


def load_qa_items(root: Path | None = None, limit: int | None = None) -> list[QAItem]:
    """The 2,993 world-knowledge questions of RSWK (one per landmark), in file order."""
    path = Path(root or data_root() / "rswk") / WK_FILE
    items = []
    for _, row in _jsonl(path):
        name, question, answer = _qa(row)
        items.append(QAItem(name, question, answer, question_type(question)))
        if limit and len(items) >= limit:
            break
    return items


def convert_rswk(
    root: Path | None = None, *, all_landmarks: bool = False, names: set[str] | None = None
) -> list[KnowledgeRecord]:
    """Aggregate the RSWK files under `root` (default `<data>/rswk`) into one record per landmark.

    `names` restricts the output to those landmarks (tests use it to stay fast).
    """
    root = Path(root or data_root() / "rswk")
    facts: dict[str, dict[str, list[tuple[str, str]]]] = defaultdict(lambda: defaultdict(list))
    category: dict[str, str] = {}
    core: set[str] = set()

    def fact(name: str, ctype: str, text: str, source: str) -> None:
        if names is None or name in names:
            facts[name][ctype].append((text, source))

    for line_no, row in _jsonl(root / WK_FILE):
        name, question, answer = _qa(row)
        core.add(name)
        fact(name, question_type(question) or "description", answer, f"rswk:{WK_FILE}:{line_no}")
    for rel in (CLASS_FILE, MINI_CLASS):
        if (root / rel).is_file():
            for _, row in _jsonl(root / rel):
                name, _, answer = _qa(row)
                category.setdefault(name, answer)
                core.add(name)
    for rel in RSK_FILES:
        if (root / rel).is_file():
            for line_no, row in _jsonl(root / rel):
                name, question, answer = _qa(row)
                fact(name, "rs_measurements", measurement_fact(question, answer), f"rswk:{rel}:{line_no}")
    if (root / ENV_FILE).is_file():
        for entry in json.loads((root / ENV_FILE).read_text(encoding="utf-8")):
            pairs = entry.get("gpt_output") or []
            if isinstance(pairs, str):  # a few entries hold the list as a JSON string
                try:
                    pairs = json.loads(pairs)
                except ValueError:
                    pairs = []
            for qa in pairs:
                if isinstance(qa, dict) and qa.get("answer"):
                    fact(entry["image_name"], "environment", str(qa["answer"]).strip(), f"rswk:{ENV_FILE}")
    if (root / MINI_VQA).is_file():
        for line_no, row in _jsonl(root / MINI_VQA):
            name, question, answer = _qa(row)
            ctype = question_type(question)
            source = f"rswk:{MINI_VQA}:{line_no}"
            if ctype == "rs_measurements":
                fact(name, ctype, measurement_fact(question, answer), source)
            else:
                fact(name, ctype or "environment", answer, source)

    keep = sorted(n for n in facts if all_landmarks or n in core)
    records, used_ids = [], set()
    for name in keep:
        rid = slug(name)
        while rid in used_ids:
            rid += "-x"
        used_ids.add(rid)
        records.append(_record(rid, name, category.get(name), facts[name]))
    return records


def _unique(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    seen, out = set(), []
    for text, source in items:
        if text and text not in seen:
            seen.add(text)
            out.append((text, source))
    return out


def _record(rid: str, name: str, category: str | None, by_type: dict[str, list[tuple[str, str]]]) -> KnowledgeRecord:
    chunks = []
    by_type = {
        "name": [(name, "rswk:image file name"), *by_type.get("name", [])],
        **{t: v for t, v in by_type.items() if t != "name"},
    }
    for ctype, items in by_type.items():
        items = _unique(items)
        if ctype == "rs_measurements":
            chunks.append(Chunk(ctype, "; ".join(t for t, _ in items) + ".", items[0][1]))
        elif ctype == "environment":
            for start in range(0, len(items), ENV_SENTENCES_PER_CHUNK):
                part = items[start : start + ENV_SENTENCES_PER_CHUNK]
                chunks.append(Chunk(ctype, " ".join(t for t, _ in part), part[0][1]))
        else:
            chunks.extend(Chunk(ctype, text, source) for text, source in items)
    lon = lat = None
    for chunk in chunks:
        if chunk.type in ("location", "address", "area") and (coords := parse_coordinates(chunk.text)):
            lon, lat = coords
            break
    return KnowledgeRecord(rid, name, category, chunks, [], lon, lat, "rswk")
