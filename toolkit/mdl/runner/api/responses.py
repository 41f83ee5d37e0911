"""OpenAI's Responses API under `/responses`, `/v1/responses`, `/engines/v1/responses` and
`/engines/llama.cpp/v1/responses`: create (`POST`), retrieve (`GET {id}`), its input items
(`GET {id}/input_items`) and delete (`DELETE {id}`).

`input` is a string or a list of items (messages with `input_text` / `output_text` / `input_image`
parts, `function_call` and `function_call_output` items); `instructions` is a system message for this
response only; `max_output_tokens`, `temperature`, `top_p`, `top_logprobs`, `text.format` (`text`,
`json_object`, `json_schema`), function `tools`, `tool_choice` and `parallel_tool_calls` map onto the
internal request. Responses are kept in memory for an hour (response_store.py) unless `store` is
false; `previous_response_id` continues the conversation one ended. A stream is server-sent events
named by type (`response.created`, `response.output_item.added`, `response.output_text.delta`, ...,
`response.completed`), each with its `sequence_number`. Errors have OpenAI's shape.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..api_errors import ApiError, error_param
from ..request_body import model_of, read_json
from ..validation import InvalidRequestError, arguments_object, number, tool_choice_checked, tools_checked
from .gateway import generate, open_stream, recorded, stream_response
from .internal import CHAT, SAMPLING, GenRequest, GenResult, new_id, now
from .response_store import ResponseStore

PREFIXES = ("", "/v1", "/engines/v1", "/engines/llama.cpp/v1")
PARAMS = {"messages": "input", "schema": "text.format", "tools": "tools", "prompt": "input"}


def store_of(state) -> ResponseStore:
    return state.responses


# ---------------------------------------------------------------------------------------------
# endpoints


@error_param("model")
async def create(request: Request) -> Response:
    return await recorded(request, "responses", lambda state, record: _create(request, state, record))


async def _create(request: Request, state, record) -> Response:
    body = await read_json(request, state.max_body)
    model = model_of(body)
    previous = body.get("previous_response_id")
    history: list[dict] = []
    if previous is not None:
        kept = store_of(state).get(previous) if isinstance(previous, str) else None
        if kept is None:
            raise ApiError(404, f"Previous response with id '{previous}' not found.", param="previous_response_id",
                           code="previous_response_not_found")
        history = kept.history
    req, items, new_messages = response_request(body, model, history)
    shell = _shell(body, model)
    keep = body.get("store", True) is not False
    conversation = history + new_messages

    def finish(response: dict) -> None:
        if keep:
            outputs = _output_messages(response["output"])
            store_of(state).put(response, items, conversation + outputs)

    if body.get("stream"):
        started = await open_stream(state, record, model, req)
        return stream_response(started, _Wire(shell, finish), "text/event-stream")
    response = _complete(shell, await generate(state, record, model, req))
    finish(response)
    return JSONResponse(response)


async def retrieve(request: Request) -> Response:
    return JSONResponse(_kept(request).response)


async def input_items(request: Request) -> Response:
    items = list(reversed(_kept(request).input_items)) if request.query_params.get("order", "desc") == "desc" \
        else _kept(request).input_items
    return JSONResponse({"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
                         "last_id": items[-1]["id"] if items else None, "has_more": False})


async def delete(request: Request) -> Response:
    rid = request.path_params["response_id"]
    if not store_of(request.app.state).delete(rid):
        raise _not_found(rid)
    return JSONResponse({"id": rid, "object": "response", "deleted": True})


def _kept(request: Request):
    rid = request.path_params["response_id"]
    kept = store_of(request.app.state).get(rid)
    if kept is None:
        raise _not_found(rid)
    return kept


def _not_found(rid: str) -> ApiError:
    return ApiError(404, f"Response with id '{rid}' not found.", param="response_id", code="response_not_found")


# ---------------------------------------------------------------------------------------------
# requests


def response_request(body: dict, model: str, history: list[dict]) -> tuple[GenRequest, list[dict], list[dict]]:
    """(the internal request, the input as stored items, the input as internal messages)."""
    items = _items(body.get("input"))
    messages = _messages(items)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise InvalidRequestError("'instructions' must be a string", param="instructions")
    sampling = {}
    for name, lo, hi in (("temperature", 0, 2), ("top_p", 0, 1)):
        v = number(body, name, lo, hi)
        if v is not None:
            sampling[name] = v
    max_tokens = number(body, "max_output_tokens", 1, None, integer=True)
    top = number(body, "top_logprobs", 0, 20, integer=True)
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if body.get("text") is not None and not isinstance(body.get("text"), dict):
        raise InvalidRequestError("'text' must be an object like {\"format\": {...}}", param="text")
    json_, schema = _format(fmt)
    tools, choice, name = _tools(body)
    parallel = body.get("parallel_tool_calls", True)
    if not isinstance(parallel, bool):
        raise InvalidRequestError("'parallel_tool_calls' must be true or false", param="parallel_tool_calls")
    system = [{"role": "system", "content": instructions}] if instructions else []
    req = GenRequest(CHAT, model, messages=system + history + messages, tools=tools, tool_choice=choice, tool_name=name,
                     parallel_tool_calls=parallel, sampling={k: sampling[k] for k in SAMPLING if k in sampling},
                     max_tokens=max_tokens, json=json_, schema=schema, logprobs=top, params=PARAMS)
    return req, items, messages


def _items(raw: Any) -> list[dict]:
    if isinstance(raw, str):
        return [{"id": new_id("msg_"), "type": "message", "role": "user", "status": "completed",
                 "content": [{"type": "input_text", "text": raw}]}]
    if not isinstance(raw, list) or not raw:
        raise InvalidRequestError("'input' must be a string or a non-empty list of items", param="input")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidRequestError(f"input[{i}] must be an object", param=f"input[{i}]")
        kind = item.get("type", "message")
        if kind == "message":
            content = item.get("content")
            if isinstance(content, str):
                content = [{"type": "output_text" if item.get("role") == "assistant" else "input_text", "text": content}]
            out.append({"id": item.get("id") or new_id("msg_"), "type": "message", "role": item.get("role"),
                        "status": "completed", "content": content})
        elif kind in ("function_call", "function_call_output"):
            out.append({"id": item.get("id") or new_id("fc_"), **item})
        elif kind != "reasoning":
            raise InvalidRequestError(f"input[{i}]: items of type {kind!r} are not supported", param=f"input[{i}].type")
    return out


def _messages(items: list[dict]) -> list[dict]:
    out: list[dict] = []
    for i, item in enumerate(items):
        at = f"input[{i}]"
        if item["type"] == "function_call":
            if not isinstance(item.get("call_id"), str) or not isinstance(item.get("name"), str):
                raise InvalidRequestError(f"{at}: a function_call needs a call_id and a name", param=at)
            call = {"id": item["call_id"], "name": item["name"],
                    "arguments": arguments_object(item.get("arguments") or "{}", f"{at}.arguments")}
            if out and out[-1]["role"] == "assistant" and not out[-1]["content"]:
                out[-1].setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": "", "tool_calls": [call], "at": at})
        elif item["type"] == "function_call_output":
            output = item.get("output")
            if not isinstance(item.get("call_id"), str) or not isinstance(output, str):
                raise InvalidRequestError(f"{at}: a function_call_output needs a call_id and a string output", param=at)
            out.append({"role": "tool", "content": output, "tool_call_id": item["call_id"], "at": at})
        else:
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise InvalidRequestError(f"{at}.role must be user, assistant, system or developer", param=f"{at}.role")
            out.append({"role": "system" if role == "developer" else role, "content": _content(item["content"], at),
                        "at": at})
    return out


def _content(parts: Any, at: str) -> Any:
    if not isinstance(parts, list):
        raise InvalidRequestError(f"{at}.content must be a string or a list of parts", param=f"{at}.content")
    out = []
    for j, p in enumerate(parts):
        kind = p.get("type") if isinstance(p, dict) else None
        if kind in ("input_text", "output_text") and isinstance(p.get("text"), str):
            out.append({"type": "text", "text": p["text"]})
        elif kind == "input_image" and isinstance(p.get("image_url"), str):
            out.append({"type": "image_url", "image_url": {"url": p["image_url"]}})
        else:
            raise InvalidRequestError(f"{at}.content[{j}]: a {kind!r} part is not supported", param=f"{at}.content")
    return "".join(p["text"] for p in out) if all(p["type"] == "text" for p in out) else out


def _format(fmt: Any) -> tuple[bool, dict | None]:
    if fmt is None or (isinstance(fmt, dict) and fmt.get("type") == "text"):
        return False, None
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        return True, None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        return True, fmt["schema"]
    raise InvalidRequestError("'text.format' must be {\"type\": \"text\" | \"json_object\"} or "
                              "{\"type\": \"json_schema\", \"name\", \"schema\": {...}}", param="text.format")


def _tools(body: dict) -> tuple[list[dict], str, str | None]:
    raw = body.get("tools") or []
    if not isinstance(raw, list) or not all(isinstance(t, dict) and t.get("type") == "function" for t in raw):
        raise InvalidRequestError("'tools' must be a list of function tools ({\"type\": \"function\", \"name\", "
                                  "\"parameters\"})", param="tools")
    tools = tools_checked(raw)
    tc = body.get("tool_choice", "auto")
    if tc in ("none", "auto", "required"):
        choice, name = tc, None
    elif isinstance(tc, dict) and tc.get("type") == "function" and isinstance(tc.get("name"), str):
        choice, name = "function", tc["name"]
    else:
        raise InvalidRequestError("'tool_choice' must be \"none\", \"auto\", \"required\" or "
                                  "{\"type\": \"function\", \"name\": ...}", param="tool_choice")
    tool_choice_checked(choice, name, tools)
    return tools, choice, name


# ---------------------------------------------------------------------------------------------
# answers


def _shell(body: dict, model: str) -> dict:
    """The response object before its output: what the request asked for, echoed."""
    text = body.get("text") if isinstance(body.get("text"), dict) else {"format": {"type": "text"}}
    return {"id": new_id("resp_"), "object": "response", "created_at": now(), "status": "in_progress", "error": None,
            "incomplete_details": None, "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"), "model": model, "output": [],
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"), "temperature": body.get("temperature"),
            "top_p": body.get("top_p"), "text": text, "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [], "metadata": body.get("metadata") or {},
            "store": body.get("store", True) is not False, "truncation": "disabled", "usage": None}


def _usage(usage: dict) -> dict:
    return {"input_tokens": usage["prompt_tokens"], "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": usage["completion_tokens"], "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage["total_tokens"]}


def _message_item(text: str, logprobs: list | None, status: str = "completed", mid: str | None = None) -> dict:
    return {"id": mid or new_id("msg_"), "type": "message", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs or []}]}


def _call_item(call_id: str, name: str, arguments: str, status: str = "completed", fid: str | None = None) -> dict:
    return {"id": fid or new_id("fc_"), "type": "function_call", "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}


def _ended(response: dict, finish: str, usage: dict) -> dict:
    incomplete = finish == "length"
    return {**response, "status": "incomplete" if incomplete else "completed",
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None, "usage": _usage(usage)}


def _complete(shell: dict, result: GenResult) -> dict:
    c = result.choices[0]
    output = [_message_item(c.text, c.logprobs)] if c.text or not c.tool_calls else []
    output += [_call_item(t.id, t.name, t.arguments) for t in c.tool_calls]
    return _ended({**shell, "output": output}, c.finish_reason, result.usage)


def _output_messages(output: list[dict]) -> list[dict]:
    """A response's output as internal messages, for the conversation `previous_response_id` continues."""
    text = "".join(p["text"] for item in output if item["type"] == "message" for p in item["content"])
    calls = [{"id": item["call_id"], "name": item["name"], "arguments": _object(item["arguments"])}
             for item in output if item["type"] == "function_call"]
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = calls
    return [message]


def _object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class _Wire:
    """Internal events as the Responses API's stream; `finish(response)` is called with the whole
    response once it is complete (to keep it)."""

    def __init__(self, shell: dict, finish):
        self.response, self._finish = shell, finish
        self._seq = 0
        self._item: dict | None = None  # the output item being written
        self._end = "stop"

    def _event(self, kind: str, **fields) -> bytes:
        doc = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return f"event: {kind}\ndata: ".encode() + json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() \
            + b"\n\n"

    def _open(self, item: dict) -> bytes:
        out = self._close()
        self._item = item
        index = len(self.response["output"])
        out += self._event("response.output_item.added", output_index=index, item=item)
        if item["type"] == "message":
            out += self._event("response.content_part.added", item_id=item["id"], output_index=index, content_index=0,
                               part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})
        return out

    def _close(self) -> bytes:
        item, self._item = self._item, None
        if item is None:
            return b""
        index = len(self.response["output"])
        done = dict(item, status="completed")
        out = b""
        if item["type"] == "message":
            part = done["content"][0]
            out += self._event("response.output_text.done", item_id=item["id"], output_index=index, content_index=0,
                               text=part["text"], logprobs=part["logprobs"])
            out += self._event("response.content_part.done", item_id=item["id"], output_index=index,
                               content_index=0, part=part)
        else:
            out += self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                               name=item["name"], arguments=item["arguments"])
        self.response["output"].append(done)
        return out + self._event("response.output_item.done", output_index=index, item=done)

    def event(self, ev: dict) -> bytes:
        kind, index = ev["type"], len(self.response["output"])
        if kind == "start":
            self.response["created_at"] = ev["created"]
            return self._event("response.created", response=self.response) + \
                self._event("response.in_progress", response=self.response)
        if kind == "text":
            out = b""
            if self._item is None or self._item["type"] != "message":
                item = _message_item("", None, "in_progress")
                item["content"] = []
                out = self._open(item)
                item["content"] = [{"type": "output_text", "text": "", "annotations": [], "logprobs": []}]
            part = self._item["content"][0]
            part["text"] += ev["text"]
            part["logprobs"] += ev["logprobs"] or []
            return out + self._event("response.output_text.delta", item_id=self._item["id"], output_index=index,
                                     content_index=0, delta=ev["text"], logprobs=ev["logprobs"] or [])
        if kind == "tool_call":
            return self._open(_call_item(ev["id"], ev["name"], "", "in_progress"))
        if kind == "arguments":
            self._item["arguments"] += ev["delta"]
            return self._event("response.function_call_arguments.delta", item_id=self._item["id"], output_index=index,
                               delta=ev["delta"])
        if kind == "finish":
            self._end = ev["finish_reason"]
            return self._close()
        self.response = _ended(self.response, self._end, ev["usage"])  # usage: the last event
        self._finish(self.response)
        name = "response.incomplete" if self.response["status"] == "incomplete" else "response.completed"
        return self._event(name, response=self.response)

    def end(self) -> bytes:
        return b""

    def error(self, err: ApiError) -> bytes:
        return self._event("error", code=err.code, message=err.message, param=err.param)
