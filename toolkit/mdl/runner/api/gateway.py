"""The server's side of every API's call: the model's engine, the request log, metrics, streams.

An API's endpoint reads its body into an internal request (internal.py) and calls one of these:

- `recorded(request, api, answer)`: runs `answer(state, record)`; a failure is recorded, then raised for
  the error handlers (api_errors.py), which answer in the endpoint's own error shape;
- `generate`, `count_tokens`, `embed`: one engine call in a worker thread, inside
  `scheduler.acquire(...)` (the scheduler's per-model FIFO orders requests; the event loop stays free);
- `open_stream` then `stream_response`: a stream runs in its own thread (a `Pump`) that hands the
  internal events to the loop; errors before the first event are raised (a plain error response), later
  ones end the stream with the API's error event. When the client goes away the thread stops after the
  token it is on and releases the model.

What is written on the wire is the API's `Wire`: bytes for each internal event, for the end, and for
an error.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..catalog import familiar
from ..pump import Pump
from ..api_errors import ApiError, status_of, to_api_error
from .internal import CHAT, GenRequest, GenResult

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
STOPPING = ApiError(503, "the server is stopping: the answer was cut short", type="server_error",
                    code="server_stopping")


class Wire(Protocol):
    def event(self, ev: dict) -> bytes: ...

    def end(self) -> bytes: ...

    def error(self, err: ApiError) -> bytes: ...


async def recorded(request: Request, api: str, answer: Callable[[Any, Any], Awaitable[Response]]) -> Response:
    """`answer(state, record)`, one record of the request log (request_log.py) whatever happens."""
    state = request.app.state
    record = state.requests.start(api)
    try:
        return await answer(state, record)
    except Exception as e:
        record.finish(status_of(e), error=str(e))
        raise


def note_request(record, model: str, req: GenRequest) -> None:
    """The record's model and prompt excerpt: the last message, or the prompt."""
    prompt: Any = req.prompt
    if req.kind == CHAT and req.messages:
        prompt = req.messages[-1].get("content")
        if isinstance(prompt, list):
            prompt = " ".join(p.get("text", "") for p in prompt if isinstance(p, dict) and isinstance(p.get("text"), str))
    record.request(model, {}, prompt=prompt)


def _label(engine, fallback: str) -> str:
    """The metrics label of a model: its familiar reference (`ai/tiny:latest`), whatever the request said."""
    reference = getattr(getattr(engine, "resolved", None), "reference", None)
    return familiar(reference) if reference else fallback


def _run(scheduler, model: str, embedding: bool, keep_alive: float | None, call: Callable[[Any], Any]):
    with scheduler.acquire(model, embedding=embedding, keep_alive=keep_alive) as engine:
        return call(engine), _label(engine, model)


def count_usage(metrics, model: str, usage: Any) -> None:
    if isinstance(usage, dict):
        metrics.tokens(model, int(usage.get("completion_tokens") or 0), int(usage.get("prompt_tokens") or 0))


async def generate(state, record, model: str, req: GenRequest, *, keep_alive: float | None = None) -> GenResult:
    """The whole answer to `req` on `model`; the record is finished with it."""
    note_request(record, model, req)
    result, label = await run_in_threadpool(_run, state.scheduler, model, False, keep_alive,
                                            lambda engine: engine.generate(req))
    count_usage(state.metrics, label, result.usage)
    first = result.choices[0] if result.choices else None
    answer = ""
    if first is not None:
        answer = first.text or " ".join(f"{c.name}({c.arguments})" for c in first.tool_calls)
    record.finish(200, model=label, answer=answer[:200], usage=result.usage)
    return result


async def count_tokens(state, model: str, req: GenRequest) -> int:
    n, _ = await run_in_threadpool(_run, state.scheduler, model, False, None, lambda engine: engine.count_tokens(req))
    return n


async def embed(state, record, model: str, body: dict, *, keep_alive: float | None = None) -> dict:
    """The vectors of an embeddings body (`{"input": [...]}`: the engine's embedding request)."""
    record.request(model, {}, prompt=(body.get("input") or [""])[0])
    doc, label = await run_in_threadpool(_run, state.scheduler, model, True, keep_alive,
                                         lambda engine: engine.embed(body))
    record.finish(200, model=label, answer=f"{len(doc.get('data') or ())} vectors", usage=doc.get("usage"))
    return doc


class Stream:
    """A started stream: its events, read with `async for`, and what the record needs at the end."""

    def __init__(self, state, record, pump: Pump, first: tuple, seen: dict):
        self.state, self.record, self._pump, self._first, self.seen = state, record, pump, first, seen

    async def items(self):
        item = self._first
        while True:
            yield item
            if item[0] != "item":
                return
            item = await self._pump.get(self.state.stopping)

    def cancel(self) -> None:
        self._pump.cancel()


async def open_stream(state, record, model: str, req: GenRequest, *, keep_alive: float | None = None) -> Stream:
    """Start `req` streaming on `model`; its errors before the first event are raised here."""
    note_request(record, model, req)
    record.stream = True
    scheduler, metrics = state.scheduler, state.metrics
    seen: dict[str, Any] = {"label": model, "usage": None, "generated": 0}

    def produce(emit, cancelled: threading.Event) -> None:
        if cancelled.is_set():
            return
        try:
            with scheduler.acquire(model, embedding=False, keep_alive=keep_alive) as engine:
                seen["label"] = _label(engine, model)
                events = engine.generate_stream(req)
                try:
                    for ev in events:
                        if ev["type"] == "usage":
                            seen["usage"] = ev["usage"]
                        elif ev["type"] == "text":
                            seen["generated"] += 1
                        emit(ev)
                        if cancelled.is_set():  # the client went away: stop after this token
                            break
                finally:
                    events.close()
        finally:
            if seen["usage"] is not None:
                count_usage(metrics, seen["label"], seen["usage"])
            else:
                metrics.tokens(seen["label"], seen["generated"])

    pump = Pump(produce, "mdl-stream").start()
    first = await pump.get()
    if first[0] == "error":  # before the first event: still a plain error response
        raise first[1]
    record.first_token()
    return Stream(state, record, pump, first, seen)


def stream_response(stream: Stream, wire: Wire, media_type: str) -> StreamingResponse:
    """The HTTP answer of a started stream, written by `wire`."""
    record, metrics, seen = stream.record, stream.state.metrics, stream.seen

    async def body():
        finished = False
        try:
            async for what, value in stream.items():
                if what == "item":
                    if value["type"] == "text":
                        record.text(value["text"])
                    elif value["type"] == "tool_call":
                        record.text(f"{value['name']}(…) ")
                    data = wire.event(value)
                    if data:
                        yield data
                elif what == "end":
                    finished = True
                    record.finish(200, model=seen["label"],
                                  usage=seen["usage"] or {"completion_tokens": seen["generated"]})
                    yield wire.end()
                else:
                    err = to_api_error(value, param="model") if what == "error" else STOPPING
                    finished = True
                    record.finish(err.status, model=seen["label"], error=err.message)
                    yield wire.error(err)
        finally:
            stream.cancel()
            if not finished:
                metrics.stream_cancelled()
                record.finish(499, model=seen["label"], error="the client closed the connection mid-stream")

    return StreamingResponse(body(), media_type=media_type, headers=STREAM_HEADERS)
