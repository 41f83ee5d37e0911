"""The HTTP face of the runner: Docker Model Runner's paths, served from the local store.

Routes (the same paths Docker Model Runner answers on, port 12434):

- OpenAI API under `/engines/v1`, `/engines/llama.cpp/v1` and `/v1`: `GET models`, `GET models/{model}`,
  `POST chat/completions`, `POST completions`, `POST embeddings`. `model` is a reference normalized like
  the CLI's (`ai/tiny` is `docker.io/ai/tiny:latest`) or a model ID. Streams are server-sent events,
  `data: {json}` per chunk and `data: [DONE]` at the end.
- Docker's model API: `GET /models`, `GET /models/{name}`, `DELETE /models/{name}`, and
  `POST /models/create` with `{"from": "<reference>"}`, which pulls and streams newline-delimited JSON.
- `GET /health` (alive), `GET /health/ready` (serving), `GET /metrics` (Prometheus text).

Errors have OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, on every route.

llama.cpp calls block, so every engine call runs in a worker thread inside `scheduler.acquire(...)`:
the scheduler's per-model FIFO orders requests and the event loop stays free. A stream runs in its
own thread that hands chunks to the loop; when the client goes away the thread stops after the token
it is on and releases the model.

This module imports Starlette; import it only when serving (it is part of the `mdl[serve]` extra).
"""

from __future__ import annotations

import array
import asyncio
import base64
import contextlib
import json
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ..artifact import unix_time
from ..errors import MdlError
from ..reference import parse_reference
from ..spec import mediatypes as mt
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics

MAX_BODY = 8 << 20  # bytes of a request body
OPENAI_PREFIXES = ("/engines/v1", "/engines/llama.cpp/v1", "/v1")
SSE_TYPE = "text/event-stream"
NDJSON_TYPE = "application/x-ndjson"
_DONE = b"data: [DONE]\n\n"


# ---------------------------------------------------------------------------------------------
# errors


class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


# MdlError kind -> (status, OpenAI error type, code)
_KINDS: dict[str, tuple[int, str, str]] = {
    "not-found": (404, "invalid_request_error", "model_not_found"),
    "reference": (400, "invalid_request_error", "invalid_model"),
    "ambiguous": (400, "invalid_request_error", "ambiguous_model"),
    "unsupported-format": (400, "invalid_request_error", "unsupported_model_format"),
    "unsupported-artifact": (400, "invalid_request_error", "unsupported_model_format"),
    "invalid-request": (400, "invalid_request_error", "invalid_value"),
    "usage": (400, "invalid_request_error", "invalid_value"),
    "conflict": (409, "invalid_request_error", "conflict"),
    "model-damaged": (500, "server_error", "model_damaged"),
    "blob-missing": (500, "server_error", "model_damaged"),
    "digest-mismatch": (500, "server_error", "model_damaged"),
    "schema": (500, "server_error", "model_damaged"),
    "format": (500, "server_error", "model_damaged"),
    "store": (500, "server_error", "store_error"),
    "disk-full": (507, "server_error", "disk_full"),
    # registry errors (POST /models/create)
    "unreachable": (502, "server_error", "registry_unreachable"),
    "auth": (401, "authentication_error", "registry_auth"),
    "credentials": (401, "authentication_error", "registry_auth"),
    "denied": (403, "permission_error", "registry_denied"),
    "registry": (502, "server_error", "registry_error"),
    "tls": (502, "server_error", "registry_tls"),
}


def to_api_error(exc: BaseException, *, param: str | None = None) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, MdlError):
        status, etype, code = _KINDS.get(exc.kind, (500, "server_error", exc.kind.replace("-", "_")))
        message = exc.message + (f" ({exc.hint})" if exc.hint else "")
        if exc.kind == "invalid-request":
            return ApiError(status, message, type=etype, code=getattr(exc, "code", None) or code,
                            param=getattr(exc, "param", None))
        return ApiError(status, message, type=etype, code=code,
                        param=param if status in (400, 404) else None)
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    return ApiError(500, f"internal error: {type(exc).__name__}: {exc}", type="server_error",
                    code="internal_error")


def error_response(exc: BaseException, *, param: str | None = None) -> JSONResponse:
    err = to_api_error(exc, param=param)
    return JSONResponse(err.body(), status_code=err.status)


def _sse(doc: Any) -> bytes:
    return b"data: " + json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


# ---------------------------------------------------------------------------------------------
# request bodies


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


def _require(body: dict, name: str, kinds: tuple[type, ...], what: str) -> Any:
    if name not in body or body[name] is None:
        raise ApiError(400, f"missing required parameter '{name}'", param=name, code="missing_required_parameter")
    value = body[name]
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise ApiError(400, f"'{name}' must be {what}", param=name, code="invalid_type")
    return value


def _model_of(body: dict) -> str:
    model = _require(body, "model", (str,), "a string naming a model")
    if not model.strip():
        raise ApiError(400, "'model' is empty", param="model", code="invalid_value")
    return model.strip()


# ---------------------------------------------------------------------------------------------
# a blocking producer in its own thread, feeding the event loop


class Pump:
    """Runs `produce(emit, cancelled)` in a thread; `await get()` returns ("item", x), ("end", None)
    or ("error", exc) in order. `cancel()` asks the producer to stop (it checks `cancelled`)."""

    def __init__(self, produce: Callable[[Callable[[Any], None], threading.Event], None], name: str):
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self.cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(produce,), name=name, daemon=True)

    def start(self) -> Pump:
        self._thread.start()
        return self

    def _put(self, kind: str, value: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop is closed: the server is gone
            self.cancelled.set()

    def _run(self, produce) -> None:
        try:
            produce(lambda item: self._put("item", item), self.cancelled)
        except BaseException as e:  # noqa: BLE001 - handed to the loop
            self._put("error", e)
        else:
            self._put("end", None)

    async def get(self) -> tuple[str, Any]:
        return await self._queue.get()

    def cancel(self) -> None:
        self.cancelled.set()


# ---------------------------------------------------------------------------------------------
# the model list


def _familiar(tag: str) -> str:
    if tag.startswith("sha256:"):
        return tag
    try:
        return parse_reference(tag).familiar()
    except MdlError:
        return tag


def _is_gguf(summary) -> bool:
    if (summary.format or "").lower() == "gguf":
        return True
    for d in summary.manifest.layers:
        if d.media_type == mt.GGUF:
            return True
        path = next((v for k, v in (d.annotations or {}).items() if k in mt.FILEPATH_KEYS), "")
        if path.lower().endswith(".gguf"):
            return True
    return False


def _docker_model(summary) -> dict:
    config = summary.config.get("config") if isinstance(summary.config, dict) else None
    return {"id": summary.digest, "tags": [_familiar(t) for t in summary.tags],
            "created": unix_time(summary.created), "config": config}


# ---------------------------------------------------------------------------------------------
# the app


def _route_label(path: str) -> str:
    for prefix in OPENAI_PREFIXES:
        if path.startswith(prefix + "/"):
            rest = path[len(prefix):]
            if rest.startswith("/models/"):
                return "/v1/models/{model}"
            return "/v1" + rest
    if path.startswith("/models/") and path != "/models/create":
        return "/models/{name}"
    return path if path in ("/", "/models", "/models/create", "/health", "/health/ready", "/metrics") else "other"


class _CountRequests:
    """ASGI middleware: count every answered HTTP request by route and status."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = [500]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.request(_route_label(scope.get("path", "")), status[0])


def create_app(store, scheduler, *, env: Mapping[str, str], max_body: int = MAX_BODY,
               reap_interval: float | None = None, pull_concurrency: int = 4) -> Starlette:
    """The runner's ASGI app over `store` (a LayoutStore) and `scheduler` (mdl.runner.scheduler.Scheduler).

    `env` supplies registry credentials and proxies for `POST /models/create`; `reap_interval`, when
    given, is how often a background task unloads idle models (`scheduler.reap_idle()`)."""
    metrics = Metrics()
    state = {"ready": False}
    env = dict(env)

    # -- helpers bound to this app ------------------------------------------------------------

    def count_tokens(model: str, doc: Any) -> None:
        usage = doc.get("usage") if isinstance(doc, dict) else None
        if isinstance(usage, dict):
            metrics.tokens(model, int(usage.get("completion_tokens") or 0), int(usage.get("prompt_tokens") or 0))

    def run_engine(model: str, embedding: bool, call: Callable[[Any], dict]) -> tuple[dict, str]:
        with scheduler.acquire(model, embedding=embedding) as engine:
            return call(engine), _label(engine, model)

    async def openai_call(request: Request, kind: str) -> Response:
        try:
            body = await read_json(request, max_body)
            model = _model_of(body)
            if kind == "chat":
                _require(body, "messages", (list,), "an array of messages")
            elif kind == "completion":
                _require(body, "prompt", (str, list), "a string or an array of strings")
            else:
                _require(body, "input", (str, list), "a string or an array of strings")
            stream = body.get("stream", False)
            if stream not in (True, False, None):
                raise ApiError(400, "'stream' must be a boolean", param="stream", code="invalid_type")
        except Exception as e:  # noqa: BLE001
            return error_response(e)
        if kind == "embedding":
            if stream:
                return error_response(ApiError(400, "embeddings cannot be streamed", param="stream",
                                               code="invalid_value"))
            call = _embed_call(body)
        elif stream:
            return await stream_call(model, body, kind)
        elif kind == "chat":
            call = lambda engine: engine.chat(body)  # noqa: E731
        else:
            call = lambda engine: engine.complete(body)  # noqa: E731
        try:
            doc, label = await run_in_threadpool(run_engine, model, kind == "embedding", call)
        except Exception as e:  # noqa: BLE001
            return error_response(e, param="model")
        if kind != "embedding":
            count_tokens(label, doc)
        return JSONResponse(doc)

    async def stream_call(model: str, body: dict, kind: str) -> Response:
        def produce(emit, cancelled: threading.Event) -> None:
            if cancelled.is_set():
                return
            label, generated, usage = model, 0, None
            try:
                with scheduler.acquire(model, embedding=False) as engine:
                    label = _label(engine, model)
                    chunks = engine.chat_stream(body) if kind == "chat" else engine.complete_stream(body)
                    try:
                        for chunk in chunks:
                            generated += _chunk_has_text(chunk)
                            if isinstance(chunk, dict) and isinstance(chunk.get("usage"), dict):
                                usage = chunk
                            emit(chunk)
                            if cancelled.is_set():  # the client went away: stop after this token
                                break
                    finally:
                        close = getattr(chunks, "close", None)
                        if close is not None:
                            close()
            finally:
                if usage is not None:
                    count_tokens(label, usage)
                else:
                    metrics.tokens(label, generated)

        pump = Pump(produce, "mdl-stream").start()
        first = await pump.get()
        if first[0] == "error":
            return error_response(first[1], param="model")

        async def events():
            item, finished = first, False
            try:
                while True:
                    what, value = item
                    if what == "item":
                        yield _sse(value)
                    elif what == "end":
                        yield _DONE
                        finished = True
                        return
                    else:
                        err = to_api_error(value, param="model")
                        yield _sse(err.body())
                        finished = True
                        return
                    item = await pump.get()
            finally:
                pump.cancel()
                if not finished:
                    metrics.stream_cancelled()

        return StreamingResponse(events(), media_type=SSE_TYPE,
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # -- OpenAI endpoints ---------------------------------------------------------------------------

    def summaries() -> list:
        from ..summary import summarize

        out = []
        for record in store.models():
            try:
                out.append(summarize(store, record.digest))
            except MdlError:
                continue  # a damaged model is not listed; `mdl verify` says what is wrong
        return out

    async def openai_models(request: Request) -> Response:
        try:
            found = await run_in_threadpool(summaries)
        except Exception as e:  # noqa: BLE001
            return error_response(e)
        data = []
        for s in found:
            if not _is_gguf(s):
                continue
            names = [_familiar(t) for t in s.tags] or [s.digest]
            for name in names:
                data.append({"id": name, "object": "model", "created": unix_time(s.created), "owned_by": "docker"})
        return JSONResponse({"object": "list", "data": data})

    async def openai_model(request: Request) -> Response:
        name = request.path_params["model"]
        try:
            s = await run_in_threadpool(lambda: _summary_of(name))
        except Exception as e:  # noqa: BLE001
            return error_response(e, param="model")
        return JSONResponse({"id": _familiar(s.tags[0]) if s.tags else s.digest, "object": "model",
                             "created": unix_time(s.created), "owned_by": "docker"})

    async def chat(request: Request) -> Response:
        return await openai_call(request, "chat")

    async def completions(request: Request) -> Response:
        return await openai_call(request, "completion")

    async def embeddings(request: Request) -> Response:
        return await openai_call(request, "embedding")

    # -- Docker's model API -------------------------------------------------------------------------

    def _summary_of(name: str):
        from ..summary import summarize

        return summarize(store, store.resolve(name))

    async def list_models(request: Request) -> Response:
        try:
            found = await run_in_threadpool(summaries)
        except Exception as e:  # noqa: BLE001
            return error_response(e)
        return JSONResponse([_docker_model(s) for s in found])

    async def get_model(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            s = await run_in_threadpool(_summary_of, name)
        except Exception as e:  # noqa: BLE001
            return error_response(e)
        return JSONResponse(_docker_model(s))

    async def delete_model(request: Request) -> Response:
        name = request.path_params["name"]
        force = request.query_params.get("force", "").lower() in ("1", "true", "yes")

        def remove() -> dict:
            result = store.remove(name, force=force)
            for digest in result.removed_models:
                with contextlib.suppress(Exception):
                    scheduler.unload(digest)
            return {"untagged": [_familiar(t) for t in result.untagged], "deleted": result.removed_models,
                    "freed_bytes": result.freed_bytes}

        try:
            return JSONResponse(await run_in_threadpool(remove))
        except Exception as e:  # noqa: BLE001
            return error_response(e)

    async def create_model(request: Request) -> Response:
        from ..pull import pull
        from ..registry import open_repository

        try:
            body = await read_json(request, max_body)
            source = _require(body, "from", (str,), "a model reference")
            ref = parse_reference(source)
        except Exception as e:  # noqa: BLE001
            return error_response(e, param="from")

        def produce(emit, cancelled: threading.Event) -> None:
            progress = _PullProgress(emit)
            repo = open_repository(ref, env=env, concurrency=pull_concurrency)
            result = pull(store, repo, ref, concurrency=pull_concurrency, progress=progress)
            emit({"type": "success", "message": f"Model pulled successfully: {result.reference}",
                  "reference": result.reference, "digest": result.digest, "size": result.size,
                  "fetched": result.fetched})

        pump = Pump(produce, "mdl-pull").start()
        first = await pump.get()
        if first[0] == "error":  # failed before any byte moved: a plain error response
            return error_response(first[1], param="from")

        async def lines():
            item = first
            while True:
                what, value = item
                if what == "item":
                    yield json.dumps(value, separators=(",", ":")).encode() + b"\n"
                elif what == "end":
                    return
                else:
                    err = to_api_error(value, param="from")
                    doc = {"type": "error", "message": err.message, "error": err.body()["error"]}
                    yield json.dumps(doc, separators=(",", ":")).encode() + b"\n"
                    return
                item = await pump.get()

        return StreamingResponse(lines(), media_type=NDJSON_TYPE)

    # -- health and metrics ---------------------------------------------------------------------------

    async def root(request: Request) -> Response:
        return PlainTextResponse("mdl model runner is running\n")

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        if not state["ready"]:
            return JSONResponse({"status": "starting or stopping"}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(scheduler), media_type=METRICS_CONTENT_TYPE)

    # -- lifespan ---------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(app):
        reaper = None
        if reap_interval:
            async def reap() -> None:
                while True:
                    await asyncio.sleep(reap_interval)
                    try:
                        await run_in_threadpool(scheduler.reap_idle)
                    except Exception:  # noqa: BLE001 - keep reaping
                        traceback.print_exc(file=sys.stderr)

            reaper = asyncio.create_task(reap())
        state["ready"] = True
        try:
            yield
        finally:
            state["ready"] = False
            if reaper is not None:
                reaper.cancel()
                with contextlib.suppress(BaseException):
                    await reaper
            await run_in_threadpool(scheduler.close)

    async def not_allowed(request: Request, exc) -> Response:
        status = getattr(exc, "status_code", 500)
        message = {404: f"no route for {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
        return JSONResponse(ApiError(status, message.get(status, str(getattr(exc, "detail", exc))),
                                     code="not_found" if status == 404 else "method_not_allowed").body(),
                            status_code=status)

    routes = [Route("/", root, methods=["GET"])]
    for prefix in OPENAI_PREFIXES:
        routes += [
            Route(f"{prefix}/models", openai_models, methods=["GET"]),
            Route(prefix + "/models/{model:path}", openai_model, methods=["GET"]),
            Route(f"{prefix}/chat/completions", chat, methods=["POST"]),
            Route(f"{prefix}/completions", completions, methods=["POST"]),
            Route(f"{prefix}/embeddings", embeddings, methods=["POST"]),
        ]
    routes += [
        Route("/models", list_models, methods=["GET"]),
        Route("/models/create", create_model, methods=["POST"]),
        Route("/models/{name:path}", get_model, methods=["GET"]),
        Route("/models/{name:path}", delete_model, methods=["DELETE"]),
        Route("/health", health, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_allowed, 405: not_allowed})
    app.add_middleware(_CountRequests, metrics=metrics)
    app.state.metrics = metrics
    app.state.serving = state
    return app


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
    return _familiar(reference) if reference else fallback


def _chunk_has_text(chunk: Any) -> int:
    """1 when a streamed chunk carries generated text (llama.cpp streams one token per chunk)."""
    if not isinstance(chunk, dict):
        return 0
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict) and delta.get("content"):
            return 1
        if choice.get("text"):
            return 1
    return 0


class _PullProgress:
    """A Progress (mdl.content.transfer) that emits Docker-style progress lines, at most ~4 per
    second per blob plus one at each start and end."""

    def __init__(self, emit: Callable[[dict], None], interval: float = 0.25):
        self._emit, self._interval = emit, interval
        self._lock = threading.Lock()
        self._state: dict[str, list] = {}  # digest -> [what, bytes, last emit time]

    def _line(self, event: str, desc, what: str, nbytes: int, **extra) -> None:
        self._emit({"type": "progress", "event": event, "message": f"{what} {desc.digest[:19]}: {event}",
                    "what": what, "digest": desc.digest, "total": desc.size, "pulled": nbytes, **extra})

    def start(self, desc, what: str) -> None:
        with self._lock:
            self._state[desc.digest] = [what, 0, time.monotonic()]
        self._line("start", desc, what, 0)

    def advance(self, desc, nbytes: int) -> None:
        with self._lock:
            st = self._state.setdefault(desc.digest, ["blob", 0, 0.0])
            st[1] += nbytes
            now = time.monotonic()
            if now - st[2] < self._interval:
                return
            st[2] = now
            what, done = st[0], st[1]
        self._line("progress", desc, what, done)

    def done(self, desc, outcome: str) -> None:
        with self._lock:
            what, done, _ = self._state.pop(desc.digest, ["blob", 0, 0.0])
        self._line("done", desc, what, done if done else desc.size, outcome=outcome)
