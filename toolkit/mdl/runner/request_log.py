"""The recent requests of every API (`GET /engines/requests`, `mdl requests`, the dashboard's table).

One record per request, kept in a bounded ring in memory only: when, which API and model, excerpts
of the prompt and of the answer, token counts, latency (and time to the first token of a stream), the
HTTP status, and the error message of a failed request.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from .catalog import familiar
from .feeds import Feed, rfc3339

EXCERPT = 200  # characters of a prompt or an answer kept


def excerpt(text: Any) -> str:
    if not isinstance(text, str):
        return ""
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT else text[:EXCERPT - 1] + "…"


def prompt_of(api: str, body: dict) -> str:
    """The part of a request worth showing: the last message of a chat, the prompt, the first input."""
    if api == "chat":
        messages = body.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
            content = messages[-1].get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict)
                                   and isinstance(p.get("text"), str))
            return excerpt(content)
        return ""
    value = body.get("prompt" if api == "completion" else "input")
    if isinstance(value, list) and value:
        value = value[0]
    return excerpt(value)


def answer_of(doc: Any) -> str:
    if not isinstance(doc, dict):
        return ""
    for choice in doc.get("choices") or ():
        if isinstance(choice, dict):
            message = choice.get("message")
            if isinstance(message, dict):
                return excerpt(message.get("content"))
            return excerpt(choice.get("text"))
    return ""


class RequestLog:
    def __init__(self, capacity: int = 500):
        self.feed = Feed(capacity)
        self._ids = itertools.count(1)

    def start(self, api: str, stream: bool = False) -> Record:
        return Record(self, next(self._ids), api, stream)

    def recent(self, model: str | None = None) -> list[dict]:
        return [r for r in self.feed.recent() if matches(r, model)]


def matches(record: dict, model: str | None) -> bool:
    """Whether `record` is about `model`, named as a request names it (`ai/tiny` is `ai/tiny:latest`)."""
    if not model:
        return True
    return model in (record.get("model"), record.get("requested")) or familiar(model) == record.get("model")


class Record:
    """One request while it runs; `finish` publishes it, once."""

    def __init__(self, log: RequestLog, rid: int, api: str, stream: bool):
        self._log, self.id, self.api, self.stream = log, rid, api, stream
        self.time = time.time()
        self._start = time.perf_counter()
        self.first_token_ms: float | None = None
        self.requested = self.model = ""
        self.prompt = ""
        self._parts: list[str] = []
        self._size = 0
        self._done = False

    def request(self, model: str, body: dict, prompt: Any = None) -> None:
        """The model asked for, and the prompt excerpt: `prompt` when given, else read from an
        OpenAI-shaped `body`."""
        self.requested = self.model = model
        self.prompt = excerpt(prompt) if prompt is not None else prompt_of(self.api, body)

    def first_token(self) -> None:
        if self.first_token_ms is None:
            self.first_token_ms = (time.perf_counter() - self._start) * 1000

    def text(self, piece: str) -> None:
        """A streamed piece of the answer (only the first EXCERPT characters are kept)."""
        if piece and self._size < EXCERPT:
            self._parts.append(piece)
            self._size += len(piece)

    def finish(self, status: int, *, model: str | None = None, answer: str | None = None, usage: Any = None,
               error: str | None = None) -> None:
        if self._done:
            return
        self._done = True
        usage = usage if isinstance(usage, dict) else {}
        self._log.feed.publish({
            "id": self.id, "time": rfc3339(self.time), "api": self.api, "model": model or self.model,
            "requested": self.requested, "stream": self.stream, "status": status,
            "prompt": self.prompt, "response": answer if answer is not None else excerpt("".join(self._parts)),
            "prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens"),
            "latency_ms": round((time.perf_counter() - self._start) * 1000, 1),
            "first_token_ms": round(self.first_token_ms, 1) if self.first_token_ms is not None else None,
            "error": error,
        })
