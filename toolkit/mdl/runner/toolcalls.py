"""Tool calls in a model's own syntax: which syntax a chat template uses, the tools and past calls
rendered for a template that has no syntax of its own, the calls read back out of an answer (all at
once, or while it streams), and the JSON schema a forced call is generated under.

The families (what llama.cpp's `--jinja` mode knows them by):

- HERMES (Hermes, Qwen 2.5/3, many fine-tunes): `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`,
  one per call, after any text.
- LLAMA3 (Llama 3.1-3.3): the whole answer is `{"name": ..., "parameters": {...}}` (several separated by
  `;`), after an optional `<|python_tag|>`.
- MISTRAL: `[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]`, or, from the v11 tokenizer on,
  `[TOOL_CALLS]name[ARGS]{...}` per call. `[TOOL_CALLS]` is a control token that detokenizing may drop,
  so an answer that is a bare array of calls counts too.
- GENERIC: a template that renders no tools. The tools are described in a system message that asks for
  HERMES' syntax (`render_tools`), and every family's parser is tried.

A call is `(name, arguments)` with `arguments` as JSON text. Nothing here needs llama.cpp.
"""

from __future__ import annotations

import json
import re
from typing import Any

HERMES, LLAMA3, MISTRAL, GENERIC = "hermes", "llama3", "mistral", "generic"
_HERMES_OPEN, _HERMES_CLOSE = "<tool_call>", "</tool_call>"
_MISTRAL_MARK, _PYTHON_TAG = "[TOOL_CALLS]", "<|python_tag|>"
_MARKERS = {HERMES: (_HERMES_OPEN,), MISTRAL: (_MISTRAL_MARK,), LLAMA3: (_PYTHON_TAG,),
            GENERIC: (_HERMES_OPEN, _MISTRAL_MARK, _PYTHON_TAG)}
_TOOL_ROLE = re.compile(r"""['"](tool|ipython)['"]""")
_DECODER = json.JSONDecoder(strict=False)  # a raw control character in a string: read, then escaped on output

Call = tuple[str, str]


def _loads(text: str) -> Any:
    return _DECODER.decode(text)


def family_of(template: str | None) -> str:
    t = template or ""
    if _HERMES_OPEN in t:
        return HERMES
    if _MISTRAL_MARK in t:
        return MISTRAL
    if _PYTHON_TAG in t or ("<|start_header_id|>" in t and "tools" in t):
        return LLAMA3
    return GENERIC


# ---------------------------------------------------------------------------------------------
# rendering


def render_tools(messages: list[dict], tools: list[dict], template: str | None) -> tuple[list[dict], list | None]:
    """(messages, tools) as the template gets them: OpenAI's shapes for what the template renders itself
    (`tools`, `tool_calls` with arguments as objects, the `tool` role), text in HERMES' syntax for what
    it does not."""
    t = template or ""
    own_tools, own_calls, own_role = "tools" in t, "tool_calls" in t, bool(_TOOL_ROLE.search(t))
    out = []
    for m in messages:
        m = dict(m)
        calls = m.pop("tool_calls", None) or []
        if m["role"] == "assistant" and calls:
            if own_calls:
                m["tool_calls"] = [{"id": c["id"], "type": "function",
                                    "function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls]
            else:
                text = "\n".join(_HERMES_OPEN + json.dumps({"name": c["name"], "arguments": c["arguments"]},
                                                           ensure_ascii=False) + _HERMES_CLOSE for c in calls)
                m["content"] = (m.get("content") or "") + ("\n" if m.get("content") else "") + text
        elif m["role"] == "tool" and not own_role:
            m = {"role": "user", "content": f"<tool_response>\n{m.get('content', '')}\n</tool_response>"}
        out.append(m)
    if not tools:
        return out, None
    shaped = [{"type": "function", "function": {"name": t_["name"], "description": t_.get("description") or "",
                                                "parameters": parameters_of(t_)}} for t_ in tools]
    if own_tools:
        return out, shaped
    listing = "\n".join(json.dumps(s["function"], ensure_ascii=False) for s in shaped)
    note = ("Tools:\n" + listing + '\nTo call a tool, answer <tool_call>{"name": ..., "arguments": {...}}</tool_call>')
    if out and out[0]["role"] == "system" and isinstance(out[0].get("content"), str):
        out[0] = dict(out[0], content=out[0]["content"] + "\n\n" + note)
    else:
        out.insert(0, {"role": "system", "content": note})
    return out, None


def parameters_of(tool: dict) -> dict:
    params = tool.get("parameters")
    return params if isinstance(params, dict) and params else {"type": "object", "properties": {}}


def forced_schema(tools: list[dict], name: str | None) -> tuple[dict, str | None]:
    """The schema of a forced call: the arguments of `name` (or of the only tool), whose name is then
    returned too; else an object naming one of the tools, with its arguments."""
    chosen = [t for t in tools if t["name"] == name] if name else tools
    if len(chosen) == 1:
        return parameters_of(chosen[0]), chosen[0]["name"]
    return {"anyOf": [{"type": "object", "properties": {"name": {"const": t["name"]}, "arguments": parameters_of(t)},
                       "required": ["name", "arguments"], "additionalProperties": False} for t in chosen]}, None


def forced_call(text: str, name: str | None) -> Call | None:
    """The call a forced generation wrote (see `forced_schema`); None when the text was cut short."""
    try:
        value = _loads(text)
    except ValueError:
        return None
    if name is not None:
        return name, json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return value["name"], json.dumps(value.get("arguments", {}), ensure_ascii=False)
    return None


# ---------------------------------------------------------------------------------------------
# parsing


def parse(text: str, family: str, names: set[str]) -> tuple[str, list[Call]]:
    """(the text before any call, the calls) of a whole answer; (text, []) when it makes no call."""
    parsers = {HERMES: (_hermes,), MISTRAL: (_mistral,), LLAMA3: (_llama3,),
               GENERIC: (_hermes, _mistral, _llama3)}[family]
    for parser in parsers:
        found = parser(text, names)
        if found is not None and found[1]:
            return found
    return text, []


def _call(obj: Any, names: set[str] | None = None) -> Call | None:
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):  # {"type": "function", "function": {...}}
        obj = obj["function"]
    name = obj.get("name")
    args = obj.get("arguments", obj.get("parameters", {}))
    if not isinstance(name, str) or not name or (names is not None and name not in names):
        return None
    if isinstance(args, str):
        try:
            args = _loads(args)
        except ValueError:
            return None
    return name, json.dumps(args, ensure_ascii=False)


def _hermes(text: str, names: set[str]) -> tuple[str, list[Call]] | None:
    start = text.find(_HERMES_OPEN)
    if start < 0:
        return None
    calls, pos = [], start
    while pos >= 0:
        body_start = pos + len(_HERMES_OPEN)
        end = text.find(_HERMES_CLOSE, body_start)
        body = text[body_start:end if end >= 0 else len(text)].strip()
        try:
            call = _call(_loads(body))
        except ValueError:
            return None
        if call is None:
            return None
        calls.append(call)
        if end < 0:
            break
        pos = text.find(_HERMES_OPEN, end)
    return text[:start].rstrip(), calls


def _mistral(text: str, names: set[str]) -> tuple[str, list[Call]] | None:
    start = text.find(_MISTRAL_MARK)
    marked = start >= 0
    if marked:
        rest = text[start + len(_MISTRAL_MARK):].strip()
    elif text.lstrip().startswith("[{"):  # the control token was dropped when detokenizing
        start, rest = 0, text.strip()
    else:
        return None
    if rest.startswith("["):
        try:
            value = _loads(rest)
        except ValueError:
            return None
        # without the mark, an array is a list of calls only if it names the request's tools
        calls = [_call(v, None if marked else names) for v in value] if isinstance(value, list) else [None]
    else:  # name[ARGS]{...}, repeated
        calls = []
        for part in filter(None, (p.strip() for p in rest.split(_MISTRAL_MARK))):
            name, sep, args = part.partition("[ARGS]")
            name = name.split("[CALL_ID]")[0].strip()
            try:
                calls.append(_call({"name": name, "arguments": _loads(args)}) if sep else None)
            except ValueError:
                return None
    if not calls or any(c is None for c in calls):
        return None
    return text[:start].rstrip(), calls


def _llama3(text: str, names: set[str]) -> tuple[str, list[Call]] | None:
    body = text.strip()
    if body.startswith(_PYTHON_TAG):
        body = body[len(_PYTHON_TAG):].lstrip()
    if not body.startswith("{"):
        return None
    calls, pos = [], 0
    while pos < len(body):
        try:
            value, pos = _DECODER.raw_decode(body, pos)
        except ValueError:
            return None
        call = _call(value, names)
        if call is None:
            return None
        calls.append(call)
        while pos < len(body) and body[pos] in " \t\r\n;":
            pos += 1
    return "", calls


class StreamScanner:
    """Splits a streamed answer into text to send now and a tail that may be tool calls.

    `feed(piece)` returns the text that can go to the client at once; from a call's first mark on (or,
    for LLAMA3 and MISTRAL, an answer that opens like a call) the rest is held. `finish()` returns
    (the held text that turned out not to be a call, the calls)."""

    def __init__(self, family: str, names: set[str]):
        self.family, self.names = family, names
        self._markers = _MARKERS[family]
        self._pending = ""
        self._held: str | None = None
        self._sent = False

    def feed(self, piece: str) -> str:
        if self._held is not None:
            self._held += piece
            return ""
        text = self._pending + piece
        if not self._sent and self.family in (LLAMA3, MISTRAL, GENERIC) and text.lstrip()[:1] in ("{", "["):
            self._held, self._pending = text, ""
            return ""
        cut = min((i for i in (text.find(m) for m in self._markers) if i >= 0), default=-1)
        if cut >= 0:
            self._held, self._pending = text[cut:], ""
            return self._emit(text[:cut])
        keep = max((k for m in self._markers for k in range(1, len(m)) if text.endswith(m[:k])), default=0)
        if not self._sent and not text.strip():  # only whitespace so far: an answer may still open like a call
            self._pending = text
            return ""
        self._pending = text[len(text) - keep:] if keep else ""
        return self._emit(text[:len(text) - keep])

    def _emit(self, text: str) -> str:
        self._sent = self._sent or bool(text.strip())
        return text

    def finish(self) -> tuple[str, list[Call]]:
        held, self._held = self._held, None
        if held is None:
            rest, self._pending = self._pending, ""
            return rest, []
        text, calls = parse(held, self.family, self.names)
        return (text, calls) if calls else (held, [])


class StringEscaper:
    """Escapes raw control characters inside the JSON strings of a text that arrives in pieces (a
    grammar lets llama.cpp's byte tokens write them), so that the pieces join into strict JSON."""

    def __init__(self) -> None:
        self._in_string = self._escaped = False

    def feed(self, piece: str) -> str:
        out = []
        for ch in piece:
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif ch == "\\":
                    self._escaped = True
                elif ch == '"':
                    self._in_string = False
                elif ch < " ":
                    ch = f"\\u{ord(ch):04x}"
            elif ch == '"':
                self._in_string = True
            out.append(ch)
        return "".join(out)
