"""ShardedLibrary and the HTTP router: merged dense results equal the unsharded index's (ids and
scores) with and without filters and places; a place query asks only the shards that can hold a
match; writes route to the right shard; the router over replica servers (threads, and real
`rsrag serve` processes) answers as the in-process ShardedLibrary does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from index_helpers import HashEncoder

from rsrag.data import ImageRecord
from rsrag.geo.filters import Place
from rsrag.index import IndexExistsError, Library
from rsrag.index.sharded import ShardedLibrary, ShardMap, open_index, record_boxes

N = 500
WORDS = "river road field roof tree lake boat port dune farm crop snow wood bridge pier".split()
LABELS = ("farm", "city", "forest", "water")


def world(n: int = N, seed: int = 0, start: int = 0) -> tuple[list[ImageRecord], np.ndarray]:
    """Records spread over the world: 10% without a place, 30% with a footprint box (a few across
    the antimeridian), the rest points; random vectors; captions from a small vocabulary."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(start, start + n):
        label = LABELS[i % len(LABELS)]
        meta: dict = {"n": i}
        kind = rng.random()
        if kind >= 0.1:
            lon, lat = float(rng.uniform(-180, 180)), float(np.degrees(np.arcsin(rng.uniform(-0.98, 0.98))))
            meta |= {"lon": lon, "lat": lat, "datetime": f"20{10 + i % 12}-06-01T00:00:00Z"}
            if kind < 0.4:
                half = float(rng.uniform(0.01, 0.5))
                if i % 50 == 0:  # across the antimeridian
                    lon = meta["lon"] = 179.9
                meta |= {"minx": lon - half, "miny": lat - half, "maxx": lon + half, "maxy": lat + half}
                if meta["maxx"] > 180:
                    meta["maxx"] -= 360
        words = " ".join(rng.choice(WORDS, size=3))
        records.append(ImageRecord(id=f"r{i:04d}", path=Path(f"/none/r{i}.png"), split="test" if i % 3 else "train",
                                   label=label, captions=[f"{label} with {words}"], metadata=meta))
    return records, rng.standard_normal((n, HashEncoder.dim)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return world()


@pytest.fixture(scope="module")
def root(tmp_path_factory, data):
    """One unsharded flat index and two sharded ones (4 shards by geo, 3 by hash) of the same records."""
    records, vectors = data
    base = tmp_path_factory.mktemp("indexes")
    enc = HashEncoder()
    Library.create(base, "plain", encoder=enc, index_type="flat").add_embedded(records, vectors)
    ShardedLibrary.create(base, "geo", shards=4, by="geo", encoder=enc, index_type="flat").add_embedded(records, vectors)
    ShardedLibrary.create(base, "hashed", shards=3, by="hash", encoder=enc, index_type="flat").add_embedded(records,
                                                                                                         vectors)
    return base


@pytest.fixture(scope="module")
def plain(root):
    return Library.open(root, "plain", encoder=HashEncoder())


@pytest.fixture(scope="module", params=["geo", "hashed"])
def sharded(request, root):
    lib = ShardedLibrary.open(root, request.param, encoder=HashEncoder())
    yield lib
    lib.close()


def pairs(hits) -> list[tuple[str, float]]:
    return [(h.id, h.score) for h in hits]


def places(records: list[ImageRecord], rng: np.random.Generator) -> list[Place]:
    """Place filters of every kind around random records."""
    located = [r for r in records if "lon" in r.metadata]
    out = []
    for _ in range(6):
        r = located[rng.integers(len(located))]
        lon, lat = r.metadata["lon"], r.metadata["lat"]
        out.append(Place.of(near=(lon, lat, float(rng.choice([50_000, 500_000, 3_000_000])))))
        x0, y0 = lon - float(rng.uniform(1, 40)), lat - float(rng.uniform(1, 20))
        out.append(Place.of(bbox=(max(x0, -180), max(y0, -90), min(lon + 5, 180), min(lat + 10, 90))))
    out.append(Place.of(bbox=(170, -60, -170, 60)))  # across the antimeridian
    out.append(Place.of(within={"type": "Polygon", "coordinates": [[[-20, -10], [40, -10], [40, 50], [-20, 10],
                                                                     [-20, -10]]]}))
    out.append(Place.of(after="2015-01-01", before="2018-12-31"))  # time only: every shard
    out.append(Place.of(near=(10, 45, 2_000_000), after="2016-01-01"))
    return out


def test_shards_hold_the_records_once(sharded, plain, data):
    records, _ = data
    assert len(sharded) == len(plain) == len(records)
    assert sum(len(lib) for lib in sharded.shards.values()) == len(records)
    m = sharded.shard_map
    where = sharded.where_are(r.id for r in records)
    assert all(where[r.id] == m.shard_of(r.id, r.metadata) for r in records)
    assert all(len(lib) > 0 for lib in sharded.shards.values())
    assert isinstance(open_index(sharded.root, sharded.name), ShardedLibrary)
    assert isinstance(open_index(sharded.root, "plain"), Library)


def test_dense_merge_equals_unsharded(sharded, plain, data):
    records, _ = data
    rng = np.random.default_rng(1)
    for _ in range(25):
        q = rng.standard_normal(HashEncoder.dim).astype(np.float32)
        for k in (1, 7, 40):
            assert pairs(sharded.search_vector(q, k)) == pairs(plain.search_vector(q, k))
        for filters in ({"label": "farm"}, ["n>=250", "split=test"]):
            assert pairs(sharded.search_vector(q, 15, filters=filters)) == pairs(plain.search_vector(q, 15, filters=filters))
    queries = rng.standard_normal((len(places(records, rng)) * 2, HashEncoder.dim)).astype(np.float32)
    for q, place in zip(queries, places(records, np.random.default_rng(2)) * 2):
        got, want = sharded.search_vector(q, 12, place=place), plain.search_vector(q, 12, place=place)
        assert pairs(got) == pairs(want)
        assert [h.rank for h in got] == list(range(1, len(got) + 1))
        assert sharded.count(place=place) == plain.count(place=place)
        assert pairs(sharded.search_vector(q, 12, place=place, filters={"label": ["city", "water"]})) == \
            pairs(plain.search_vector(q, 12, place=place, filters={"label": ["city", "water"]}))
    box = (-30.0, -20.0, 60.0, 40.0)
    q = queries[0]
    assert pairs(sharded.search_vector(q, 20, bbox=box)) == pairs(plain.search_vector(q, 20, bbox=box))
    for text in ("farm river", "blue boat", "snow"):  # text queries, encoded by the shared encoder
        assert pairs(sharded.search_text(text, 10, mode="dense")) == pairs(plain.search_text(text, 10, mode="dense"))


def test_place_query_asks_only_shards_that_can_match(root, data):
    records, _ = data
    lib = ShardedLibrary.open(root, "geo", encoder=HashEncoder())
    rng = np.random.default_rng(3)
    touched = []
    q = rng.standard_normal(HashEncoder.dim).astype(np.float32)
    for place in places(records, rng):
        lib.search_vector(q, 5, place=place)
        asked = set(lib.last_searched)
        for name, shard in lib.shards.items():  # a shard left out holds nothing the place lets through
            if name not in asked:
                assert shard.count(place=place) == 0
        touched.append(len(asked))
    small = [Place.of(near=(r.metadata["lon"], r.metadata["lat"], 50_000)) for r in records[:200]
             if "lon" in r.metadata]
    counts = []
    for place in small:
        lib.search_vector(q, 5, place=place)
        counts.append(len(lib.last_searched))
    assert max(counts) <= 2 and np.mean(counts) < 1.5  # a 50 km query: one shard, two near a cell edge
    lib.search_vector(q, 5, place=Place.of(after="2012-01-01"))  # no place: every shard
    assert len(lib.last_searched) == 4
    hashed = ShardedLibrary.open(root, "hashed", encoder=HashEncoder())
    hashed.search_vector(q, 5, place=Place.of(near=(0.0, 89.0, 1000)))  # the pole: no record near
    assert hashed.last_searched == []


def test_bm25_is_shard_local_and_hybrid_fuses_merged_lists(sharded, plain):
    for query in ("river boat", "farm snow", "bridge"):
        got, want = sharded.search_text(query, 1000, mode="bm25"), plain.search_text(query, 1000, mode="bm25")
        assert {h.id for h in got} == {h.id for h in want}  # the same matches, scored per shard
        where = sharded.where_are(h.id for h in got)
        local = {h.id: h.score for name, lib in sharded.shards.items() for h in lib.search_text(query, 1000, mode="bm25")}
        assert all(h.score == local[h.id] and where[h.id] in sharded.shards for h in got)
        assert [h.score for h in got] == sorted((h.score for h in got), reverse=True)
        hybrid, dense = sharded.search_text(query, 10), dict(pairs(plain.search_text(query, 50, mode="dense")))
        assert all(h.parts.get("dense", dense.get(h.id)) == dense.get(h.id) for h in hybrid)
    # no BM25 match: hybrid is RRF of the dense list alone, equal to the unsharded index's
    assert pairs(sharded.search_text("zebra", 10)) == pairs(plain.search_text("zebra", 10))
    place = Place.of(near=(20.0, 10.0, 3_000_000))
    assert pairs(sharded.search_text("zebra", 8, place=place)) == pairs(plain.search_text("zebra", 8, place=place))


def test_writes_route_to_the_right_shard(tmp_path):
    records, vectors = world(60, seed=5)
    lib = ShardedLibrary.create(tmp_path, "w", shards=3, by="geo", encoder=HashEncoder(), index_type="flat")
    report = lib.add_embedded(records, vectors)
    assert (report.added, report.skipped) == (60, 0)
    again = lib.add_embedded(records[:10], vectors[:10])
    assert (again.added, again.skipped) == (0, 10) and len(lib) == 60
    with pytest.raises(IndexExistsError):
        ShardedLibrary.create(tmp_path, "w", shards=2, by="geo", encoder=HashEncoder(), exist_ok=True)
    # an upsert that moves a record to a cell of another shard: it leaves its old shard
    m = lib.shard_map
    moved = next(r for r in records if "lon" in r.metadata)
    old = lib.where_are([moved.id])[moved.id]
    target = next((lon, lat) for lon in range(-170, 180, 7) for lat in range(-60, 61, 9)
                  if m.shard_of(moved.id, {"lon": lon, "lat": lat}) != old)
    new = ImageRecord(moved.id, moved.path, moved.split, moved.label, ["moved"], {"lon": target[0], "lat": target[1]})
    up = lib.add_embedded([new], vectors[:1], upsert=True)
    assert up.added == 1 and len(lib) == 60
    assert lib.where_are([moved.id]) == {moved.id: m.shard_of(moved.id, new.metadata)}
    found = lib.search_vector(vectors[0], 1, place=Place.of(near=(target[0], target[1], 1000)))
    assert [h.id for h in found] == [moved.id] and found[0].captions == ("moved",)
    # a record without a place goes to its id's hash shard
    lost = ImageRecord("nowhere", Path("/none/x.png"), label="farm", captions=["no place"])
    lib.add_embedded([lost], vectors[:1])
    assert lib.where_are(["nowhere"])["nowhere"] == ShardMap("w", m.shards, "hash").shard_of("nowhere", None)
    # delete asks every shard
    gone = [records[1].id, "nowhere", "not-there"]
    assert lib.delete(gone) == [records[1].id, "nowhere"]
    assert lib.get(gone) == [] and len(lib) == 59
    before = {s: dict(v) for s, v in lib.shard_map.extents.items()}
    lib.recompute_extents()
    after = lib.shard_map.extents
    assert all(set(after.get(s, {})) <= set(before[s]) for s in after)
    reopened = ShardedLibrary.open(tmp_path, "w", encoder=HashEncoder())
    assert len(reopened) == 59 and reopened.shard_map.extents == after


def test_record_boxes_follow_the_place_filter_rules():
    assert record_boxes({"lon": 10.0, "lat": 5.0}) == [(10.0, 5.0, 10.0, 5.0)]
    assert record_boxes({"lon": 179.9, "lat": 0.0, "minx": 179.5, "miny": -1.0, "maxx": -179.7, "maxy": 1.0}) == [
        (179.5, -1.0, 180.0, 1.0), (-180.0, -1.0, -179.7, 1.0)]
    assert record_boxes({"score": 3}) == [] and record_boxes({"lon": None, "lat": 2.0}) == []
    assert record_boxes({"lon": np.float32(1.5), "lat": np.int64(2)}) == [(1.5, 2.0, 1.5, 2.0)]
    assert record_boxes({"lon": float("nan"), "lat": 2.0}) == [] and record_boxes({"lon": True, "lat": 2.0}) == []


# ---- the router -----------------------------------------------------------------------------------
def _hits(answer: dict) -> list[tuple[str, float]]:
    return [(h["id"], h["score"]) for h in answer["hits"]]


def test_router_over_replica_servers_equals_sharded_library(root):
    """Four replica apps (one per shard of `geo`), one more replica of shard 0 that is down, and
    the router, all real uvicorn servers on loopback."""
    from rsrag.service import create_app, running_server
    from rsrag.service.router import create_router

    lib = ShardedLibrary.open(root, "geo", encoder=HashEncoder())
    apps = [create_app(Library(root / name, encoder=lib.encoder), token="") for name in lib.shards]
    dead = f"http://127.0.0.1:{_free_port()}"
    with running_server(apps[0]) as u0, running_server(apps[1]) as u1, running_server(apps[2]) as u2, \
            running_server(apps[3]) as u3:
        router = create_router(root, "geo", [dead, u0, u1, u2, u3], timeout=10)
        with running_server(router) as url, httpx.Client(base_url=url, timeout=30) as client:
            for body in ({"query": "farm river", "mode": "dense", "k": 10},
                         {"query": "boat", "mode": "bm25", "k": 20},
                         {"query": "snow bridge", "mode": "hybrid", "k": 10},
                         {"query": "city", "mode": "dense", "k": 5, "near": [20.0, 10.0, 3_000_000]},
                         {"query": "city", "mode": "hybrid", "k": 5, "filters": {"split": "test"},
                          "bbox": [-30, -20, 60, 40]}):
                for _ in range(2):  # twice: the dead replica of shard 0 is tried in turn, then skipped
                    reply = client.post("/search", json=body)
                    assert reply.status_code == 200, reply.text
                place = Place.of(near=body.get("near"), bbox=body.get("bbox"))
                want = lib.search_text(body["query"], body["k"], mode=body["mode"], place=place,
                                       filters=body.get("filters"))
                assert _hits(reply.json()) == pairs(want)
                assert reply.headers["x-shards"].split(",") == lib.last_searched
                if body["mode"] == "hybrid":
                    assert [h["parts"] for h in reply.json()["hits"]] == [dict(h.parts) for h in want]
            top = reply.json()["hits"][0]
            item = client.get(f"/items/{top['id']}")
            assert item.status_code == 200 and item.json()["captions"] == list(lib.get([top["id"]])[0].captions)
            assert client.get("/items/no-such-id").status_code == 404
            small = client.post("/search", json={"query": "x", "mode": "dense", "near": [10.0, 45.0, 50_000]})
            assert len(small.headers["x-shards"].split(",")) <= 2
            bad = client.post("/search", json={"query": "x", "filters": {"nope": 1}})
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_filter"
            health = client.get("/health").json()
            assert health["status"] == "ok" and health["shards"]["geo.000"] == [u0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVE = """
import sys
sys.path.insert(0, {tests!r})
import index_helpers  # registers the test encoder the index was built with
from rsrag.cli import app
app(["serve", "--index", {index!r}, "--root", {root!r}, "--port", {port!r}, "--text-precision", "fp32"])
"""


def test_router_over_rsrag_serve_processes(tmp_path):
    """Two `rsrag serve` processes, one per shard of a hash-sharded index on the same disk, behind the router."""
    from rsrag.service import running_server
    from rsrag.service.router import create_router

    records, vectors = world(120, seed=9)
    lib = ShardedLibrary.create(tmp_path, "two", shards=2, by="hash", encoder=HashEncoder(), index_type="flat")
    lib.add_embedded(records, vectors)
    ports = [_free_port() for _ in lib.shards]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "RSRAG_API_TOKEN": ""}
    procs = [subprocess.Popen([sys.executable, "-c", SERVE.format(tests=str(Path(__file__).parent), index=name,
                                                                 root=str(tmp_path), port=str(port))],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for name, port in zip(lib.shards, ports)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        deadline = time.monotonic() + 120
        for url, proc in zip(urls, procs):
            while True:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "rsrag serve did not start"
                time.sleep(0.3)
        with running_server(create_router(tmp_path, "two", urls)) as url, httpx.Client(base_url=url, timeout=30) as c:
            for mode in ("dense", "bm25", "hybrid"):
                reply = c.post("/search", json={"query": "farm river boat", "mode": mode, "k": 15})
                assert reply.status_code == 200, reply.text
                assert _hits(reply.json()) == pairs(lib.search_text("farm river boat", 15, mode=mode))
            # a write through the shared storage shows up through the replicas
            lib.add_embedded(*world(1, seed=11, start=900))
            reply = c.post("/search", json={"query": "x", "mode": "dense", "k": 5,
                                            "filters": {"id": "r0900"}})
            assert [h["id"] for h in reply.json()["hits"]] == ["r0900"]
            assert c.get("/items/r0900").json()["id"] == "r0900"  # from its hash shard only
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
            proc.stderr.close()


def test_cli_builds_and_searches_a_sharded_index(tmp_path):
    """`rsrag index build --shards N --shard-by geo` (resumable, with an unreadable image), then
    `rsrag search` on it, against an unsharded build of the same SOURCE."""
    from index_helpers import make_cli, make_records, write_captions_file
    from typer.testing import CliRunner

    runner, cli = CliRunner(), make_cli()
    records = make_records(tmp_path / "images", n_per_colour=5)
    (tmp_path / "images" / "img4.png").write_bytes(b"\x89PNG broken")
    source = write_captions_file(tmp_path / "captions.jsonl", records)
    root = tmp_path / "indexes"

    def run(*args) -> str:
        result = runner.invoke(cli, [str(a) for a in args])
        assert result.exit_code == 0, result.output + repr(result.exception)
        return result.stdout

    common = ("--root", root, "--encoder", "test-hash", "--index-type", "flat", "--json")
    built = json.loads(run("index", "build", source, "--name", "s", "--shards", 3, "--shard-by", "geo", *common))
    assert built["records"] == len(records) - 1 and built["failed"] == 1 and len(built["shards"]) == 3
    again = json.loads(run("index", "build", source, "--name", "s", "--shards", 3, "--shard-by", "geo", *common))
    assert again["added"] == 0 and again["skipped"] == len(records) - 1
    run("index", "build", source, "--name", "u", *common)
    for query, mode in (("red field", "dense"), ("green", "dense")):
        got = json.loads(run("search", query, "--index", "s", "--root", root, "--mode", mode, "--json"))["hits"]
        want = json.loads(run("search", query, "--index", "u", "--root", root, "--mode", mode, "--json"))["hits"]
        assert [(h["id"], h["score"]) for h in got] == [(h["id"], h["score"]) for h in want]
    near = json.loads(run("search", "blue", "--index", "s", "--root", root, "--mode", "dense", "--near",
                          "3,1,20000", "--json"))["hits"]
    assert near and all(abs(h["lon"] - 3) < 0.5 and abs(h["lat"] - 1) < 0.5 for h in near)


def test_scene_chips_shard_by_place(tmp_path):
    """Scenes in three UTM zones cut into chips (`index_scenes`) into a geo-sharded index: footprints
    reach the shard extents, a place query near one scene asks one shard, results equal an unsharded
    index of the same chips."""
    from test_geo import gradient, write_tif

    from rsrag.geo import Tiling, index_scenes

    scenes = tmp_path / "scenes"
    scenes.mkdir()
    places = {"italy": ("EPSG:32633", (500_000.0, 4_600_000.0)), "oregon": ("EPSG:32610", (500_000.0, 4_900_000.0)),
              "sydney": ("EPSG:32756", (300_000.0, 6_250_000.0))}
    for i, (name, (crs, origin)) in enumerate(places.items()):
        write_tif(scenes / f"{name}_2021060{i + 1}.tif", gradient(3, 200, 200, seed=i), crs=crs, origin=origin)
    plain = Library.create(tmp_path / "idx", "plain", encoder=HashEncoder(), index_type="flat")
    index_scenes(plain, [scenes], tiling=Tiling(size=100))
    lib = ShardedLibrary.create(tmp_path / "idx", "chips", shards=3, by="geo", encoder=HashEncoder(), index_type="flat")
    report = index_scenes(lib, [scenes], tiling=Tiling(size=100))
    assert report.added == len(plain) == len(lib) == 12
    assert sorted(len(shard) for shard in lib.shards.values()) == [0, 4, 8]  # three cells on two shards, here
    assert index_scenes(lib, [scenes], tiling=Tiling(size=100)).skipped_existing == 12  # resumes
    first = lib.rows(["id", "lon", "lat", "minx", "maxx"]).to_pylist()[0]
    near = Place.of(near=(first["lon"], first["lat"], 5_000))
    for text in ("red", "green field", "blue"):
        q = HashEncoder().encode_texts([text])[0]
        assert pairs(lib.search_vector(q, 5)) == pairs(plain.search_vector(q, 5))
        assert pairs(lib.search_vector(q, 5, place=near)) == pairs(plain.search_vector(q, 5, place=near))
        assert len(lib.last_searched) == 1
    from index_helpers import make_cli
    from typer.testing import CliRunner

    result = CliRunner().invoke(make_cli(), ["index", "build", str(scenes), "--name", "cli-chips", "--shards", "3",
                                             "--shard-by", "geo", "--tile", "100", "--encoder", "test-hash",
                                             "--index-type", "flat", "--root", str(tmp_path / "idx"), "--json"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    built = json.loads(result.stdout)
    assert built["records"] == built["added"] == 12 and sorted(s["records"] for s in built["shards"]) == [0, 4, 8]
