"""Request and response models of the API; their examples are what `/openapi.json` shows."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from rsrag.service.public import RESERVED_KEYS

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Scalar = Union[Annotated[str, StringConstraints(max_length=200)], bool, int, FiniteFloat]
FilterValue = Union[Scalar, None, Annotated[list[Scalar], Field(max_length=50)]]
MetaKey = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")]
ItemId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]*$")]
Caption = Annotated[str, StringConstraints(min_length=1, max_length=500)]

#: a 4x4 green PNG: examples that carry an image carry a real one
TINY_PNG_BASE64 = ("iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAFElEQVR42mO06bFhgAEmBiSAmwMAM8wBDPKYk9cAAAAAS"
                   "UVORK5CYII=")


def _require_any(alternatives: tuple[str, ...], examples: list[dict]):
    """json_schema_extra: examples, and at least one of `alternatives` present (stated in the schema,
    enforced by the endpoint: the same model also reads multipart bodies, where the image is a file)."""
    def extra(schema: dict) -> None:
        if len(alternatives) == 1:
            schema["required"] = [*schema.get("required", []), *alternatives]
        else:
            schema["anyOf"] = [{"required": [field]} for field in alternatives]
        schema["examples"] = examples
    return extra


HIT_EXAMPLE = {
    "rank": 1, "id": "ucm/harbor12", "score": 0.0323, "label": "harbor",
    "captions": ["many boats are docked in the harbor ."], "split": "test",
    "metadata": {"ucm_id": 1213}, "parts": {"dense_score": 0.41, "bm25_score": 7.9},
    "image_url": "/items/ucm/harbor12/image",
}


class ErrorInfo(BaseModel):
    status: int = Field(examples=[400])
    code: str = Field(examples=["bad_image"])
    message: str = Field(examples=["file: cannot decode image: corrupt, truncated or unsupported image data"])
    details: Optional[list[dict[str, Any]]] = Field(None, description="per-field problems (validation errors)")


class ErrorResponse(BaseModel):
    """The shape of every error response."""

    error: ErrorInfo


class PlaceFields(BaseModel):
    """Where and when (rsrag.geo.filters.Place); every part optional, the parts ANDed."""

    bbox: Optional[tuple[FiniteFloat, FiniteFloat, FiniteFloat, FiniteFloat]] = Field(
        None, description="min_lon, min_lat, max_lon, max_lat: items whose footprint (or lon/lat point) "
                          "overlaps it; min_lon > max_lon crosses the antimeridian")
    near: Optional[tuple[FiniteFloat, FiniteFloat, FiniteFloat]] = Field(
        None, description="lon, lat, metres: items within that ground distance of the point")
    within: Optional[dict[str, Any]] = Field(
        None, description="a GeoJSON geometry (or Feature / FeatureCollection) in lon/lat the item's footprint "
                          "must intersect")
    after: Optional[Annotated[str, StringConstraints(max_length=40)]] = Field(
        None, description="acquired at or after this time (2020, 2020-06-01 or ISO-8601)")
    before: Optional[Annotated[str, StringConstraints(max_length=40)]] = Field(
        None, description="acquired at or before this time")


class SearchRequest(PlaceFields):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"query": "boats in a harbor", "k": 10, "mode": "hybrid"},
        {"query": "airplanes", "k": 5, "mode": "dense", "filters": {"split": "test"}},
        {"query": "river", "filters": ["label=river,beach", "split!=train"]},
        {"query": "small lakes in farmland", "near": [-99.16, 47.02, 2000], "after": "2015-01-01"},
    ]})

    query: str = Field(min_length=1, max_length=1000, description="free text")
    k: int = Field(10, ge=1, le=100, description="number of hits")
    mode: Literal["dense", "bm25", "hybrid"] = Field(
        "hybrid", description="dense: text embedding vs image vectors; bm25: keywords over label and captions; "
                              "hybrid: reciprocal-rank fusion of both")
    filters: Union[dict[MetaKey, FilterValue], Annotated[list[Annotated[str, StringConstraints(max_length=300)]],
                                                          Field(max_length=20)], None] = Field(
        None, description="{column: value or list of values} (ANDed), or strings 'column<op>value' with op one of "
                          "= != > >= < <= ('label=a,b' means either)")


class Hit(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [HIT_EXAMPLE]})

    rank: int
    id: str
    score: float = Field(description="cosine (dense), BM25 score (bm25) or fused RRF score (hybrid)")
    label: Optional[str] = None
    captions: list[str] = []
    split: Optional[str] = None
    metadata: dict[str, Any] = {}
    parts: dict[str, Optional[float]] = Field({}, description="hybrid: the dense and bm25 scores that were fused")
    image_url: str = Field(description="thumbnail of the item")
    match: Optional[str] = Field(None, description="strong, weak or none: the text-image score on the encoder's "
                                                   "calibrated scale (absent for bm25 and image search)")


class SearchResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"query": "boats in a harbor", "mode": "hybrid", "k": 10, "took_ms": 11.2, "hits": [HIT_EXAMPLE]}]})

    query: Optional[str] = Field(None, description="the text query (absent for image search)")
    mode: str
    k: int
    took_ms: float
    hits: list[Hit]
    match: Optional[str] = Field(None, description="the best hit's match level: `none` says the library has nothing "
                                                   "that looks like the query")


class Item(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {k: v for k, v in HIT_EXAMPLE.items() if k not in ("rank", "score", "parts")}]})

    id: str
    label: Optional[str] = None
    captions: list[str] = []
    split: Optional[str] = None
    metadata: dict[str, Any] = {}
    image_url: str


class ItemIn(BaseModel):
    """A new item. JSON carries the image as `image_base64`; multipart sends it as the `file` part."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_require_any(("image_base64",), [
        {"id": "field/001", "label": "farmland", "captions": ["green fields with a road"], "split": "train",
         "metadata": {"lon": 4.35, "lat": 50.85, "source": "drone"}, "image_base64": TINY_PNG_BASE64}]))

    id: ItemId = Field(description="unique id (letters, digits and _ . : / -)", examples=["field/001"])
    label: Optional[Annotated[str, StringConstraints(max_length=100)]] = None
    captions: Annotated[list[Caption], Field(max_length=20)] = []
    split: Optional[Annotated[str, StringConstraints(max_length=32)]] = None
    metadata: Annotated[dict[MetaKey, Optional[Scalar]], Field(max_length=32)] = Field(
        {}, description="extra columns (filterable); a value must fit the column's type when it already exists; "
                        "not id, label, captions, split, path, rid or vector")
    replace: bool = Field(False, description="replace an item with the same id instead of answering 409")
    image_base64: Optional[str] = Field(None, description="JSON only: the image file, base64-encoded (required)",
                                        examples=[TINY_PNG_BASE64])

    @field_validator("metadata")
    @classmethod
    def _no_reserved_keys(cls, metadata: dict) -> dict:
        reserved = sorted(RESERVED_KEYS & set(metadata))
        if reserved:
            raise ValueError(f"metadata keys {', '.join(reserved)} are reserved (item fields or internal columns)")
        return metadata


class ItemCreated(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"replaced": False, "item": {"id": "field/001", "label": "farmland", "captions": ["green fields with a road"],
                                     "split": "train", "metadata": {"lon": 4.35}, "image_url": "/items/field/001/image"}}]})

    replaced: bool
    item: Item


class Deleted(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"deleted": "field/001"}]})

    deleted: str


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    content: Annotated[str, StringConstraints(max_length=4000)]


class QARequest(BaseModel):
    """A question about the library, an uploaded image, or both. JSON carries the image as
    `image_base64`; multipart sends it as the `file` part and `history` JSON-encoded."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_require_any(("question", "image_base64"), [
        {"question": "Where are boats moored?", "k": 5},
        {"question": "And how many are there?", "history": [
            {"role": "user", "content": "Where are boats moored?"},
            {"role": "assistant", "content": "In a harbor with many boats [1]."}]},
        {"question": "What is in this image?", "image_base64": TINY_PNG_BASE64},
    ]))

    question: Optional[Annotated[str, StringConstraints(max_length=1000, pattern=r"\S")]] = Field(
        None, description="the question (not blank)", examples=["Where are boats moored?"])
    history: Annotated[list[Turn], Field(max_length=20)] = Field([], description="earlier turns, oldest first")
    k: int = Field(5, ge=1, le=20, description="evidence items retrieved")
    generator: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] = Field(
        "extractive", description="answer generator (the server enables some; default extractive)")
    image_base64: Optional[str] = Field(None, description="JSON only: an image, base64-encoded",
                                        examples=[TINY_PNG_BASE64])
    conversation_id: Optional[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]] = Field(
        None, description="`new` starts a server-side conversation (the response carries its id); an id continues "
                          "it: earlier turns, the image in focus and what the last answer cited are kept, so "
                          "follow-ups (\"When was it built?\", \"describe the second one\") resolve against them")
    stream: bool = Field(False, description="answer as server-sent events: `token` events ({text}) as the "
                                            "generator produces them, then one `answer` event (this response)")


class QAResponse(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"answer": "Boats are moored in a harbor next to a pier [1].",
         "citations": [{"n": 1, "id": "ucm/harbor12"}],
         "evidence": [{"id": "ucm/harbor12", "label": "harbor", "score": 0.03, "image_url": "/items/ucm/harbor12/image"}],
         "timings": {"retrieve_ms": 12.0, "generate_ms": 3.1}, "generator": "extractive"}]})

    answer: str
    citations: list[Any]
    evidence: list[Any]
    timings: dict[str, Any]
    generator: str
    conversation_id: Optional[str] = Field(None, description="the conversation this turn belongs to (when one was asked for)")


class CaptionResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"caption": "many boats are docked in the harbor .", "took_ms": 180.0}]})

    caption: str
    took_ms: float


class VQAResponse(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"answer": "yes", "confidence": 0.91, "question_type": "presence", "unknown": False}]})

    answer: str
    confidence: Optional[float] = None
    question_type: Optional[str] = None
    unknown: bool = False


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"status": "ok", "index": "ucm", "records": 1800, "encoder": "rs-lite:rs-lite-lite0@3f2a",
         "writes_enabled": True, "components": {"qa": "available", "caption": "not loaded", "vqa": "not loaded"}}]})

    status: Literal["ok"]
    index: str
    records: int
    encoder: str
    writes_enabled: bool
    components: dict[str, str]


class LikeRequest(PlaceFields):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"id": "m_4709963_se_14_1_20200831:s1:r224:c0", "k": 10, "near": [-99.17, 47.02, 20000]}]})

    id: Annotated[str, StringConstraints(min_length=1, max_length=300)] = Field(description="a stored item's id")
    k: int = Field(10, ge=1, le=100, description="number of hits")


class Scene(BaseModel):
    scene: str
    datetime: Optional[str] = None
    chips: int
    bbox: list[float] = Field(description="min_lon, min_lat, max_lon, max_lat of its chips' footprints")
    overlay_bounds: Optional[list[float]] = Field(None, description="south, west, north, east of the image overlay")
    image_url: str


class ScenesResponse(BaseModel):
    tile_url: Optional[str] = Field(None, description="an XYZ tile server for the basemap (RSRAG_TILE_URL)")
    scenes: list[Scene]


class ChangeRequest(BaseModel):
    """Two dates of the served index's series to compare (scene files are not read from requests)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"before": "2009", "after": "2020"}]})

    before: Annotated[str, StringConstraints(min_length=4, max_length=40)] = Field(description="BEFORE date (2009, 2009-08-18)")
    after: Annotated[str, StringConstraints(min_length=4, max_length=40)] = Field(description="AFTER date")
    threshold: float | None = Field(None, gt=0, le=10, description="change threshold in nuisance-null units "
                                                                    "(default: chosen on val)")
    concepts: list[Annotated[str, StringConstraints(min_length=1, max_length=60)]] | None = Field(
        None, max_length=40, description="land covers to label regions with (default: rsrag's list)")


class LocalizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"scene": "m_4709963_se_14_1_20200831", "query": "small lakes", "top": 5}]})

    scene: Annotated[str, StringConstraints(min_length=1, max_length=300)] = Field(
        description="the id of a scene in this index")
    query: Annotated[str, StringConstraints(min_length=1, max_length=500)] = Field(description="what to look for")
    top: int = Field(10, ge=1, le=50, description="at most this many regions")


class LocalizeResponse(BaseModel):
    query: str
    scene: Optional[str] = None
    match: bool = Field(description="whether the best score is meaningfully above the scene's background")
    message: str
    peak: dict[str, Any] = Field(description="col, row (scene pixels) and score of the map's maximum")
    background: float = Field(description="the map's median score")
    chips: int
    took_ms: float
    grid: dict[str, Any]
    crs: Optional[str] = None
    regions: dict[str, Any] = Field(description="GeoJSON FeatureCollection (WGS84; pixel coordinates without a CRS)")
    overlay_png: str = Field(description="the heatmap as a base64 PNG (Web Mercator for a scene with a CRS, "
                                         "else the image's pixel grid); transparent when nothing matches")
    overlay_bounds: Optional[list[float]] = Field(None, description="south, west, north, east of the overlay (degrees)")
