"""`rsrag router`: one `/search` over a sharded index whose shards are served by separate replicas.

Each replica is a plain `rsrag serve --index NAME.00i` process serving one shard of a sharded
index (`rsrag.index.sharded`); all of them, and the router, read the same indexes root (a shared
disk or a mounted object store). Several replicas may serve the same shard: the router spreads
requests over them and moves on to the next when one cannot be reached. The router asks each
replica's `GET /health` which shard it serves, reads the shard map (`shards.json`, reloaded when a
writer replaces it) to skip the shards a place filter cannot reach, sends the request to one
replica of every other shard at once (httpx, asynchronously), and merges the answers as
`ShardedLibrary` does (`merge_hits`, `fuse_hybrid`): dense results equal the unsharded index's
over flat shards; BM25 ranks shard-local scores.

Hybrid asks every shard for its dense and its BM25 top-`depth` lists (two requests) and fuses the
merged lists; a replica answers at most 100 hits (the API's limit on k), so depth is
min(100, max(50, 5k)), which is `Library`'s own depth up to k = 20.

Request and response bodies are the service's own (`SearchRequest`, `SearchResponse`); the header
`X-Shards` names the shards that were asked. `GET /items/{id}` and the hits' `image_url`s
(`/items/{id}/image`) are answered by the shard holding the item. A replica that cannot be reached
is left out until the replicas are asked again (when a shard has none left, or on `GET /health`).
Writes do not go through the router: they go to the shards (`ShardedLibrary` over the same root,
e.g. `rsrag index add`), and each replica picks up the committed change on its next request.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Sequence
from urllib.parse import quote

import httpx
from fastapi import FastAPI, Request, Response

from rsrag.index.sharded import ShardMapFile, fuse_hybrid, merge_hits
from rsrag.service import schemas as S
from rsrag.service.errors import ApiError, install_error_handlers
from rsrag.service.routes import error_docs
from rsrag.service.routes.search import place_of, respond

log = logging.getLogger(__name__)

MAX_K = 100  # SearchRequest's limit on k: the most one replica answers


class Replicas:
    """Which replica URLs serve which shard (asked from each replica's /health), and a rotation
    over each shard's replicas."""

    def __init__(self, urls: Sequence[str], shards: Sequence[str]) -> None:
        if not urls:
            raise ValueError("the router needs at least one replica URL")
        self.urls = [u.rstrip("/") for u in urls]
        self.shards = list(shards)
        self.serving: dict[str, list[str]] = {}
        self._turn: dict[str, itertools.count] = {}
        self._lock = asyncio.Lock()

    async def discover(self, client: httpx.AsyncClient) -> None:
        """Ask every replica which index it serves; unreachable ones are left out until the next time."""
        async def name_of(url: str) -> str | None:
            try:
                reply = await client.get(f"{url}/health")
                reply.raise_for_status()
                return reply.json().get("index")
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("replica %s did not answer /health: %s", url, exc)
                return None

        names = await asyncio.gather(*(name_of(u) for u in self.urls))
        serving: dict[str, list[str]] = {}
        for url, name in zip(self.urls, names):
            if name is not None:
                serving.setdefault(name, []).append(url)
        self.serving = serving

    async def order(self, shard: str, client: httpx.AsyncClient) -> list[str]:
        """The shard's replicas, the next one in turn first; asks the replicas again when none is known."""
        if not self.serving.get(shard):
            async with self._lock:
                if not self.serving.get(shard):
                    await self.discover(client)
        urls = self.serving.get(shard, [])
        if not urls:
            raise ApiError(503, f"no replica serves shard {shard!r}", code="unavailable")
        start = next(self._turn.setdefault(shard, itertools.count())) % len(urls)
        return urls[start:] + urls[:start]

    def forget(self, shard: str, url: str) -> None:
        """A replica that could not be reached: left out until the next discovery."""
        if url in self.serving.get(shard, []):
            self.serving[shard] = [u for u in self.serving[shard] if u != url]


async def _send(client: httpx.AsyncClient, replicas: Replicas, shard: str, method: str, path: str,
                **kwargs: Any) -> httpx.Response:
    """A request to a replica of `shard`, moving on to its next replica when one cannot be reached
    or answers 5xx; 503 when none answers."""
    last = "no replica answered"
    for url in await replicas.order(shard, client):
        try:
            reply = await client.request(method, f"{url}{path}", **kwargs)
        except httpx.HTTPError as exc:
            replicas.forget(shard, url)
            last = type(exc).__name__
            continue
        if reply.status_code < 500:
            return reply
        last = f"status {reply.status_code}"
    raise ApiError(503, f"shard {shard!r} is unavailable ({last})", code="unavailable")


async def _ask(client: httpx.AsyncClient, replicas: Replicas, shard: str, body: dict) -> dict:
    """POST /search to a replica of `shard`; a 4xx answer (bad filter, bad place) is the client's
    error and is passed on as is."""
    reply = await _send(client, replicas, shard, "POST", "/search", json=body)
    if reply.status_code < 400:
        return reply.json()
    try:
        error = reply.json()["error"]
    except (ValueError, KeyError, TypeError):
        error = {"message": reply.text[:200], "code": None}
    raise ApiError(reply.status_code, error.get("message", ""), code=error.get("code"))


def _merge(body: S.SearchRequest, dense: list[dict], bm25: list[dict]) -> tuple[list[dict], str | None]:
    """The merged hits and the overall match level, from the replicas' answers."""
    by_score = {"id_of": lambda h: h["id"], "score_of": lambda h: h["score"]}
    if body.mode != "hybrid":
        hits = merge_hits([r["hits"] for r in (dense or bm25)], body.k, **by_score)
        best = hits[0].get("match") if hits and body.mode == "dense" else None
        overall = best if hits else next((r.get("match") for r in dense), None)
    else:
        depth = min(MAX_K, max(50, 5 * body.k))
        fused = fuse_hybrid(merge_hits([r["hits"] for r in dense], depth, **by_score),
                            merge_hits([r["hits"] for r in bm25], depth, **by_score), body.k, **by_score)
        level = {h["id"]: h.get("match") for r in dense for h in r["hits"]}
        hits = [{**hit, "score": score, "parts": parts, "match": level.get(hit["id"]) if "dense" in parts else None}
                for hit, score, parts in fused]
        scale = any(r.get("match") is not None for r in dense)  # the encoder has a calibrated scale
        with_dense = [h for h in hits if "dense" in h["parts"]]
        overall = (max(with_dense, key=lambda h: h["parts"]["dense"])["match"] if with_dense else "none") \
            if scale else None
    for rank, hit in enumerate(hits, start=1):
        hit["rank"] = rank
    return hits, overall


def create_router(root: str | Path | None, name: str, replicas: Sequence[str], *, timeout: float = 30.0,
                  transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The router app over sharded index NAME under ROOT, whose shards `replicas` (base URLs) serve.
    `transport`: an httpx transport for the replica requests (tests may route them in process)."""
    maps = ShardMapFile.of(root, name)
    pool = Replicas(replicas, maps.current().shards)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if "client" in state:
            await state.pop("client").aclose()

    app = FastAPI(title="rsrag router", version="0.1.0", lifespan=lifespan, description=(
        f"Search sharded index {name!r} across its replicas: one /search, merged. Errors answer "
        "`{\"error\": {status, code, message, details}}`."))
    install_error_handlers(app)

    def client() -> httpx.AsyncClient:
        if "client" not in state:  # made on the first request, inside the server's event loop
            state["client"] = httpx.AsyncClient(timeout=timeout, transport=transport)
        return state["client"]

    @app.post("/search", response_model=S.SearchResponse, tags=["search"],
              responses=error_docs(400, 413, 422, 503))
    async def search(body: S.SearchRequest, request: Request, response: Response):
        """Search by text over every shard the place filter can reach; merged as one index would answer."""
        t0 = time.perf_counter()
        targets = maps.current().shards_for(place_of(body))
        request_body = body.model_dump(exclude_none=True)
        if body.mode == "hybrid":
            depth = min(MAX_K, max(50, 5 * body.k))
            modes = ("dense", "bm25")
        else:
            depth, modes = body.k, (body.mode,)
        answers = await asyncio.gather(*(
            _ask(client(), pool, shard, {**request_body, "mode": mode, "k": depth})
            for mode in modes for shard in targets))
        per_mode = {mode: answers[i * len(targets):(i + 1) * len(targets)] for i, mode in enumerate(modes)}
        hits, overall = _merge(body, per_mode.get("dense", []), per_mode.get("bm25", []))
        result = {"query": body.query, "mode": body.mode, "k": body.k, "match": overall,
                  "took_ms": round((time.perf_counter() - t0) * 1000, 2), "hits": hits}
        out = respond(result, request)
        (out if isinstance(out, Response) else response).headers["X-Shards"] = ",".join(targets)
        return out

    @app.get("/items/{item_path:path}", tags=["items"], response_class=Response, responses=error_docs(404, 503))
    async def item(item_path: str, request: Request) -> Response:
        """An item (`/items/{id}`) or its thumbnail (`/items/{id}/image`) from the shard holding it: the
        id's shard under hash sharding, else every shard is asked."""
        item_id = item_path.removesuffix("/image")
        m = maps.current()
        shards = [m.shard_of(item_id, None)] if m.by == "hash" else m.shards
        path = f"/items/{quote(item_path, safe='/:')}"
        replies = await asyncio.gather(*(_send(client(), pool, s, "GET", path, params=request.query_params)
                                         for s in shards))
        found = next((r for r in replies if r.status_code == 200), None)
        if found is None:
            bad = next((r for r in replies if r.status_code != 404), None)  # e.g. a bad thumbnail size
            if bad is not None:
                return Response(bad.content, status_code=bad.status_code, media_type=bad.headers.get("content-type"))
            raise ApiError(404, f"no item {item_id!r}")
        return Response(found.content, media_type=found.headers.get("content-type"))

    @app.get("/health", tags=["service"])
    async def health() -> dict:
        """The shards, the replicas serving each (asked again now), and which shards have none."""
        await pool.discover(client())
        shards = maps.current().shards
        missing = [s for s in shards if not pool.serving.get(s)]
        return {"status": "ok" if not missing else "degraded", "index": name,
                "shards": {s: pool.serving.get(s, []) for s in shards}, "missing": missing}

    return app


def serve_router(root: str | Path | None, name: str, replicas: Sequence[str], host: str = "127.0.0.1",
                 port: int = 8080, log_level: str = "info") -> None:
    """Run the router under uvicorn until interrupted."""
    import uvicorn

    from rsrag.service.server import server_options

    uvicorn.run(create_router(root, name, replicas), host=host, port=port, log_level=log_level, access_log=False,
                **server_options())
