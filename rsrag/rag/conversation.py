"""Conversations: several questions about one library that share what was said, shown and found.

A `Conversation` keeps the turns (bounded: the last `max_turns`), the image in focus (the last image a
turn carried, or the library image a turn picked with "the second one"), the names the last answer cited
(what "it" refers to next: `rsrag.rag.followup`) and the records the last turn found. Each `ask` turns
that state into `AskOptions` (history, focus) and an image, and updates it from the answer. The service
keeps conversations by id (`rsrag.service.conversations`); `rsrag chat` keeps one in a REPL.

    find images like this        (image)  -> evidence: similar library images
    describe the second one               -> the second of them becomes the image in focus
    is there a port near it?              -> asked about that image, "it" resolved
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Iterator

from rsrag.rag.answer import Answer
from rsrag.rag.ask import AskOptions, answerer_for
from rsrag.rag.followup import ordinal, refers_back

if TYPE_CHECKING:
    from rsrag.encoders.base import ImageInput

MAX_TURNS = 20


def record_image(hit: Any) -> ImageInput:
    """A library record's image: its file, or for a scene chip the chip read from its scene."""
    if hit.metadata.get("window"):
        from rsrag.geo import ChipSource

        source = ChipSource(keep_open=1)
        try:
            return source.read(hit.path, hit.metadata)
        finally:
            source.close()
    return str(hit.path)


@dataclass
class Conversation:
    """The state of one conversation (module doc)."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    max_turns: int = MAX_TURNS
    turns: list[dict] = field(default_factory=list)  # {"role", "content"}, oldest first
    focus: list[str] = field(default_factory=list)  # names the last answer cited, best first
    focus_records: list[str] = field(default_factory=list)  # their knowledge records
    image: ImageInput | None = None  # the image in focus
    image_source: str | None = None  # "upload" or the library record id it came from
    results: list[str] = field(default_factory=list)  # library images the last turn found, best first
    updated: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def prepare(self, library: Any, question: str | None, image: ImageInput | None,
                options: AskOptions) -> tuple[ImageInput | None, AskOptions]:
        """The image and options this turn is asked with: its own image, else "the Nth one" of the last
        results, else the image in focus when the question points back to it."""
        index = ordinal(question or "")
        if image is not None:
            self.image, self.image_source = image, "upload"
        elif index is not None and self.results and -len(self.results) <= index < len(self.results):
            found = library.get([self.results[index]])
            if found and found[0].path:
                self.image, self.image_source = record_image(found[0]), found[0].id
                image = self.image
        elif self.image is not None and question and refers_back(question):
            image = self.image
        history = list(options.history or []) or list(self.turns)
        return image, replace(options, history=history, focus=list(self.focus) or options.focus,
                              focus_records=list(self.focus_records) or options.focus_records)

    def record(self, question: str | None, answer: Answer) -> None:
        """Add the turn and take the answer's cited names and found records as the new focus."""
        self.turns += [{"role": "user", "content": question or "(an image)"},
                       {"role": "assistant", "content": answer.text}]
        del self.turns[: max(0, len(self.turns) - self.max_turns)]
        cited = [*answer.citations, *answer.evidence]  # cited first, then the rest of the evidence
        names = [c.get("name") for c in cited if c.get("name")]
        if names and not (answer.extra or {}).get("abstained"):
            self.focus = list(dict.fromkeys(names))[:3]
            # knowledge records only (not library images, whose evidence is captions and labels), cited first
            knowledge = {e.get("record_id") for e in answer.evidence if e.get("chunk_type") not in (None, "caption", "label")}
            ordered = [c.get("record_id") for c in answer.citations] + [e.get("record_id") for e in answer.evidence]
            self.focus_records = [r for r in dict.fromkeys(ordered) if r in knowledge][:3]
        # library images the turn found (their evidence is captions and labels): "the second one" picks among them
        records = [e.get("record_id") for e in answer.evidence
                   if e.get("record_id") and e.get("chunk_type") in ("caption", "label")]
        if records:
            self.results = list(dict.fromkeys(records))
        self.updated = time.monotonic()

    def ask(self, library: Any, question: str | None = None, image: ImageInput | None = None,
            options: AskOptions | None = None) -> Answer:
        """One turn (module doc)."""
        with self.lock:
            image, turn_options = self.prepare(library, question, image, options or AskOptions())
            answer = answerer_for(library).answer(question, image, turn_options)
            self.record(question, answer)
            answer.extra["conversation_id"] = self.id
            return answer

    def stream(self, library: Any, question: str | None = None, image: ImageInput | None = None,
               options: AskOptions | None = None) -> Iterator[str | Answer]:
        """`ask`, streaming the text (see `Answerer.stream`)."""
        with self.lock:
            image, turn_options = self.prepare(library, question, image, options or AskOptions())
            for piece in answerer_for(library).stream(question, image, turn_options):
                if isinstance(piece, Answer):
                    self.record(question, piece)
                    piece.extra["conversation_id"] = self.id
                yield piece
