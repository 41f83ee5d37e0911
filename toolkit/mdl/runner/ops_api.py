"""The operations API, at Docker Model Runner's paths (what `mdl ps`, `unload`, `configure`,
`requests`, `status` and `logs` call):

- `GET /engines/status`: running, version, what is loaded;
- `GET /engines/ps`: the loaded models (backend, mode, memory, last used, in flight, keep-alive, pid);
- `GET /engines/df`: the store's disk usage;
- `POST /engines/unload`: `{"models": [...]}` or `{"all": true}`, answers `{"unloaded_runners": n}`;
- `POST /engines/_configure` (also under `/engines/{backend}/`): a model's context size, keep-alive,
  mode and sampling defaults (settings.py), applied at its next load; `GET` lists them;
- `GET /engines/requests`: the recent requests (`?model=`), or with `?follow` a stream of new ones
  (server-sent events);
- `GET /version`; `GET /logs` (text, `?follow` streams).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from importlib.metadata import PackageNotFoundError, version as package_version

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from .. import __version__
from .api_errors import ApiError, error_param
from .catalog import familiar
from .feeds import rfc3339
from .pump import STOP_CHECK
from .request_body import read_json
from .request_log import matches
from .settings import format_duration, read_configure

BACKEND = "llama.cpp"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
HEARTBEAT = 15.0  # seconds between keep-alive comments on a followed stream


def backend_version() -> str:
    try:
        return package_version("llama_cpp_python")
    except PackageNotFoundError:
        return "unknown"


async def version(request: Request) -> Response:
    return JSONResponse({"version": __version__, "backend": BACKEND,
                         "llama_cpp_python": request.app.state.backend_version})


async def status(request: Request) -> Response:
    state = request.app.state
    loaded = await run_in_threadpool(state.scheduler.loaded, loading=True)
    return JSONResponse({
        "running": True, "version": __version__,
        "backends": {BACKEND: f"running llama-cpp-python {state.backend_version}"},
        "uptime_seconds": round(time.monotonic() - state.started, 1),
        "models_loaded": sum(1 for i in loaded if not i.loading),
        "models_loading": sum(1 for i in loaded if i.loading),
        "max_models": state.scheduler.max_models, "memory_budget": state.scheduler.memory_budget,
        "keep_alive": format_duration(state.scheduler.keep_alive_of(("", False))),
    })


async def ps(request: Request) -> Response:
    infos = await run_in_threadpool(request.app.state.scheduler.loaded, loading=True)
    rows = []
    for i in infos:
        expires = None
        if i.idle_since is not None and i.keep_alive is not None and i.keep_alive != float("inf"):
            expires = rfc3339(i.idle_since + i.keep_alive)
        rows.append({
            "model_name": familiar(i.reference), "model_id": i.digest, "backend_name": BACKEND,
            "mode": "embedding" if i.embedding else "completion", "memory": i.memory, "weights_size": i.size,
            "context_size": i.n_ctx, "pid": i.pid, "loading": i.loading, "in_use": i.in_use,
            "in_flight": int(i.in_use), "waiting": i.waiting,
            "last_used": rfc3339(i.idle_since) if i.idle_since is not None else None,
            "idle_seconds": round(time.time() - i.idle_since, 1) if i.idle_since is not None else None,
            "keep_alive": format_duration(i.keep_alive), "expires_at": expires,
        })
    return JSONResponse(rows)


async def df(request: Request) -> Response:
    usage = await run_in_threadpool(request.app.state.store.disk_usage)
    return JSONResponse({"models_disk_usage": usage.referenced_bytes, "default_backend_disk_usage": 0,
                         **dataclasses.asdict(usage)})


async def unload(request: Request) -> Response:
    state = request.app.state
    body = await read_json(request, state.max_body)
    everything, models = body.get("all", False), body.get("models") or []
    if not isinstance(everything, bool):
        raise ApiError(400, "'all' must be true or false", param="all", code="invalid_type")
    if not isinstance(models, list) or not all(isinstance(m, str) and m.strip() for m in models):
        raise ApiError(400, "'models' must be a list of model names", param="models", code="invalid_type")
    if not everything and not models:
        raise ApiError(400, "name the models to unload, or send {\"all\": true}", param="models",
                       code="missing_required_parameter")

    def run() -> int:
        if everything:
            return state.scheduler.unload_all()
        digests = {state.store.resolve(m.strip()) for m in models}  # an unknown name: 404 before any unload
        return state.scheduler.unload_models(digests)

    return JSONResponse({"unloaded_runners": await run_in_threadpool(run)})


@error_param("model")
async def configure(request: Request) -> Response:
    state = request.app.state
    if request.method == "GET":
        return JSONResponse(_configurations(state.scheduler, request.query_params.get("model")))
    body = await read_json(request, state.max_body)
    reference, embedding, settings = read_configure(body)
    resolved, unloaded = await run_in_threadpool(state.scheduler.configure, reference, embedding, settings)
    return JSONResponse({"model": familiar(resolved.reference), "model_id": resolved.digest,
                         "mode": _mode(embedding), **settings.as_json(), "unloaded_runners": unloaded,
                         "applies": "at the next load"})


def _configurations(scheduler, model: str | None) -> list[dict]:
    out = []
    for digest, reference, embedding, settings in scheduler.configurations():
        name = familiar(reference)
        if model and model not in (name, reference, digest) and name.split(":", 1)[0] != model:
            continue
        out.append({"model": name, "model_id": digest, "mode": _mode(embedding), **settings.as_json()})
    return out


def _mode(embedding: bool | None) -> str | None:
    return None if embedding is None else ("embedding" if embedding else "completion")


async def requests(request: Request) -> Response:
    log, model = request.app.state.requests, request.query_params.get("model")
    if not _follow(request):
        return JSONResponse(log.recent(model))

    async def events() -> AsyncIterator[bytes]:
        for record in log.recent(model):
            yield _event(record)
        async for record in _with_heartbeat(log.feed.follow(), request.app.state.stopping):
            if record is None:
                yield b": keep-alive\n\n"
            elif matches(record, model):
                yield _event(record)

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)


async def logs(request: Request) -> Response:
    book = request.app.state.logbook
    if not _follow(request):
        return PlainTextResponse("".join(line + "\n" for line in book.feed.recent()))

    async def lines() -> AsyncIterator[bytes]:
        for line in book.feed.recent():
            yield (line + "\n").encode()
        async for line in _with_heartbeat(book.feed.follow(), request.app.state.stopping):
            if line is not None:
                yield (line + "\n").encode()

    return StreamingResponse(lines(), media_type="text/plain; charset=utf-8", headers=SSE_HEADERS)


def _follow(request: Request) -> bool:
    value = request.query_params.get("follow")
    return value is not None and value.lower() not in ("0", "false", "no")


def _event(doc: dict) -> bytes:
    return b"data: " + json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


async def _with_heartbeat(source: AsyncIterator, stopping) -> AsyncIterator:
    """The items of `source`, with None after HEARTBEAT seconds of silence (so a gone client is
    noticed), until the server is stopping (`stopping`, a threading.Event, is set)."""
    iterator = source.__aiter__()
    pending, silent = None, 0.0
    try:
        while not stopping.is_set():
            pending = pending or asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=STOP_CHECK)
            if not done:
                silent += STOP_CHECK
                if silent >= HEARTBEAT:
                    silent = 0.0
                    yield None
                continue
            item, pending, silent = pending.result(), None, 0.0
            yield item
    finally:
        if pending is not None:  # let the generator see its cancellation before it is closed
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        await iterator.aclose()
