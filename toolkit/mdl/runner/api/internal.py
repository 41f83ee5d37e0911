"""The one request every API is translated into, and the one result and stream every API is made from.

Each API's module (openai_shapes, anthropic, ollama, responses) reads its own body into a `GenRequest`,
checked with the API's own parameter names, and writes its own shape from a `GenResult` or from the
events of a stream. Between the two, one code path does the work (generation.py in the model's
worker): the chat template, tools, grammars, stop sequences, usage, log probabilities.

Internal messages (`GenRequest.messages`), in order:

    {"role": "system" | "user", "content": str (or OpenAI content parts, for a vision model)}
    {"role": "assistant", "content": str, "tool_calls": [{"id", "name", "arguments": dict}]}
    {"role": "tool", "content": str, "tool_call_id": str, "name": str | None}

A message may carry `at`, where the API's request has it (`messages[3]`), for errors about it.
Tools are `{"name", "description", "parameters"}` (a JSON schema). A stream is a sequence of plain dicts:

    {"type": "start", "id", "created", "model", "prompt_tokens"}      first, once
    {"type": "text", "index", "text", "logprobs": [entry] | None}     a piece of a choice's text
    {"type": "tool_call", "index", "call", "id", "name"}              a call begins
    {"type": "arguments", "index", "call", "delta"}                   a piece of its JSON arguments
    {"type": "finish", "index", "finish_reason", "stop_sequence"}     a choice ends
    {"type": "usage", "usage": {...}}                                 last, once

`finish_reason` is "stop", "length" or "tool_calls"; `stop_sequence` is the request's stop string that
ended the text, if one did. A log-probability entry is OpenAI's: `{"token", "logprob", "bytes",
"top_logprobs": [{"token", "logprob", "bytes"}]}`. Nothing here imports Starlette: the worker
process unpickles these.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

CHAT, COMPLETION = "chat", "completion"
TOOL_CHOICES = ("auto", "none", "required", "function")
SAMPLING = ("temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty", "repeat_penalty",
            "seed")


@dataclass
class GenRequest:
    """A generation request, whatever API it came from (see the module docstring)."""

    kind: str  # CHAT or COMPLETION
    model: str  # the name answers carry: the request's own
    messages: list[dict] = field(default_factory=list)
    prompt: str = ""
    tools: list[dict] = field(default_factory=list)
    tool_choice: str = "auto"  # one of TOOL_CHOICES; "function" forces `tool_name`
    tool_name: str | None = None
    parallel_tool_calls: bool = True
    sampling: dict = field(default_factory=dict)  # SAMPLING keys the request sets
    max_tokens: int | None = None  # None: the model's configured default, else `default_max_tokens`
    default_max_tokens: int | None = None  # None: until the context is full
    stop: list[str] = field(default_factory=list)
    json: bool = False  # the text is constrained to JSON ...
    schema: dict | None = None  # ... matching this schema
    logprobs: int | None = None  # None: none; k: the chosen token's and the k likeliest
    n: int = 1
    # the API's own names of the parts an error may be about ("messages", "schema", "tools", "prompt")
    params: dict = field(default_factory=dict)

    def param(self, part: str) -> str:
        return self.params.get(part, part)

    def forced_tool(self) -> bool:
        """Whether the answer must be a tool call (made well-formed by a grammar)."""
        return bool(self.tools) and self.tool_choice in ("required", "function")

    def uses_tools(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text

    def input(self) -> Any:
        """The arguments as a value (a call whose text is not JSON gives {})."""
        try:
            return json.loads(self.arguments)
        except ValueError:
            return {}


@dataclass
class Choice:
    index: int
    text: str
    finish_reason: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    stop_sequence: str | None = None
    logprobs: list[dict] | None = None


@dataclass
class GenResult:
    id: str
    created: int
    model: str
    choices: list[Choice]
    usage: dict  # prompt_tokens, completion_tokens, total_tokens


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def with_request_defaults(req: GenRequest, defaults: dict) -> GenRequest:
    """`req` with a model's configured sampling values (settings.py; OpenAI's names) where it sets none."""
    max_tokens = req.max_tokens
    if max_tokens is None:
        max_tokens = defaults.get("max_tokens") if defaults.get("max_tokens") is not None else req.default_max_tokens
    if not defaults:
        return dataclasses.replace(req, max_tokens=max_tokens)
    sampling = {**{k: v for k, v in defaults.items() if k in SAMPLING and v is not None}, **req.sampling}
    stop = req.stop
    if not stop and defaults.get("stop"):
        stop = [defaults["stop"]] if isinstance(defaults["stop"], str) else list(defaults["stop"])
    return dataclasses.replace(req, sampling=sampling, max_tokens=max_tokens, stop=stop)
