"""Concurrent `/qa` requests against one server (one library snapshot, one shared answerer): each
answer cites the record its own question is about (issue: per-call QA state used to live on the
shared retriever, so one request could report another's evidence)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from index_helpers import HashEncoder, make_image, make_records  # noqa: F401  (registers test-hash)
from rsrag.index import Library
from rsrag.knowledge import KnowledgeBase, KnowledgeRecord
from rsrag.service import create_app, running_server

PLACES = {
    "red-tower": ({"name": "Red Tower", "chunks": {"location": "Redtown, Kent", "construction_period": "1890-1895"}},
                  "When was the Red Tower built?", "1890-1895"),
    "blue-bridge": ({"name": "Blue Bridge", "chunks": {"location": "Bluford, Norway", "visitors": "King Olav V"}},
                    "Who visited the Blue Bridge?", "King Olav V"),
    "green-park": ({"name": "Green Park", "chunks": {"location": "Greenville, Ohio", "function": "Public recreation"}},
                   "Where is Green Park?", "Greenville, Ohio"),
}


def test_concurrent_qa_requests_cite_their_own_records(tmp_path):
    library = Library.create(tmp_path, "lib", encoder=HashEncoder())
    library.add(make_records(tmp_path / "img", n_per_colour=2), workers=1)
    KnowledgeBase.attach(library).add([KnowledgeRecord.from_dict(record) for record, _, _ in PLACES.values()])
    jobs = [place for place in PLACES for _ in range(10)]

    with running_server(create_app(library, token="")) as url, httpx.Client(base_url=url, timeout=120) as client:
        def post(place: str) -> tuple[str, dict]:
            response = client.post("/qa", json={"question": PLACES[place][1], "k": 3})
            assert response.status_code == 200, response.text
            return place, response.json()

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(post, jobs))
    for place, answer in answers:
        assert answer["answer"] == PLACES[place][2]
        assert {c["record_id"] for c in answer["citations"]} == {place}
        assert answer["evidence"][0]["record_id"] == place
