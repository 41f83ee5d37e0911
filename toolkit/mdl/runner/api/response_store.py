"""The Responses API's memory: each stored response, its input items and the conversation it ends,
kept for an hour (as Docker Model Runner keeps them), in this process only, at most MAX_KEPT of them
(the oldest go first). Used from the event loop only, so it needs no lock."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

KEEP_SECONDS = 3600.0
MAX_KEPT = 1000


@dataclass
class Kept:
    response: dict  # the response object as answered
    input_items: list[dict]  # its input, as items with ids
    history: list[dict]  # internal messages: the conversation up to and including its output (no instructions)
    expires: float


class ResponseStore:
    def __init__(self, keep: float = KEEP_SECONDS, capacity: int = MAX_KEPT, clock=time.monotonic):
        self._keep, self._capacity, self._clock = keep, capacity, clock
        self._items: OrderedDict[str, Kept] = OrderedDict()

    def _expire(self) -> None:
        now = self._clock()
        for rid in [r for r, k in self._items.items() if k.expires <= now]:
            del self._items[rid]
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def put(self, response: dict, input_items: list[dict], history: list[dict]) -> None:
        self._items[response["id"]] = Kept(response, input_items, history, self._clock() + self._keep)
        self._expire()

    def get(self, rid: str) -> Kept | None:
        self._expire()
        return self._items.get(rid)

    def delete(self, rid: str) -> bool:
        self._expire()
        return self._items.pop(rid, None) is not None
