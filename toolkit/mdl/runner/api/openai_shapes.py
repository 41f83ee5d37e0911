"""OpenAI's chat completion and completion shapes: a body read into the internal request, a result or
a stream written back as OpenAI writes them (`chat.completion`, `chat.completion.chunk`,
`text_completion`). Used by the server's OpenAI routes (openai_api.py) and by `Engine.chat` & co.
for callers in this process. Checks are validation.py's, with OpenAI's parameter names.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..validation import (InvalidRequestError, chat_messages, choices_and_logprobs, completion_args, model_name,
                          prompt_text, sampling_args, tool_choice_checked, tools_checked, wants_usage)
from .internal import CHAT, COMPLETION, SAMPLING, Choice, GenRequest, GenResult

__all__ = ["chat_request", "completion_request", "chat_doc", "completion_doc", "chunks", "ChunkWriter",
           "wants_usage"]

OPENAI_PARAMS = {"messages": "messages", "schema": "response_format", "tools": "tools", "prompt": "prompt"}
COMPLETION_DEFAULT_MAX_TOKENS = 16  # OpenAI's (and llama-cpp-python's) default for completions


# ---------------------------------------------------------------------------------------------
# requests


def chat_request(body: dict, vision: bool = False, default_model: str = "") -> GenRequest:
    messages = chat_messages(body, vision)
    args = sampling_args(body)
    n, top = choices_and_logprobs(body, chat=True)
    tools, choice, name = _tools(body)
    parallel = body.get("parallel_tool_calls", True)
    if parallel is None:
        parallel = True
    if not isinstance(parallel, bool):
        raise InvalidRequestError("'parallel_tool_calls' must be true or false", param="parallel_tool_calls")
    rf = args.get("response_format")
    return GenRequest(CHAT, model_name(body, default_model), messages=messages, tools=tools, tool_choice=choice,
                      tool_name=name, parallel_tool_calls=parallel, sampling=_sampling(args),
                      max_tokens=args.get("max_tokens"), stop=args.get("stop", []), json=rf is not None,
                      schema=rf.get("schema") if rf else None, logprobs=top, n=n, params=OPENAI_PARAMS)


def completion_request(body: dict, default_model: str = "") -> GenRequest:
    prompt, args = prompt_text(body), completion_args(body)
    n, top = choices_and_logprobs(body, chat=False)
    return GenRequest(COMPLETION, model_name(body, default_model), prompt=prompt, sampling=_sampling(args),
                      max_tokens=args.get("max_tokens"), default_max_tokens=COMPLETION_DEFAULT_MAX_TOKENS,
                      stop=args.get("stop", []), logprobs=top, n=n, params=OPENAI_PARAMS)


def _sampling(args: dict) -> dict:
    return {k: args[k] for k in SAMPLING if k in args}


def _tools(body: dict) -> tuple[list[dict], str, str | None]:
    raw = body.get("tools")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise InvalidRequestError("'tools' must be a list of {\"type\": \"function\", \"function\": {...}}",
                                  param="tools")
    fns = []
    for i, t in enumerate(raw):
        if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(t.get("function"), dict):
            raise InvalidRequestError(f"tools[{i}] must be {{\"type\": \"function\", \"function\": {{...}}}}",
                                      param=f"tools[{i}]")
        fns.append(t["function"])
    tools = tools_checked(fns)
    tc = body.get("tool_choice")
    name = None
    if tc is None:
        choice = "auto"
    elif tc in ("none", "auto", "required"):
        choice = tc
    elif isinstance(tc, dict) and tc.get("type") == "function" and isinstance(tc.get("function"), dict) \
            and isinstance(tc["function"].get("name"), str):
        choice, name = "function", tc["function"]["name"]
    else:
        raise InvalidRequestError("'tool_choice' must be \"none\", \"auto\", \"required\" or "
                                  "{\"type\": \"function\", \"function\": {\"name\": ...}}", param="tool_choice")
    tool_choice_checked(choice, name, tools)
    return tools, choice, name


# ---------------------------------------------------------------------------------------------
# answers


def chat_doc(result: GenResult) -> dict:
    return {"id": result.id, "object": "chat.completion", "created": result.created, "model": result.model,
            "choices": [{"index": c.index, "message": _message(c), "logprobs": _chat_logprobs(c.logprobs),
                         "finish_reason": c.finish_reason} for c in result.choices],
            "usage": result.usage}


def _message(c: Choice) -> dict:
    if not c.tool_calls:
        return {"role": "assistant", "content": c.text}
    return {"role": "assistant", "content": c.text or None,
            "tool_calls": [{"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}
                           for t in c.tool_calls]}


def _chat_logprobs(entries: list[dict] | None) -> dict | None:
    return {"content": entries, "refusal": None} if entries is not None else None


def completion_doc(result: GenResult) -> dict:
    return {"id": result.id, "object": "text_completion", "created": result.created, "model": result.model,
            "choices": [{"text": c.text, "index": c.index, "logprobs": _completion_logprobs(c.logprobs),
                         "finish_reason": c.finish_reason} for c in result.choices],
            "usage": result.usage}


def _completion_logprobs(entries: list[dict] | None, offset: int = 0) -> dict | None:
    """The legacy completions form: parallel lists of tokens, their log probabilities, the alternatives
    (a token -> log probability map each) and each token's offset in the text."""
    if entries is None:
        return None
    offsets = []
    for e in entries:
        offsets.append(offset)
        offset += len(e["token"])
    return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]} for e in entries],
            "text_offset": offsets}


class ChunkWriter:
    """Writes a stream's internal events as OpenAI's chunks (llama-cpp-python's sequence for a chat: a
    first delta with the role, one per piece, a last one with the finish reason)."""

    def __init__(self, req: GenRequest, include_usage: bool):
        self.chat = req.kind == CHAT
        self.include_usage = include_usage
        self.head: dict = {}
        self._opened: set[int] = set()

    def _chunk(self, choices: list[dict], **extra) -> dict:
        return {**self.head, "choices": choices, **extra}

    def write(self, ev: dict) -> list[dict]:
        kind = ev["type"]
        if kind == "start":
            self.head = {"id": ev["id"], "object": "chat.completion.chunk" if self.chat else "text_completion",
                         "created": ev["created"], "model": ev["model"]}
            return []
        if kind == "usage":
            return [self._chunk([], usage=ev["usage"])] if self.include_usage else []
        i, out = ev["index"], []
        if self.chat and i not in self._opened:
            self._opened.add(i)
            out.append(self._chunk([{"index": i, "delta": {"role": "assistant"}, "logprobs": None,
                                     "finish_reason": None}]))
        if kind == "text":
            if self.chat:
                choice = {"index": i, "delta": {"content": ev["text"]}, "logprobs": _chat_logprobs(ev["logprobs"]),
                          "finish_reason": None}
            else:
                choice = {"text": ev["text"], "index": i, "logprobs": _completion_logprobs(ev["logprobs"]),
                          "finish_reason": None}
        elif kind == "tool_call":
            choice = {"index": i, "delta": {"tool_calls": [{"index": ev["call"], "id": ev["id"], "type": "function",
                                                            "function": {"name": ev["name"], "arguments": ""}}]},
                      "logprobs": None, "finish_reason": None}
        elif kind == "arguments":
            choice = {"index": i, "delta": {"tool_calls": [{"index": ev["call"], "function": {"arguments": ev["delta"]}}]},
                      "logprobs": None, "finish_reason": None}
        else:  # finish
            choice = ({"index": i, "delta": {}, "logprobs": None, "finish_reason": ev["finish_reason"]} if self.chat
                      else {"text": "", "index": i, "logprobs": None, "finish_reason": ev["finish_reason"]})
        out.append(self._chunk([choice]))
        return out


def chunks(events: Iterable[dict], req: GenRequest, include_usage: bool) -> Iterator[dict]:
    """OpenAI's chunks of a stream of internal events."""
    writer = ChunkWriter(req, include_usage)
    try:
        for ev in events:
            yield from writer.write(ev)
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
