"""A request's JSON body, read within a size limit, and the fields every route needs from it.

Failures are `ApiError`s with OpenAI's codes (`request_too_large`, `invalid_json`,
`missing_required_parameter`, `invalid_type`); what a field may hold beyond its type is checked by
`validation.py` when the engine reads the request.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from .api_errors import ApiError

MAX_BODY = 8 << 20  # bytes of a request body


async def read_json(request: Request, limit: int) -> dict:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise ApiError(413, f"the request body is {length} bytes, over the limit of {limit}",
                       code="request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the request body is over the limit of {limit} bytes", code="request_too_large")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise ApiError(400, "the request body is empty: send a JSON object", code="invalid_json")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the request body is not valid JSON: {e}", code="invalid_json") from None
    except RecursionError:  # `[[[[...` a few thousand deep: the parser's recursion limit, not a server fault
        raise ApiError(400, "the request body is not valid JSON: nested too deeply", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
    return body


def require(body: dict, name: str, kinds: tuple[type, ...], what: str) -> Any:
    if name not in body or body[name] is None:
        raise ApiError(400, f"missing required parameter '{name}'", param=name, code="missing_required_parameter")
    value = body[name]
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise ApiError(400, f"'{name}' must be {what}", param=name, code="invalid_type")
    return value


def model_of(body: dict) -> str:
    model = require(body, "model", (str,), "a string naming a model")
    if not model.strip():
        raise ApiError(400, "'model' is empty", param="model", code="invalid_value")
    return model.strip()
