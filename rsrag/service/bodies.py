"""Request bodies that are either JSON or multipart (`POST /qa`, `POST /items`): parsing them into
one pydantic model plus a checked image, and describing both forms in the OpenAPI document.

In JSON the image is `image_base64`; in a form it is the `file` part, and lists and objects are
JSON-encoded fields (a list may also be one field per item).
"""

from __future__ import annotations

import base64
import binascii
import json
from functools import lru_cache
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from rsrag.service.errors import ApiError
from rsrag.service.uploads import MiB, ImageDecoder, UploadedImage


@lru_cache(maxsize=None)  # a model's JSON schema is built once, not on every multipart request
def structured_fields(model: type[BaseModel]) -> dict[str, str]:
    """Fields that are lists or objects ("array" / "object"): a form sends them as JSON or, for a
    list, as one form field per item."""
    out = {}
    for name, prop in model.model_json_schema()["properties"].items():
        kinds = {p.get("type") for p in prop.get("anyOf", [prop])} | ({"object"} if "$ref" in prop else set())
        for kind in ("array", "object"):
            if kind in kinds:
                out[name] = kind
    return out


def form_value(name: str, values: list[str], kind: str) -> Any:
    """A list or object from form fields: one JSON-encoded value, or (lists) one field per item,
    each item JSON if it is a JSON object (history turns) and plain text otherwise (captions)."""
    if len(values) == 1:
        try:
            parsed = json.loads(values[0])
        except ValueError:
            parsed = None
        if isinstance(parsed, list if kind == "array" else dict):
            return parsed
    if kind == "object":
        raise ApiError(422, f"{name} must be a JSON-encoded object")
    items = []
    for value in values:
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        items.append(parsed if isinstance(parsed, dict) else value)
    return items


def body_spec(model: type[BaseModel]) -> dict:
    """openapi_extra for a body that is either `model` as JSON or the same fields as multipart
    (lists and objects as JSON-encoded parts, the image as the `file` part)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    structured = structured_fields(model)
    props = {name: prop for name, prop in schema["properties"].items() if name != "image_base64"}
    props["file"] = {"type": "string", "format": "binary", "minLength": 1,
                     "description": "the image (JPEG, PNG, TIFF or WebP)"}
    as_form = {"image_base64": "file"}  # in a form the image is the `file` part
    form: dict[str, Any] = {"type": "object", "properties": props}
    if schema.get("required"):
        form["required"] = [as_form.get(f, f) for f in schema["required"]]
    if "anyOf" in schema:  # one of these must be there
        form["anyOf"] = [{"required": [as_form.get(f, f) for f in alt["required"]]} for alt in schema["anyOf"]]
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"},
                             "examples": {f"example{i}": {"value": v} for i, v in
                                          enumerate(schema.get("examples", []), start=1)}},
        "multipart/form-data": {"schema": form, "encoding": {
            name: {"contentType": "application/json"} for name in structured}}}}}


async def read_body(request: Request, model: type[BaseModel],
                    decoder: ImageDecoder) -> tuple[Any, UploadedImage | None]:
    """Parse a JSON or form body into `model`, plus its checked image (`image_base64` / `file`)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    image: bytes | None = None
    if ctype == "application/json":
        try:
            data = await request.json()
        except ValueError:
            raise ApiError(400, "body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(422, "body must be a JSON object")
        raw = data.pop("image_base64", None)
        if raw is not None:
            try:
                image = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise ApiError(400, "image_base64 is not valid base64", code="bad_image") from None
    elif ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        data = {}
        structured = structured_fields(model)
        form = await request.form(max_files=1, max_fields=64, max_part_size=MiB)
        try:
            for key in form.keys():
                values = form.getlist(key)
                if key == "file" and len(values) == 1 and not isinstance(values[0], str):
                    image = await values[0].read(decoder.limits.max_bytes + 1)
                elif key in ("file", "image_base64") or not all(isinstance(v, str) for v in values):
                    raise ApiError(422, f"{key}: send the image as one file part named 'file'")
                elif key in structured:
                    data[key] = form_value(key, values, structured[key])
                else:
                    data[key] = values[0] if len(values) == 1 else values
        finally:
            await form.close()
    else:
        raise ApiError(415, "send the body as application/json or multipart/form-data")
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    upload = await run_in_threadpool(decoder.check, image) if image is not None else None
    return parsed, upload
