"""Ollama's API at its own paths (Ollama clients take the bare base URL): `GET /api/version`,
`/api/tags`, `/api/ps`; `POST /api/show`, `/api/chat`, `/api/generate`, `/api/pull`, `/api/embed`;
`DELETE /api/delete`. Model names are mdl references (`ai/tiny`, normalized like the CLI's).

Chat and generate answers stream by default, as newline-delimited JSON objects ending with one whose
`done` is true (with `done_reason` and token counts); `"stream": false` gives that last object whole.
`options` (temperature, top_p, top_k, min_p, seed, num_predict, stop, repeat_penalty,
presence_penalty, frequency_penalty, num_ctx), `keep_alive`, `format` ("json" or a JSON schema) and
`tools` are honoured; other options are ignored, as Ollama ignores options it does not know.
`num_ctx` loads the model with that context (settings.py's context size, then a reload). Errors are
Ollama's `{"error": "message"}`, the message naming the parameter.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ... import __version__
from ..api_errors import ApiError, error_param, error_shape, to_api_error
from ..catalog import familiar, is_gguf, summaries, summary_of
from ..feeds import rfc3339
from ..models_api import pull_model
from ..pump import Pump
from ...reference import parse_reference
from ..request_body import read_json
from ..security import check_pull_allowed
from ..settings import MAX_CONTEXT, NEVER, parse_duration
from ..validation import InvalidRequestError, number, stop_list, tools_checked
from .gateway import STREAM_HEADERS, embed, generate, open_stream, recorded, stream_response
from .internal import CHAT, COMPLETION, GenRequest, GenResult

NDJSON = "application/x-ndjson"
PARAMS = {"messages": "messages", "schema": "format", "tools": "tools", "prompt": "prompt"}
_OPTIONS = (("temperature", "temperature", 0, 2, False), ("top_p", "top_p", 0, 1, False),
            ("top_k", "top_k", 0, None, True), ("min_p", "min_p", 0, 1, False),
            ("repeat_penalty", "repeat_penalty", 0, None, False),
            ("presence_penalty", "presence_penalty", -2, 2, False),
            ("frequency_penalty", "frequency_penalty", -2, 2, False))


def error_body(err: ApiError) -> dict:
    return {"error": err.message}


def _line(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _now() -> str:
    return rfc3339(time.time())


# ---------------------------------------------------------------------------------------------
# models


async def version(request: Request) -> Response:
    return JSONResponse({"version": __version__})


def _details(s) -> dict:
    arch = s.architecture or ""
    return {"parent_model": "", "format": "gguf", "family": arch, "families": [arch] if arch else None,
            "parameter_size": s.parameters or "", "quantization_level": s.quantization or ""}


def _size(s) -> int:
    return sum(d.size for d in s.manifest.layers)


async def tags(request: Request) -> Response:
    found = await run_in_threadpool(summaries, request.app.state.store)
    models = []
    for s in found:
        if not is_gguf(s):
            continue
        for name in [familiar(t) for t in s.tags] or [s.digest]:
            models.append({"name": name, "model": name, "modified_at": s.created or "", "size": _size(s),
                           "digest": s.digest.removeprefix("sha256:"), "details": _details(s)})
    return JSONResponse({"models": models})


async def ps(request: Request) -> Response:
    state = request.app.state
    infos = await run_in_threadpool(state.scheduler.loaded)
    models = []
    for i in infos:
        try:
            s = await run_in_threadpool(summary_of, state.store, i.digest)
            details = _details(s)
        except Exception:  # noqa: BLE001 - removed from the store while loaded
            details = {}
        expires = None
        if i.idle_since is not None and i.keep_alive is not None and i.keep_alive != NEVER:
            expires = rfc3339(i.idle_since + i.keep_alive)
        name = familiar(i.reference)
        models.append({"name": name, "model": name, "size": i.memory or i.size, "digest": i.digest.removeprefix("sha256:"),
                       "details": details, "expires_at": expires, "size_vram": 0, "context_length": i.n_ctx})
    return JSONResponse({"models": models})


def _model(body: dict) -> str:
    name = body.get("model", body.get("name"))
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequestError("'model' must name a model", param="model")
    return name.strip()


@error_shape(error_body)
async def show(request: Request) -> Response:
    state = request.app.state
    name = _model(await read_json(request, state.max_body))
    s = await run_in_threadpool(summary_of, state.store, name)
    info: dict[str, Any] = {"general.architecture": s.architecture or ""}
    if s.context_size and s.architecture:
        info[f"{s.architecture}.context_length"] = s.context_size
    capabilities = ["completion", "tools"]
    return JSONResponse({"modelfile": f"FROM {familiar(s.tags[0]) if s.tags else s.digest}\n", "parameters": "",
                         "template": "", "details": _details(s), "model_info": info, "capabilities": capabilities,
                         "modified_at": s.created or ""})


@error_shape(error_body)
async def delete(request: Request) -> Response:
    state = request.app.state
    name = _model(await read_json(request, state.max_body))

    def remove() -> None:
        result = state.store.remove(name)
        for digest in result.removed_models:
            state.scheduler.unload(digest)

    await run_in_threadpool(remove)
    return Response(status_code=200)


@error_shape(error_body)
async def pull(request: Request) -> Response:
    """Pull through the same `ops.pull` as `mdl pull`, reporting as Ollama does."""
    state = request.app.state
    body = await read_json(request, state.max_body)
    ref = parse_reference(_model(body))
    check_pull_allowed(state.policy, ref.registry)

    def produce(emit, cancelled: threading.Event) -> None:
        emit({"status": "pulling manifest"})
        pull_model(state.store, ref, env=state.env, concurrency=state.pull_concurrency, progress=_Progress(emit))
        emit({"status": "verifying sha256 digest"})
        emit({"status": "writing manifest"})
        emit({"status": "success"})

    pump = Pump(produce, "mdl-pull").start()
    if body.get("stream") is False:
        last = None
        while True:
            what, value = await pump.get()
            if what == "error":
                raise value
            if what == "end":
                return JSONResponse(last)
            last = value

    async def lines():
        while True:
            what, value = await pump.get()
            if what == "item":
                yield _line(value)
            elif what == "end":
                return
            else:
                yield _line(error_body(to_api_error(value, param="model")))
                return

    return StreamingResponse(lines(), media_type=NDJSON, headers=STREAM_HEADERS)


class _Progress:
    """A Progress (mdl.content.transfer) as Ollama's lines: `pulling <digest>` with total and completed."""

    def __init__(self, emit):
        self._emit, self._done, self._lock = emit, {}, threading.Lock()

    def _line(self, desc, completed: int) -> None:
        self._emit({"status": f"pulling {desc.digest.removeprefix('sha256:')[:12]}", "digest": desc.digest,
                    "total": desc.size, "completed": completed})

    def start(self, desc, what: str) -> None:
        with self._lock:
            self._done[desc.digest] = 0
        self._line(desc, 0)

    def advance(self, desc, nbytes: int) -> None:
        with self._lock:
            self._done[desc.digest] = self._done.get(desc.digest, 0) + nbytes

    def done(self, desc, outcome: str) -> None:
        self._line(desc, desc.size)


# ---------------------------------------------------------------------------------------------
# generation


@error_shape(error_body)
@error_param("model")
async def chat(request: Request) -> Response:
    return await recorded(request, "ollama chat", lambda state, record: _generate(request, state, record, True))


@error_shape(error_body)
@error_param("model")
async def generate_(request: Request) -> Response:
    return await recorded(request, "ollama generate", lambda state, record: _generate(request, state, record, False))


@error_shape(error_body)
@error_param("model")
async def embed_(request: Request) -> Response:
    return await recorded(request, "ollama embed", lambda state, record: _embed(request, state, record))


async def _settings(state, body: dict, model: str) -> tuple[dict, float | None]:
    """The request's options (checked) and keep-alive; `num_ctx` is applied to the model's next load."""
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise InvalidRequestError("'options' must be an object", param="options")
    keep = body.get("keep_alive", options.get("keep_alive"))
    keep_alive = parse_duration(keep) if keep is not None else None
    n_ctx = number(options, "num_ctx", 1, MAX_CONTEXT, integer=True, param="options.num_ctx")
    if n_ctx is not None:
        await run_in_threadpool(state.scheduler.want_context, model, n_ctx)
    return options, keep_alive


def gen_request(body: dict, model: str, options: dict, is_chat: bool) -> GenRequest:
    sampling = {}
    for key, name, lo, hi, integer in _OPTIONS:
        v = number(options, key, lo, hi, integer=integer, param=f"options.{key}")
        if v is not None:
            sampling[name] = v
    seed = number(options, "seed", -(2**63), 2**64 - 1, integer=True, param="options.seed")
    if seed is not None:
        sampling["seed"] = seed & 0xFFFFFFFF
    predict = number(options, "num_predict", -2, None, integer=True, param="options.num_predict")
    fmt = body.get("format")
    if fmt not in (None, "", "json") and not isinstance(fmt, dict):
        raise InvalidRequestError("'format' must be \"json\" or a JSON schema", param="format")
    common = dict(sampling=sampling, max_tokens=predict if predict and predict > 0 else None,
                  stop=stop_list(options.get("stop"), "options.stop"), json=bool(fmt),
                  schema=fmt if isinstance(fmt, dict) else None, params=PARAMS)
    if is_chat:
        tools = _tools(body.get("tools"))
        return GenRequest(CHAT, model, messages=_messages(body.get("messages")), tools=tools, **common)
    for name in ("suffix", "template"):
        if body.get(name):
            raise InvalidRequestError(f"'{name}' is not supported", param=name)
    if body.get("context"):
        raise InvalidRequestError("'context' is not supported: send the conversation to /api/chat", param="context")
    prompt = body.get("prompt") or ""
    if not isinstance(prompt, str):
        raise InvalidRequestError("'prompt' must be a string", param="prompt")
    if body.get("raw"):
        return GenRequest(COMPLETION, model, prompt=prompt, **common)
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        raise InvalidRequestError("'system' must be a string", param="system")
    user = {"role": "user", "content": _with_images(prompt, body.get("images"), "images"), "at": "prompt"}
    return GenRequest(CHAT, model, messages=([{"role": "system", "content": system}] if system else []) + [user],
                      **common)


def _with_images(text: str, images: Any, param: str) -> Any:
    if not images:
        return text
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise InvalidRequestError(f"'{param}' must be a list of base64 images", param=param)
    return [{"type": "text", "text": text}] + [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{i}"}}
                                               for i in images]


def _messages(msgs: Any) -> list[dict]:
    if not isinstance(msgs, list) or not msgs:
        raise InvalidRequestError("'messages' must be a non-empty list", param="messages")
    out = []
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool"):
            raise InvalidRequestError(f"{where}.role must be system, user, assistant or tool", param=f"{where}.role")
        content = m.get("content") or ""
        if not isinstance(content, str):
            raise InvalidRequestError(f"{where}.content must be a string", param=f"{where}.content")
        msg = {"role": m["role"], "content": _with_images(content, m.get("images"), f"{where}.images"), "at": where}
        if m["role"] == "assistant" and m.get("tool_calls"):
            msg["tool_calls"] = _past_calls(m["tool_calls"], f"{where}.tool_calls")
        if m["role"] == "tool":
            msg["tool_call_id"] = m.get("tool_call_id") or ""
            msg["name"] = m.get("tool_name") or m.get("name")
        out.append(msg)
    return out


def _past_calls(calls: Any, param: str) -> list[dict]:
    out = []
    for j, c in enumerate(calls if isinstance(calls, list) else [None]):
        fn = c.get("function") if isinstance(c, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not isinstance(fn.get("arguments", {}), dict):
            raise InvalidRequestError(f"{param}[{j}] must be {{\"function\": {{\"name\", \"arguments\": {{...}}}}}}",
                                      param=f"{param}[{j}]")
        out.append({"id": c.get("id") or f"call_{j}", "name": fn["name"], "arguments": fn.get("arguments") or {}})
    return out


def _tools(raw: Any) -> list[dict]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(t, dict) and isinstance(t.get("function"), dict) for t in raw):
        raise InvalidRequestError("'tools' must be a list of {\"type\": \"function\", \"function\": {...}}",
                                  param="tools")
    return tools_checked([t["function"] for t in raw])


async def _generate(request: Request, state, record, is_chat: bool) -> Response:
    body = await read_json(request, state.max_body)
    model = _model(body)
    options, keep_alive = await _settings(state, body, model)
    req = gen_request(body, model, options, is_chat)
    start = time.perf_counter_ns()
    if not is_chat and not body.get("prompt") and not body.get("images"):
        return JSONResponse(await _load_only(state, model, keep_alive))
    if body.get("stream", True) is not False:
        wire = _Wire(model, is_chat, start)
        return stream_response(await open_stream(state, record, model, req, keep_alive=keep_alive), wire, NDJSON)
    result = await generate(state, record, model, req, keep_alive=keep_alive)
    return JSONResponse(_final(result, is_chat, start))


async def _load_only(state, model: str, keep_alive: float | None) -> dict:
    """An empty prompt loads the model (`keep_alive: 0` unloads it), as Ollama does."""
    await run_in_threadpool(_touch, state.scheduler, model, keep_alive)
    return {"model": model, "created_at": _now(), "response": "", "done": True,
            "done_reason": "unload" if keep_alive == 0 else "load"}


def _touch(scheduler, model: str, keep_alive: float | None) -> None:
    with scheduler.acquire(model, keep_alive=keep_alive):
        pass


def _calls(calls) -> list[dict]:
    return [{"function": {"index": k, "name": c.name, "arguments": c.input()}} for k, c in enumerate(calls)]


def _final(result: GenResult, is_chat: bool, start: int) -> dict:
    c = result.choices[0]
    doc: dict[str, Any] = {"model": result.model, "created_at": _now()}
    if is_chat:
        doc["message"] = {"role": "assistant", "content": c.text}
        if c.tool_calls:
            doc["message"]["tool_calls"] = _calls(c.tool_calls)
    else:
        doc["response"] = c.text
    return {**doc, **_done(c.finish_reason, result.usage, start)}


def _done(finish: str, usage: dict, start: int) -> dict:
    return {"done": True, "done_reason": "length" if finish == "length" else "stop",
            "total_duration": time.perf_counter_ns() - start, "prompt_eval_count": usage["prompt_tokens"],
            "eval_count": usage["completion_tokens"]}


class _Wire:
    """Internal events as Ollama's lines: a piece of the answer each; a call whole once its arguments
    are; a last line with `done`."""

    def __init__(self, model: str, is_chat: bool, start: int):
        self.model, self.is_chat, self.start = model, is_chat, start
        self._calls: list[list] = []  # [name, arguments text] in order
        self._finish = "stop"

    def _piece(self, text: str, **extra) -> dict:
        doc: dict[str, Any] = {"model": self.model, "created_at": _now()}
        if self.is_chat:
            doc["message"] = {"role": "assistant", "content": text, **extra}
        else:
            doc["response"] = text
        return doc

    def event(self, ev: dict) -> bytes:
        kind = ev["type"]
        if kind == "text":
            return _line({**self._piece(ev["text"]), "done": False})
        if kind == "tool_call":
            self._calls.append([ev["name"], ""])
        elif kind == "arguments":
            self._calls[-1][1] += ev["delta"]
        elif kind == "finish":
            self._finish = ev["finish_reason"]
            if self._calls:
                calls = [{"function": {"index": k, "name": n, "arguments": _object(a)}} for k, (n, a) in enumerate(self._calls)]
                return _line({**self._piece("", tool_calls=calls), "done": False})
        elif kind == "usage":
            return _line({**self._piece(""), **_done(self._finish, ev["usage"], self.start)})
        return b""

    def end(self) -> bytes:
        return b""

    def error(self, err: ApiError) -> bytes:
        return _line(error_body(err))


def _object(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return {}


async def _embed(request: Request, state, record) -> Response:
    body = await read_json(request, state.max_body)
    model = _model(body)
    _, keep_alive = await _settings(state, body, model)
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    dims = number(body, "dimensions", 1, None, integer=True)
    start = time.perf_counter_ns()
    doc = await embed(state, record, model, {"input": inputs, "model": model}, keep_alive=keep_alive)
    vectors = [d["embedding"][:dims] if dims else d["embedding"] for d in doc["data"]]
    return JSONResponse({"model": model, "embeddings": vectors, "total_duration": time.perf_counter_ns() - start,
                         "load_duration": 0, "prompt_eval_count": doc["usage"]["prompt_tokens"]})
