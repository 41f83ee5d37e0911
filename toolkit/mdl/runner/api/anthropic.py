"""Anthropic's Messages API: `POST /v1/messages` (Anthropic's clients take the bare base URL),
`/anthropic/v1/messages`, `/engines/v1/messages`, `/engines/llama.cpp/v1/messages`, and
`.../messages/count_tokens` under each.

A body (`model`, `max_tokens`, `messages` of text, image, `tool_use` and `tool_result` blocks,
`system`, `stop_sequences`, `temperature`, `top_p`, `top_k`, `tools`, `tool_choice`, `stream`) is read
into the internal request; the answer is a `message` with `text` and `tool_use` blocks, its
`stop_reason` (`end_turn`, `max_tokens`, `stop_sequence`, `tool_use`) and usage. A stream is
server-sent events in Anthropic's order: `message_start`, then per block `content_block_start`,
`content_block_delta`s (`text_delta`, `input_json_delta`), `content_block_stop`, then `message_delta`
(stop reason, output tokens) and `message_stop`. Errors have Anthropic's shape,
`{"type": "error", "error": {"type", "message"}}`, the message naming the parameter.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..api_errors import ApiError, error_param, error_shape
from ..request_body import model_of, read_json
from ..validation import InvalidRequestError, number, stop_list, tool_choice_checked, tools_checked
from .gateway import count_tokens, generate, open_stream, recorded, stream_response
from .internal import CHAT, GenRequest, GenResult, new_id

PREFIXES = ("", "/anthropic", "/engines", "/engines/llama.cpp")
PARAMS = {"messages": "messages", "schema": "output_format", "tools": "tools", "prompt": "messages"}
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error"}
_STOP_REASONS = {"length": "max_tokens", "tool_calls": "tool_use"}


def error_body(err: ApiError) -> dict:
    etype = _ERROR_TYPES.get(err.status, "api_error" if err.status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": etype, "message": err.message}}


# ---------------------------------------------------------------------------------------------
# endpoints


@error_shape(error_body)
@error_param("model")
async def messages(request: Request) -> Response:
    return await recorded(request, "messages", lambda state, record: _messages(request, state, record))


async def _messages(request: Request, state, record) -> Response:
    body = await read_json(request, state.max_body)
    model = model_of(body)
    req = message_request(body, model)
    if body.get("stream"):
        return stream_response(await open_stream(state, record, model, req), _Wire(), "text/event-stream")
    return JSONResponse(message_doc(await generate(state, record, model, req)))


@error_shape(error_body)
@error_param("model")
async def count(request: Request) -> Response:
    state = request.app.state
    body = await read_json(request, state.max_body)
    model = model_of(body)
    return JSONResponse({"input_tokens": await count_tokens(state, model, message_request(body, model, counting=True))})


# ---------------------------------------------------------------------------------------------
# requests


def message_request(body: dict, model: str, *, counting: bool = False) -> GenRequest:
    """The internal request of a Messages body (`counting`: a count_tokens body, without max_tokens)."""
    max_tokens = None
    if not counting:
        if body.get("max_tokens") is None:
            raise InvalidRequestError("'max_tokens' is required", param="max_tokens")
        max_tokens = number(body, "max_tokens", 1, None, integer=True)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequestError("'stream' must be true or false", param="stream")
    sampling = {}
    for name, lo, hi, integer in (("temperature", 0, 1, False), ("top_p", 0, 1, False), ("top_k", 0, None, True)):
        v = number(body, name, lo, hi, integer=integer)
        if v is not None:
            sampling[name] = v
    stop = body.get("stop_sequences")
    if stop is not None and not isinstance(stop, list):
        raise InvalidRequestError("'stop_sequences' must be a list of strings", param="stop_sequences")
    tools, choice, name, parallel = _tools(body)
    return GenRequest(CHAT, model, messages=_messages_of(body), tools=tools, tool_choice=choice, tool_name=name,
                      parallel_tool_calls=parallel, sampling=sampling, max_tokens=max_tokens,
                      stop=stop_list(stop, "stop_sequences"), params=PARAMS)


def _messages_of(body: dict) -> list[dict]:
    out: list[dict] = []
    system = body.get("system")
    if system is not None:
        out.append({"role": "system", "content": _text(system, "system")})
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise InvalidRequestError("'messages' must be a non-empty list", param="messages")
    names: dict[str, str] = {}  # tool_use id -> name, for the tool results that answer them
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise InvalidRequestError(f"{where}.role must be 'user' or 'assistant'", param=f"{where}.role")
        content = m.get("content")
        if isinstance(content, str):
            out.append({"role": m["role"], "content": content})
            continue
        if not isinstance(content, list):
            raise InvalidRequestError(f"{where}.content must be a string or a list of content blocks",
                                      param=f"{where}.content")
        parts: list[dict] = []
        calls: list[dict] = []
        for j, block in enumerate(content):
            at = f"{where}.content[{j}]"
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text" and isinstance(block.get("text"), str):
                parts.append({"type": "text", "text": block["text"]})
            elif kind == "image" and m["role"] == "user":
                parts.append(_image(block.get("source"), at))
            elif kind == "tool_use" and m["role"] == "assistant":
                if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str) \
                        or not isinstance(block.get("input", {}), dict):
                    raise InvalidRequestError(f"{at}: a tool_use block needs an id, a name and an input object",
                                              param=at)
                names[block["id"]] = block["name"]
                calls.append({"id": block["id"], "name": block["name"], "arguments": block.get("input") or {}})
            elif kind == "tool_result" and m["role"] == "user":
                if not isinstance(block.get("tool_use_id"), str):
                    raise InvalidRequestError(f"{at}: a tool_result block needs a tool_use_id", param=at)
                result = block.get("content", "")
                text = _text(result, f"{at}.content") if result else ""
                if block.get("is_error"):
                    text = f"error: {text}"
                out.append({"role": "tool", "content": text, "tool_call_id": block["tool_use_id"],
                            "name": names.get(block["tool_use_id"])})
            elif kind in ("thinking", "redacted_thinking") and m["role"] == "assistant":
                continue  # no model here thinks apart from its answer
            else:
                raise InvalidRequestError(f"{at}: a {kind!r} block is not supported in a {m['role']} message",
                                          param=at)
        if parts or calls or not any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
            msg: dict[str, Any] = {"role": m["role"], "content": _joined(parts), "at": where}
            if calls:
                msg["tool_calls"] = calls
            out.append(msg)
    return out


def _joined(parts: list[dict]) -> Any:
    """Text parts as one string; with an image among them, the parts as they are (for a projector)."""
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _text(value: Any, param: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
                                       for b in value):
        return "".join(b["text"] for b in value)
    raise InvalidRequestError(f"'{param}' must be a string or a list of text blocks", param=param)


def _image(source: Any, at: str) -> dict:
    if isinstance(source, dict) and source.get("type") == "base64" and isinstance(source.get("data"), str):
        return {"type": "image_url", "image_url": {"url": f"data:{source.get('media_type', 'image/png')};base64,"
                                                          f"{source['data']}"}}
    if isinstance(source, dict) and source.get("type") == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise InvalidRequestError(f"{at}: an image needs a base64 or url source", param=f"{at}.source")


def _tools(body: dict) -> tuple[list[dict], str, str | None, bool]:
    raw = body.get("tools") or []
    if not isinstance(raw, list):
        raise InvalidRequestError("'tools' must be a list of tools", param="tools")
    fns = []
    for i, t in enumerate(raw):
        if not isinstance(t, dict) or t.get("type") not in (None, "custom") or "input_schema" not in t:
            raise InvalidRequestError(f"tools[{i}] must be a custom tool with a name and an input_schema "
                                      "(server tools are not supported)", param=f"tools[{i}]")
        fns.append({"name": t.get("name"), "description": t.get("description"), "parameters": t["input_schema"]})
    tools = tools_checked(fns)
    tc = body.get("tool_choice") or {"type": "auto"}
    kinds = {"auto": "auto", "any": "required", "tool": "function", "none": "none"}
    if not isinstance(tc, dict) or tc.get("type") not in kinds:
        raise InvalidRequestError("'tool_choice' must be {\"type\": \"auto\" | \"any\" | \"tool\" | \"none\"}",
                                  param="tool_choice")
    choice, name = kinds[tc["type"]], tc.get("name") if tc["type"] == "tool" else None
    tool_choice_checked(choice, name, tools)
    return tools, choice, name, not tc.get("disable_parallel_tool_use", False)


# ---------------------------------------------------------------------------------------------
# answers


def _tool_id(call_id: str) -> str:
    return "toolu_" + call_id.removeprefix("call_")


def _stop_reason(finish: str, stop_sequence: str | None) -> str:
    return "stop_sequence" if stop_sequence else _STOP_REASONS.get(finish, "end_turn")


def message_doc(result: GenResult) -> dict:
    c = result.choices[0]
    content: list[dict] = [{"type": "text", "text": c.text}] if c.text or not c.tool_calls else []
    content += [{"type": "tool_use", "id": _tool_id(t.id), "name": t.name, "input": t.input()} for t in c.tool_calls]
    return {"id": new_id("msg_"), "type": "message", "role": "assistant", "model": result.model, "content": content,
            "stop_reason": _stop_reason(c.finish_reason, c.stop_sequence), "stop_sequence": c.stop_sequence,
            "usage": {"input_tokens": result.usage["prompt_tokens"], "output_tokens": result.usage["completion_tokens"]}}


def _event(name: str, doc: dict) -> bytes:
    return f"event: {name}\ndata: ".encode() + json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() \
        + b"\n\n"


class _Wire:
    """Internal events as Anthropic's stream: one content block per run of text and per tool call."""

    def __init__(self) -> None:
        self._block = -1  # the index of the open block
        self._open: str | None = None  # its kind: "text", "tool_use", or None when none is open
        self._stop = ("end_turn", None)

    def _start(self, block: dict) -> bytes:
        out = self._close()
        self._block += 1
        self._open = block["type"]
        return out + _event("content_block_start", {"type": "content_block_start", "index": self._block,
                                                    "content_block": block})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return _event("content_block_stop", {"type": "content_block_stop", "index": self._block})

    def _delta(self, delta: dict) -> bytes:
        return _event("content_block_delta", {"type": "content_block_delta", "index": self._block, "delta": delta})

    def event(self, ev: dict) -> bytes:
        kind = ev["type"]
        if kind == "start":
            message = {"id": new_id("msg_"), "type": "message", "role": "assistant", "model": ev["model"],
                       "content": [], "stop_reason": None, "stop_sequence": None,
                       "usage": {"input_tokens": ev["prompt_tokens"], "output_tokens": 0}}
            return _event("message_start", {"type": "message_start", "message": message})
        if kind == "text":
            out = b"" if self._open == "text" else self._start({"type": "text", "text": ""})
            return out + self._delta({"type": "text_delta", "text": ev["text"]})
        if kind == "tool_call":
            return self._start({"type": "tool_use", "id": _tool_id(ev["id"]), "name": ev["name"], "input": {}})
        if kind == "arguments":
            return self._delta({"type": "input_json_delta", "partial_json": ev["delta"]})
        if kind == "finish":
            self._stop = (_stop_reason(ev["finish_reason"], ev["stop_sequence"]), ev["stop_sequence"])
            return self._close()
        # usage: the last event
        delta = {"type": "message_delta", "delta": {"stop_reason": self._stop[0], "stop_sequence": self._stop[1]},
                 "usage": {"output_tokens": ev["usage"]["completion_tokens"]}}
        return _event("message_delta", delta) + _event("message_stop", {"type": "message_stop"})

    def end(self) -> bytes:
        return b""

    def error(self, err: ApiError) -> bytes:
        return _event("error", error_body(err))
