"""Question templates and the caption parsers that turn RSICD / UCM annotations into VQA pairs.

No remote-sensing VQA set with images is available offline, so questions are derived from what
the annotations state, and only from that:

* `scene`: the image's scene label, mapped to one answer name shared by RSICD and UCM
  (`SCENE_ANSWERS`; e.g. RSICD `Airport` and UCM `airplane` both answer "airport").
* `presence`: "Is there a X?" for the curated object vocabulary `OBJECTS` (surface forms cover
  plurals and synonyms). "yes" when a caption of the image names the object; "no" answers are
  sampled by `rsrag.models.vqa.dataset` from objects that no caption of the image names *and* that
  captions of the image's scene class rarely name (so "no" is not merely an omission).
* `count`: "How many X are there?" where a caption states a number ("two planes", "3 tanks");
  kept only when every caption that states a count for X states the same one. "0" answers are
  sampled by the dataset builder from the presence negatives (X absent), as many as stated counts.
* `comparison`: "Are there more X than Y?" where one caption quantifies both X and Y with
  clearly different amounts ("many buildings and a playground"); every supported pair yields the
  question in both directions (a "yes" and a "no"), and pairs contradicted by another caption are
  dropped.

Everything here is a pure function of the captions, so it is easy to test on known sentences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

QUESTION_TYPES = ("scene", "presence", "count", "comparison")


@dataclass(frozen=True)
class ObjectSpec:
    """An object of the vocabulary: how questions name it and which caption phrases mean it."""

    singular: str
    plural: str
    forms: tuple[str, ...]  # lower-case word sequences, matched on word boundaries
    countable: bool = True


def _obj(singular: str, plural: str, *forms: str, countable: bool = True) -> ObjectSpec:
    return ObjectSpec(singular, plural, tuple(forms) or (singular, plural), countable)


#: Curated remote-sensing objects, keyed by canonical name.
OBJECTS: dict[str, ObjectSpec] = {
    "building": _obj("building", "buildings", "building", "buildings", "house", "houses", "home", "homes",
                     "villa", "villas", "apartment", "apartments"),
    "tree": _obj("tree", "trees", "tree", "trees"),
    "car": _obj("car", "cars", "car", "cars", "vehicle", "vehicles", "automobile", "automobiles", "truck", "trucks"),
    "road": _obj("road", "roads", "road", "roads", "street", "streets", "highway", "highways", "freeway",
                 "freeways"),
    "river": _obj("river", "rivers"),
    "bridge": _obj("bridge", "bridges", "bridge", "bridges", "viaduct", "viaducts", "overpass", "overpasses"),
    "boat": _obj("boat", "boats", "boat", "boats", "ship", "ships"),
    "plane": _obj("plane", "planes", "plane", "planes", "airplane", "airplanes", "aircraft", "aircrafts",
                  "aeroplane", "aeroplanes"),
    "runway": _obj("runway", "runways"),
    "pond": _obj("pond", "ponds", "pond", "ponds", "lake", "lakes"),
    "playground": _obj("playground", "playgrounds"),
    "parking lot": _obj("parking lot", "parking lots", "parking lot", "parking lots", "parking"),
    "storage tank": _obj("storage tank", "storage tanks", "tank", "tanks"),
    "swimming pool": _obj("swimming pool", "swimming pools", "pool", "pools"),
    "tennis court": _obj("tennis court", "tennis courts"),
    "basketball court": _obj("basketball court", "basketball courts"),
    "baseball field": _obj("baseball field", "baseball fields", "baseball field", "baseball fields",
                           "baseball diamond", "baseball diamonds", "baseballfield"),
    "football field": _obj("football field", "football fields", "football field", "football fields",
                           "soccer field", "soccer fields", "football pitch"),
    "railway": _obj("railway", "railways", "railway", "railways", "railroad", "rail", "rails"),
    "train": _obj("train", "trains"),
    "church": _obj("church", "churches"),
    "factory": _obj("factory", "factories", "factory", "factories", "workshop", "workshops"),
    "terminal": _obj("terminal", "terminals"),
    "island": _obj("island", "islands"),
    "beach": _obj("beach", "beaches", countable=False),
    "sea": _obj("sea", "sea", "sea", "ocean", "seaside", "coast", countable=False),
    "farmland": _obj("farmland", "farmland", "farmland", "farmlands", "cropland", "croplands", "farm", "farms",
                     countable=False),
    "grass": _obj("lawn", "lawns", "lawn", "lawns", "grass", "meadow", "meadows", "grassland", countable=False),
    "mountain": _obj("mountain", "mountains", "mountain", "mountains", "hill", "hills", countable=False),
    "desert": _obj("desert", "deserts", countable=False),
    "sand": _obj("sand", "sand", "sand", "sands", countable=False),
    "water": _obj("water", "water", "water", "waters", countable=False),
}

#: Scene label (as in the captions files, lower-cased) -> answer, shared by RSICD and UCM.
SCENE_ANSWERS: dict[str, str] = {
    # RSICD
    "airport": "airport", "bareland": "bare land", "baseballfield": "baseball field", "beach": "beach",
    "bridge": "bridge", "center": "center", "church": "church", "commercial": "commercial area",
    "denseresidential": "dense residential area", "desert": "desert", "farmland": "farmland",
    "forest": "forest", "industrial": "industrial area", "meadow": "meadow",
    "mediumresidential": "medium residential area", "mountain": "mountain", "park": "park",
    "parking": "parking lot", "playground": "playground", "pond": "pond", "port": "port",
    "railwaystation": "railway station", "resort": "resort", "river": "river", "school": "school",
    "sparseresidential": "sparse residential area", "square": "square", "stadium": "stadium",
    "storagetanks": "storage tanks", "viaduct": "viaduct",
    "playfields": "playground",  # RSICD's noisy extra label: its captions describe playgrounds / sports fields
    # UCM
    "agricultural": "farmland", "airplane": "airport", "baseballdiamond": "baseball field",
    "buildings": "buildings", "freeway": "freeway", "harbor": "port", "intersection": "intersection",
    "mobilehomepark": "mobile home park", "overpass": "overpass", "parkinglot": "parking lot",
    "runway": "runway", "tenniscourt": "tennis court",
}

SCENE_TEMPLATES = (
    "What kind of place is shown?",
    "What type of scene is this?",
    "What is the scene category of this image?",
    "What land use does this image show?",
    "What kind of area is this?",
    "Which scene class does this image belong to?",
)
PRESENCE_TEMPLATES = (
    "Is there a {singular} in the image?",
    "Are there any {plural}?",
    "Can you see a {singular}?",
    "Does the image contain {plural}?",
)
COUNT_TEMPLATES = (
    "How many {plural} are there?",
    "How many {plural} can be seen?",
    "What is the number of {plural} in the image?",
)
COMPARISON_TEMPLATES = (
    "Are there more {plural_a} than {plural_b}?",
    "Is the number of {plural_a} larger than the number of {plural_b}?",
)

NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}
MAX_COUNT = 10
#: Amount words -> a rough rank, used only to compare two objects quantified in one caption.
_AMOUNT_WORDS = {"a": 1, "an": 1, "single": 1, "few": 3, "several": 4, "many": 6, "lots": 6, "numerous": 6,
                 "plenty": 6, "dense": 6, "densely": 6, "countless": 6}
#: Words that may sit between a number and its object ("two small white planes"); nouns like
#: "rows" or "pieces" may not ("two rows of trees" counts rows, not trees).
_MODIFIERS = {
    "small", "large", "big", "huge", "tiny", "little", "long", "tall", "short", "white", "green", "red", "blue",
    "grey", "gray", "black", "yellow", "brown", "dark", "light", "orange", "silver", "khaki", "round",
    "rectangular", "square", "circular", "oval", "straight", "curved", "parallel", "identical", "same",
    "similar", "different", "old", "new", "tennis", "basketball", "baseball", "football", "soccer", "storage",
    "swimming", "parking", "oil", "cylindrical", "parked", "docked", "standard", "residential", "tidy",
}
_WORD = re.compile(r"[a-z]+|\d+")
# first word -> (form, object), longest form first so "parking lot" wins over "parking"
_FORMS: dict[str, list[tuple[tuple[str, ...], str]]] = {}
for _name, _spec in OBJECTS.items():
    for _form in _spec.forms:
        _FORMS.setdefault(_form.split()[0], []).append((tuple(_form.split()), _name))
for _forms in _FORMS.values():
    _forms.sort(key=lambda x: -len(x[0]))


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def find_objects(tokens: list[str]) -> list[tuple[int, str]]:
    """(start position, canonical object) of every object phrase in a tokenised caption."""
    found, i = [], 0
    while i < len(tokens):
        for form, name in _FORMS.get(tokens[i], ()):
            if tuple(tokens[i : i + len(form)]) == form:
                found.append((i, name))
                i += len(form)
                break
        else:
            i += 1
    return found


def mentioned_objects(captions: list[str]) -> set[str]:
    """Objects that at least one caption names."""
    return {name for cap in captions for _, name in find_objects(tokenize(cap))}


def _amount_before(tokens: list[str], start: int) -> int | float | None:
    """The number or amount word quantifying the object phrase at `start`, allowing up to two modifiers
    in between: ("two", 2) for "two small planes", ("many", rank) for "many buildings"."""
    j = start - 1
    while j >= 0 and start - j <= 3:
        word = tokens[j]
        if word in NUMBER_WORDS:
            return NUMBER_WORDS[word]
        if word.isdigit():
            return int(word)
        if word in _AMOUNT_WORDS:
            # "a lot of X", "lots of X": the amount word is followed by "lot"/"of", handled by callers' tokens
            return -_AMOUNT_WORDS[word]  # negative: an amount rank, not a count
        if word == "of" and j >= 1 and tokens[j - 1] in ("lot", "lots", "plenty"):
            return -6
        if word not in _MODIFIERS:
            return None
        j -= 1
    return None


def parse_counts(captions: list[str]) -> dict[str, int]:
    """Object -> count, for countable objects whose stated numbers agree across all captions.

    Only explicit numbers count ("two planes", "3 tanks"); "a plane" is not read as a count, since
    captions say "a" for one of many just as often.
    """
    stated: dict[str, set[int]] = {}
    for cap in captions:
        tokens = tokenize(cap)
        for start, name in find_objects(tokens):
            amount = _amount_before(tokens, start)
            if amount is not None and amount > 0 and OBJECTS[name].countable:
                stated.setdefault(name, set()).add(int(amount))
    return {name: next(iter(v)) for name, v in stated.items() if len(v) == 1 and 1 <= next(iter(v)) <= MAX_COUNT}


def _rank(amount: float) -> float:
    """Numbers and amount words on one scale: 1, 2, ... for numbers; "few" ~ 3, "many" ~ 6."""
    return -amount if amount < 0 else min(float(amount), 5.0)


def parse_comparisons(captions: list[str], min_gap: float = 2.0) -> list[tuple[str, str]]:
    """(more, fewer) object pairs that a caption quantifies with ranks at least `min_gap` apart,
    e.g. "many buildings and a playground" -> ("building", "playground"). Pairs that another caption
    orders the other way are dropped."""
    pairs: set[tuple[str, str]] = set()
    for cap in captions:
        tokens = tokenize(cap)
        ranks: dict[str, float] = {}
        for start, name in find_objects(tokens):
            amount = _amount_before(tokens, start)
            if amount is not None and OBJECTS[name].countable:
                ranks.setdefault(name, _rank(amount))
        for a, ra in ranks.items():
            for b, rb in ranks.items():
                if ra - rb >= min_gap:
                    pairs.add((a, b))
    return sorted(p for p in pairs if (p[1], p[0]) not in pairs)


def scene_answer(label: str | None) -> str | None:
    """The scene answer for a dataset label (None for unknown labels)."""
    return SCENE_ANSWERS.get((label or "").lower())


def presence_question(name: str, template: int) -> str:
    spec = OBJECTS[name]
    return PRESENCE_TEMPLATES[template % len(PRESENCE_TEMPLATES)].format(singular=spec.singular, plural=spec.plural)


def count_question(name: str, template: int) -> str:
    return COUNT_TEMPLATES[template % len(COUNT_TEMPLATES)].format(plural=OBJECTS[name].plural)


def comparison_question(a: str, b: str, template: int) -> str:
    return COMPARISON_TEMPLATES[template % len(COMPARISON_TEMPLATES)].format(
        plural_a=OBJECTS[a].plural, plural_b=OBJECTS[b].plural)


_YES_NO_START = re.compile(r"^(is|are|can|could|does|do|did|was|were|has|have|will|would|should)\b")
_COUNT_FORM = re.compile(r"\b(how many|number of|count)\b")
_OPEN_START = re.compile(r"^(who|whom|whose|when|why|where|how)\b")


def question_fits_type(question: str, question_type: str) -> bool:
    """Whether a question has the form of its predicted type: yes/no types start with an auxiliary
    verb, counts ask "how many", scene questions are no who/when/why/where/how questions.
    "Who built this bridge?" resembles "Is there a bridge?" in embedding space but fits no type."""
    q = " ".join(tokenize(question))
    if question_type in ("presence", "comparison"):
        return bool(_YES_NO_START.match(q))
    if question_type == "count":
        return bool(_COUNT_FORM.search(q))
    return not _OPEN_START.match(q) and not _COUNT_FORM.search(q)


def answer_vocabulary() -> dict[str, list[str]]:
    """The closed answer space of each question type."""
    return {
        "scene": sorted(set(SCENE_ANSWERS.values())),
        "presence": ["no", "yes"],
        "count": [str(n) for n in range(MAX_COUNT + 1)],
        "comparison": ["no", "yes"],
    }
