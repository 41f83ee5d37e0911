"""The checks of a request body, before any model sees it.

Each function reads one part of a request dict (the JSON body of `/v1/chat/completions`,
`/v1/completions`, `/v1/embeddings`, or a part of another API's body: `number`, `stop_list`, the tool
checks) and returns what the internal request or llama-cpp-python takes, or raises
`InvalidRequestError` naming the parameter (HTTP 400). Nothing here needs llama-cpp-python: what only
a loaded model can check (token counts, the grammar llama.cpp builds) is the engine's.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ..errors import MdlError

_ROLES = ("system", "user", "assistant", "tool", "developer", "function")

# A `response_format` JSON schema becomes a llama.cpp grammar with every repetition written out (a
# `minLength` of 10**9 is a billion symbols: gigabytes, then the OOM killer), and llama-cpp-python uses
# a grammar llama.cpp's parser refuses (`maxLength` 3000 is enough) as a NULL sampler: a segfault that
# takes the server down. So the repetitions a schema asks for are bounded in total, and llama.cpp
# parses the grammar once before generation, where a refusal is still a 400
# (`engine.Engine._check_grammar`).
MAX_SCHEMA_REPETITIONS = 100_000
_REPEAT_KEYS = frozenset({"minLength", "maxLength", "minItems", "maxItems"})
_QUANTIFIER = re.compile(r"\{\s*(\d*)\s*(?:,\s*(\d*)\s*)?\}")
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
MAX_CHOICES = 16  # `n`: choices are generated one after another


class InvalidRequestError(MdlError):
    """A request the engine cannot answer as asked (HTTP 400)."""

    kind = "invalid-request"

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        self.param = param
        self.code = code
        super().__init__(message, "fix the request and send it again")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def number(req: dict, name: str, lo: float, hi: float | None, *, integer: bool = False, param: str | None = None):
    """`req[name]` (None when absent or null), refused unless a number (an integer) from `lo` to `hi`;
    the error names `param` (an API's own name for it, `options.temperature`), else `name`."""
    if name not in req or req[name] is None:
        return None
    v = req[name]
    ok = _is_int(v) if integer else _is_num(v)
    if not ok or v < lo or (hi is not None and v > hi):
        what = "an integer" if integer else "a number"
        rng = f"from {lo} to {hi}" if hi is not None else f"of at least {lo}"
        raise InvalidRequestError(f"'{param or name}' must be {what} {rng}, got {v!r}", param=param or name)
    return v


_num = number


def stop_list(stop: Any, param: str = "stop") -> list[str]:
    """Stop strings from a string or a list of strings (empty ones dropped)."""
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return [s for s in stop if s]
    raise InvalidRequestError(f"'{param}' must be a string or a list of strings", param=param)


def _stop(req: dict):
    return stop_list(req.get("stop"))


def sampling_args(req: dict) -> dict:
    """The sampling arguments the request sets (absent ones keep the library's defaults)."""
    if req.get("stream") is not None and not isinstance(req.get("stream"), bool):
        raise InvalidRequestError("'stream' must be true or false", param="stream")
    so = req.get("stream_options")
    if so is not None and (not isinstance(so, dict) or not isinstance(so.get("include_usage", False), bool)):
        raise InvalidRequestError("'stream_options' must be an object like {\"include_usage\": true}",
                                  param="stream_options")
    if "suffix" in req and req["suffix"] is not None:
        raise InvalidRequestError("'suffix' is not supported", param="suffix")
    if "echo" in req and req["echo"] not in (None, False):
        raise InvalidRequestError("'echo' is not supported", param="echo")
    out: dict[str, Any] = {}
    max_tokens = req.get("max_completion_tokens")
    if max_tokens is not None:
        max_tokens = _num(req, "max_completion_tokens", 1, None, integer=True)
    if req.get("max_tokens") is not None:
        max_tokens = _num(req, "max_tokens", 1, None, integer=True)
    if max_tokens is not None:
        out["max_tokens"] = max_tokens
    for name, key, lo, hi, integer in (
        ("temperature", "temperature", 0, 2, False),
        ("top_p", "top_p", 0, 1, False),
        ("top_k", "top_k", 0, None, True),
        ("min_p", "min_p", 0, 1, False),
        ("presence_penalty", "presence_penalty", -2, 2, False),
        ("frequency_penalty", "frequency_penalty", -2, 2, False),
        ("repeat_penalty", "repeat_penalty", 0, None, False),
        ("seed", "seed", -(2**63), 2**64 - 1, True),
    ):
        v = _num(req, name, lo, hi, integer=integer)
        if v is not None:
            out[key] = v
    if "seed" in out:
        out["seed"] = out["seed"] & 0xFFFFFFFF  # llama.cpp seeds are 32-bit
    stop = _stop(req)
    if stop:
        out["stop"] = stop
    rf = req.get("response_format")
    if rf is not None:
        if not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema"):
            raise InvalidRequestError("'response_format' must be {\"type\": \"text\"|\"json_object\"|\"json_schema\"}",
                                      param="response_format")
        if rf["type"] == "json_schema":
            schema = (rf.get("json_schema") or {}).get("schema") if isinstance(rf.get("json_schema"), dict) else None
            if not isinstance(schema, dict):
                raise InvalidRequestError("'response_format.json_schema.schema' must be an object",
                                          param="response_format")
            out["response_format"] = {"type": "json_object", "schema": schema}
        elif rf["type"] == "json_object":
            out["response_format"] = {"type": "json_object"}
    return out


def schema_repetitions(schema: Any) -> int:
    """The total of the repetition counts a JSON schema asks for (string lengths, item counts, regex
    quantifiers in `pattern`), as the grammar writes them out; over the limit as soon as it is known."""
    total = 0
    stack = [schema]
    while stack and total <= MAX_SCHEMA_REPETITIONS:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if key in _REPEAT_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
                total += int(abs(value)) if math.isfinite(value) and abs(value) <= MAX_SCHEMA_REPETITIONS \
                    else MAX_SCHEMA_REPETITIONS + 1
            elif key == "pattern" and isinstance(value, str):
                for m in _QUANTIFIER.finditer(value):
                    for digits in m.groups():
                        if digits:
                            total += int(digits) if len(digits) <= 6 else MAX_SCHEMA_REPETITIONS + 1
            elif isinstance(value, (dict, list)):
                stack.append(value)
    return total


def choices_and_logprobs(req: dict, *, chat: bool) -> tuple[int, int | None]:
    """(`n`, how many alternatives each token's log probability comes with, or None for none): a chat's
    `logprobs` is a boolean with `top_logprobs` 0-20, a completion's `logprobs` an integer 0-5."""
    n = _num(req, "n", 1, MAX_CHOICES, integer=True) or 1
    if chat:
        flag = req.get("logprobs")
        if flag not in (None, True, False):
            raise InvalidRequestError("'logprobs' must be true or false", param="logprobs")
        top = _num(req, "top_logprobs", 0, 20, integer=True)
        if top is not None and not flag:
            raise InvalidRequestError("'top_logprobs' needs 'logprobs': true", param="top_logprobs")
        return n, ((top or 0) if flag else None)
    top = _num(req, "logprobs", 0, 5, integer=True)
    return n, top


def tools_checked(tools: list[dict], param: str = "tools") -> list[dict]:
    """Internal tools (`{"name", "description", "parameters"}`): names present and distinct, parameter
    schemas objects."""
    seen = set()
    for i, t in enumerate(tools):
        name = t.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise InvalidRequestError(f"{param}[{i}].name must be letters, digits, '_', '-' or '.' "
                                      f"(at most 64), got {name!r}", param=f"{param}[{i}].name")
        if name in seen:
            raise InvalidRequestError(f"{param}[{i}].name: {name!r} is used twice", param=f"{param}[{i}].name")
        seen.add(name)
        if t.get("parameters") is not None and not isinstance(t["parameters"], dict):
            raise InvalidRequestError(f"{param}[{i}]: the parameters must be a JSON schema object", param=param)
        if t.get("description") is not None and not isinstance(t["description"], str):
            raise InvalidRequestError(f"{param}[{i}]: the description must be a string", param=param)
    return [{"name": t["name"], "description": t.get("description") or "", "parameters": t.get("parameters")}
            for t in tools]


def tool_choice_checked(choice: str, name: str | None, tools: list[dict], param: str = "tool_choice") -> None:
    """A forced function must be one of the tools; a forced call needs tools."""
    if choice == "function" and name not in {t["name"] for t in tools}:
        raise InvalidRequestError(f"'{param}' names {name!r}, which is not one of the tools", param=param)
    if choice in ("required", "function") and not tools:
        raise InvalidRequestError(f"'{param}' asks for a tool call but no tools are given", param=param)


def arguments_object(value: Any, param: str) -> dict:
    """A past call's arguments as an object (OpenAI sends them as JSON text)."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            raise InvalidRequestError(f"{param} must be JSON text", param=param) from None
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{param} must be a JSON object", param=param)
    return value


def chat_messages(req: dict, images: bool = False) -> list[dict]:
    msgs = req.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise InvalidRequestError("'messages' must be a non-empty list", param="messages")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            raise InvalidRequestError(f"messages[{i}] needs a 'role' ({', '.join(_ROLES[:4])})",
                                      param=f"messages[{i}].role")
        content = m.get("content")
        if content is None and m["role"] == "assistant":
            content = ""
        if isinstance(content, list) and images:  # content parts go to the projector's handler as given
            for j, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") not in ("text", "image_url"):
                    raise InvalidRequestError(f"messages[{i}].content[{j}]: only text and image_url parts are supported",
                                              param=f"messages[{i}].content")
        elif isinstance(content, list):  # content parts: text only
            content = _joined_text(content, f"messages[{i}]")
        if not isinstance(content, (str, list)):
            raise InvalidRequestError(f"messages[{i}].content must be a string or a list of text parts",
                                      param=f"messages[{i}].content")
        msg = {"role": "system" if m["role"] == "developer" else m["role"], "content": content}
        if isinstance(m.get("name"), str):
            msg["name"] = m["name"]
        if m["role"] == "assistant" and m.get("tool_calls"):
            msg["tool_calls"] = _past_calls(m["tool_calls"], f"messages[{i}].tool_calls")
        if m["role"] == "tool":
            if not isinstance(m.get("tool_call_id"), str):
                raise InvalidRequestError(f"messages[{i}] (a tool result) needs a 'tool_call_id'",
                                          param=f"messages[{i}].tool_call_id")
            msg["tool_call_id"] = m["tool_call_id"]
        out.append(msg)
    return out


def _joined_text(parts: list, where: str) -> str:
    texts = []
    for j, part in enumerate(parts):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise InvalidRequestError(f"{where}.content[{j}]: only text parts are supported (the model has no "
                                      "projector for images)", param=f"{where}.content")
        texts.append(part["text"])
    return "".join(texts)


def text_only(messages: list[dict]) -> list[dict]:
    """`messages` with content parts joined into text, for a model without a projector (an image part
    is refused, naming the message where the API's request has it: its `at`, else its index)."""
    if not any(isinstance(m.get("content"), list) for m in messages):
        return messages
    return [dict(m, content=_joined_text(m["content"], m.get("at") or f"messages[{i}]"))
            if isinstance(m.get("content"), list) else m for i, m in enumerate(messages)]


def _past_calls(calls: Any, param: str) -> list[dict]:
    if not isinstance(calls, list):
        raise InvalidRequestError(f"'{param}' must be a list of calls", param=param)
    out = []
    for j, c in enumerate(calls):
        fn = c.get("function") if isinstance(c, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not isinstance(c.get("id", ""), str):
            raise InvalidRequestError(f"{param}[{j}] must be {{\"id\", \"type\": \"function\", \"function\": "
                                      f"{{\"name\", \"arguments\"}}}}", param=f"{param}[{j}]")
        out.append({"id": c.get("id") or f"call_{j}", "name": fn["name"],
                    "arguments": arguments_object(fn.get("arguments", {}), f"{param}[{j}].function.arguments")})
    return out


def prompt_text(req: dict) -> str:
    p = req.get("prompt")
    if isinstance(p, list) and len(p) == 1 and isinstance(p[0], str):
        p = p[0]
    if not isinstance(p, str):
        raise InvalidRequestError("'prompt' must be a string (one prompt per request)", param="prompt")
    return p


def completion_args(req: dict) -> dict:
    """The sampling arguments of a text completion: those of a chat, less `response_format`
    (create_completion takes a grammar, not a response format)."""
    args = sampling_args(req)
    if "response_format" in args:
        raise InvalidRequestError("'response_format' is supported on chat completions only",
                                  param="response_format")
    return args


def embedding_inputs(req: dict) -> list[str]:
    """The texts of an embeddings request (their token counts are the engine's to check)."""
    inp = req.get("input")
    if isinstance(inp, str):
        inputs = [inp]
    elif isinstance(inp, list) and inp and all(isinstance(s, str) for s in inp):
        inputs = inp
    else:
        raise InvalidRequestError("'input' must be a string or a non-empty list of strings", param="input")
    if req.get("encoding_format") not in (None, "float"):
        raise InvalidRequestError("only encoding_format 'float' is supported", param="encoding_format")
    if any(s == "" for s in inputs):
        raise InvalidRequestError("'input' must not contain empty strings", param="input")
    return inputs


def wants_usage(req: dict) -> bool:
    """Whether a streamed answer ends with a usage chunk (`stream_options.include_usage`)."""
    return bool((req.get("stream_options") or {}).get("include_usage"))


def model_name(req: dict, default: str) -> str:
    """The model an answer names: the request's own `model`, else `default`."""
    m = req.get("model")
    return m if isinstance(m, str) and m else default
