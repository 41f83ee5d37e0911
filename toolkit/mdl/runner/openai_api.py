"""The OpenAI API the runner answers under `/engines/v1`, `/engines/llama.cpp/v1` and `/v1`.

`GET models`, `GET models/{model}`, `POST chat/completions`, `POST completions`, `POST embeddings`.
`model` is a reference normalized like the CLI's (`ai/tiny` is `docker.io/ai/tiny:latest`) or a model
ID. Streams are server-sent events, `data: {json}` per chunk and `data: [DONE]` at the end. Bodies
are translated to the internal request and answers back by api/openai_shapes.py; api/gateway.py runs
them (the Responses API is api/responses.py).
"""

from __future__ import annotations

import array
import base64
import json
import sys
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..timestamps import unix_time
from .api import openai_shapes
from .api.gateway import embed, generate, open_stream, recorded, stream_response
from .api_errors import ApiError, error_param
from .catalog import familiar, is_gguf, summaries, summary_of
from .request_body import model_of, read_json, require

PREFIXES = ("/engines/v1", "/engines/llama.cpp/v1", "/v1")
SSE_TYPE = "text/event-stream"
_DONE = b"data: [DONE]\n\n"


# ---------------------------------------------------------------------------------------------
# models


async def list_models(request: Request) -> Response:
    found = await run_in_threadpool(summaries, request.app.state.store)
    data = []
    for s in found:
        if not is_gguf(s):
            continue
        for name in [familiar(t) for t in s.tags] or [s.digest]:
            data.append({"id": name, "object": "model", "created": unix_time(s.created), "owned_by": "docker"})
    return JSONResponse({"object": "list", "data": data})


@error_param("model")
async def get_model(request: Request) -> Response:
    s = await run_in_threadpool(summary_of, request.app.state.store, request.path_params["model"])
    return JSONResponse({"id": familiar(s.tags[0]) if s.tags else s.digest, "object": "model",
                         "created": unix_time(s.created), "owned_by": "docker"})


# ---------------------------------------------------------------------------------------------
# generation and embeddings


@error_param("model")
async def chat_completions(request: Request) -> Response:
    return await recorded(request, "chat", lambda state, record: _answer(request, state, record, "chat"))


@error_param("model")
async def completions(request: Request) -> Response:
    return await recorded(request, "completion", lambda state, record: _answer(request, state, record, "completion"))


@error_param("model")
async def embeddings(request: Request) -> Response:
    return await recorded(request, "embedding", lambda state, record: _answer(request, state, record, "embedding"))


async def _answer(request: Request, state, record, kind: str) -> Response:
    """One OpenAI call: the body's shape is checked here and by its translator (openai_shapes.py)."""
    body = await read_json(request, state.max_body)
    model = model_of(body)
    if kind == "chat":
        require(body, "messages", (list,), "an array of messages")
    elif kind == "completion":
        require(body, "prompt", (str, list), "a string or an array of strings")
    else:
        require(body, "input", (str, list), "a string or an array of strings")
    stream = body.get("stream", False)
    if stream not in (True, False, None):
        raise ApiError(400, "'stream' must be a boolean", param="stream", code="invalid_type")
    if kind == "embedding":
        if stream:
            raise ApiError(400, "embeddings cannot be streamed", param="stream", code="invalid_value")
        doc = await embed(state, record, model, _embed_body(body))
        return JSONResponse(_base64(doc) if body.get("encoding_format") == "base64" else doc)
    # image parts are let through here: the engine knows whether its model has a projector
    req = openai_shapes.chat_request(body, True, model) if kind == "chat" else \
        openai_shapes.completion_request(body, model)
    if stream:
        started = await open_stream(state, record, model, req)
        return stream_response(started, _SseWire(req, openai_shapes.wants_usage(body)), SSE_TYPE)
    result = await generate(state, record, model, req)
    return JSONResponse(openai_shapes.chat_doc(result) if kind == "chat" else openai_shapes.completion_doc(result))


class _SseWire:
    """OpenAI's server-sent events: `data: {chunk}` each, `data: [DONE]` at the end."""

    def __init__(self, req, include_usage: bool):
        self._writer = openai_shapes.ChunkWriter(req, include_usage)

    def event(self, ev: dict) -> bytes:
        return b"".join(_sse(chunk) for chunk in self._writer.write(ev))

    def end(self) -> bytes:
        return _DONE

    def error(self, err: ApiError) -> bytes:
        return _sse(err.body())


def _sse(doc: Any) -> bytes:
    return b"data: " + json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def _embed_body(body: dict) -> dict:
    """The engine's embedding request. `encoding_format: "base64"` (what the official `openai` clients
    send by default) is the wire format of the same vectors, done here (`_base64`) so the engine only
    computes floats."""
    return {k: v for k, v in body.items() if k != "encoding_format"} if body.get("encoding_format") == "base64" \
        else body


def _base64(doc: dict) -> dict:
    """The vectors as little-endian float32, base64-encoded."""
    for item in doc.get("data") or ():
        if isinstance(item, dict) and isinstance(item.get("embedding"), list):
            packed = array.array("f", item["embedding"])
            if sys.byteorder != "little":
                packed.byteswap()
            item["embedding"] = base64.b64encode(packed.tobytes()).decode("ascii")
    return doc
