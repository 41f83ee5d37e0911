"""The OpenAI API the runner answers under `/engines/v1`, `/engines/llama.cpp/v1` and `/v1`.

`GET models`, `GET models/{model}`, `POST chat/completions`, `POST completions`, `POST embeddings`.
`model` is a reference normalized like the CLI's (`ai/tiny` is `docker.io/ai/tiny:latest`) or a model
ID. Streams are server-sent events, `data: {json}` per chunk and `data: [DONE]` at the end.

llama.cpp calls block, so every engine call runs in a worker thread inside `scheduler.acquire(...)`:
the scheduler's per-model FIFO orders requests and the event loop stays free. A stream runs in its
own thread (a `Pump`) that hands chunks to the loop; when the client goes away the thread stops after
the token it is on and releases the model.
"""

from __future__ import annotations

import array
import base64
import json
import sys
import threading
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..timestamps import unix_time
from .api_errors import ApiError, error_param, status_of, to_api_error
from .catalog import familiar, is_gguf, summaries, summary_of
from .pump import Pump
from .request_body import model_of, read_json, require
from .request_log import answer_of

PREFIXES = ("/engines/v1", "/engines/llama.cpp/v1", "/v1")
SSE_TYPE = "text/event-stream"
_DONE = b"data: [DONE]\n\n"
_STOPPING = ApiError(503, "the server is stopping: the answer was cut short", type="server_error",
                     code="server_stopping")


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
    return await _answer(request, "chat")


@error_param("model")
async def completions(request: Request) -> Response:
    return await _answer(request, "completion")


@error_param("model")
async def embeddings(request: Request) -> Response:
    return await _answer(request, "embedding")


async def _answer(request: Request, kind: str) -> Response:
    """One OpenAI call: the body's shape is checked here, its values by the engine (validation.py).
    Every call, answered or refused, is a record of the request log (request_log.py)."""
    state = request.app.state
    record = state.requests.start(kind)
    try:
        body = await read_json(request, state.max_body)
        model = model_of(body)
        record.request(model, body)
        return await _dispatch(state, model, body, kind, record)
    except Exception as e:
        record.finish(status_of(e), error=str(e))
        raise


async def _dispatch(state, model: str, body: dict, kind: str, record) -> Response:
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
        call = _embed_call(body)
    elif stream:
        record.stream = True
        return await _stream(state, model, body, kind, record)
    elif kind == "chat":
        call = lambda engine: engine.chat(body)  # noqa: E731
    else:
        call = lambda engine: engine.complete(body)  # noqa: E731
    doc, label = await run_in_threadpool(_run_engine, state.scheduler, model, kind == "embedding", call)
    if kind != "embedding":
        _count_tokens(state.metrics, label, doc)
        record.finish(200, model=label, answer=answer_of(doc), usage=doc.get("usage"))
    else:
        record.finish(200, model=label, answer=f"{len(doc.get('data') or ())} vectors", usage=doc.get("usage"))
    return JSONResponse(doc)


def _run_engine(scheduler, model: str, embedding: bool, call: Callable[[Any], dict]) -> tuple[dict, str]:
    with scheduler.acquire(model, embedding=embedding) as engine:
        return call(engine), _label(engine, model)


async def _stream(state, model: str, body: dict, kind: str, record) -> Response:
    scheduler, metrics = state.scheduler, state.metrics
    seen: dict[str, Any] = {"label": model, "usage": None}  # what the producer learnt, for the record
    # The engine always ends with its usage chunk (the record and the metrics count real tokens); it is
    # passed on only when the client asked for it.
    options = body.get("stream_options")
    client_wants_usage = isinstance(options, dict) and options.get("include_usage") is True
    if options is None or (isinstance(options, dict) and "include_usage" not in options):
        body = dict(body, stream_options={**(options or {}), "include_usage": True})

    def produce(emit, cancelled: threading.Event) -> None:
        if cancelled.is_set():
            return
        label, generated, usage = model, 0, None
        try:
            with scheduler.acquire(model, embedding=False) as engine:
                label = seen["label"] = _label(engine, model)
                chunks = engine.chat_stream(body) if kind == "chat" else engine.complete_stream(body)
                try:
                    for chunk in chunks:
                        generated += bool(_chunk_text(chunk))
                        if isinstance(chunk, dict) and isinstance(chunk.get("usage"), dict):
                            usage = seen["usage"] = chunk
                            if not client_wants_usage:
                                continue
                        emit(chunk)
                        if cancelled.is_set():  # the client went away: stop after this token
                            break
                finally:
                    close = getattr(chunks, "close", None)
                    if close is not None:
                        close()
        finally:
            seen["generated"] = generated
            if usage is not None:
                _count_tokens(metrics, label, usage)
            else:
                metrics.tokens(label, generated)

    pump = Pump(produce, "mdl-stream").start()
    first = await pump.get()
    if first[0] == "error":  # before the first chunk: still a plain error response
        raise first[1]
    record.first_token()

    async def events():
        item, finished = first, False
        try:
            while True:
                what, value = item
                if what == "item":
                    record.text(_chunk_text(value))
                    yield _sse(value)
                elif what == "end":
                    yield _DONE
                    finished = True
                    record.finish(200, model=seen["label"], usage=(seen["usage"] or {}).get("usage")
                                  or {"completion_tokens": seen.get("generated")})
                    return
                else:
                    err = to_api_error(value, param="model") if what == "error" else _STOPPING
                    yield _sse(err.body())
                    finished = True
                    record.finish(err.status, model=seen["label"], error=err.message)
                    return
                item = await pump.get(state.stopping)
        finally:
            pump.cancel()
            if not finished:
                metrics.stream_cancelled()
                record.finish(499, model=seen["label"], error="the client closed the connection mid-stream")

    return StreamingResponse(events(), media_type=SSE_TYPE,
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _sse(doc: Any) -> bytes:
    return b"data: " + json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def _count_tokens(metrics, model: str, doc: Any) -> None:
    usage = doc.get("usage") if isinstance(doc, dict) else None
    if isinstance(usage, dict):
        metrics.tokens(model, int(usage.get("completion_tokens") or 0), int(usage.get("prompt_tokens") or 0))


def _embed_call(body: dict) -> Callable[[Any], dict]:
    """The engine call for an embeddings request. `encoding_format: "base64"` (what the official
    `openai` clients send by default) is the wire format of the same vectors: little-endian float32,
    base64-encoded; it is done here so the engine only computes floats."""
    if body.get("encoding_format") != "base64":
        return lambda engine: engine.embed(body)
    floats = {k: v for k, v in body.items() if k != "encoding_format"}

    def call(engine) -> dict:
        doc = engine.embed(floats)
        for item in doc.get("data") or ():
            if isinstance(item, dict) and isinstance(item.get("embedding"), list):
                packed = array.array("f", item["embedding"])
                if sys.byteorder != "little":
                    packed.byteswap()
                item["embedding"] = base64.b64encode(packed.tobytes()).decode("ascii")
        return doc

    return call


def _label(engine, fallback: str) -> str:
    """The metrics label of a model: its familiar reference (`ai/tiny:latest`), whatever the request said."""
    reference = getattr(getattr(engine, "resolved", None), "reference", None)
    return familiar(reference) if reference else fallback


def _chunk_text(chunk: Any) -> str:
    """The generated text a streamed chunk carries (llama.cpp streams one token per chunk)."""
    if not isinstance(chunk, dict):
        return ""
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict) and isinstance(delta.get("content"), str) and delta["content"]:
            return delta["content"]
        if isinstance(choice.get("text"), str) and choice["text"]:
            return choice["text"]
    return ""
