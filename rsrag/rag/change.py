"""Change questions in `ask`: a question about change over time, asked of an index that holds a
dated series, is answered from change maps (`rsrag.change.questions`) instead of text retrieval; the
conversation's history carries the dates and region in focus, so follow-ups stay on the same pair."""

from __future__ import annotations

import time
from typing import Any, Sequence

from rsrag.change.questions import answer_change_question, is_change_question
from rsrag.change.series import series_dates
from rsrag.rag.answer import Answer


def wants_change(library: Any, question: str | None, image: Any, history: Sequence[dict] = ()) -> bool:
    """A change question (no image) about a library with at least two dated scenes."""
    if image is not None or not question or not is_change_question(question, history):
        return False
    columns = getattr(library, "columns", None)  # test doubles and plain stores have no scene columns
    return callable(columns) and "scene" in columns() and len(series_dates(library)) >= 2


def change_answer(library: Any, question: str, history: Sequence[dict] = ()) -> Answer:
    t0 = time.perf_counter()
    result = answer_change_question(library, question, history)
    citations = [{"n": n, "record_id": c["after_id"], "chunk_id": c["after_id"],
                  "name": f"{c['before_date']} {c['before_id']} -> {c['after_date']} {c['after_id']}", **c}
                 for n, c in enumerate(result.citations, 1)]
    return Answer(result.text, citations, [], {"total": round((time.perf_counter() - t0) * 1000, 1)},
                  generator="change", extra={"change": result.context})
