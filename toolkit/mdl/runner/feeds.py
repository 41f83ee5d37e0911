"""Bounded in-memory feeds the operations API serves: the recent requests (`GET /engines/requests`)
and the server's log (`GET /logs`). Each keeps its last `capacity` items; `follow()` yields new ones as
they come (`?follow`). Publishing is thread-safe (engine and load threads log too) and never blocks:
a follower too slow to keep up loses items rather than holding the server back.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

FOLLOW_QUEUE = 1000  # items a follower may fall behind before it loses some


class Feed:
    def __init__(self, capacity: int):
        self._items: deque = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._followers: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = []

    def publish(self, item: Any) -> None:
        with self._lock:
            self._items.append(item)
            followers = list(self._followers)
        for loop, queue in followers:
            try:
                loop.call_soon_threadsafe(_offer, queue, item)
            except RuntimeError:  # that loop is closed
                pass

    def recent(self) -> list:
        with self._lock:
            return list(self._items)

    async def follow(self) -> AsyncIterator[Any]:
        """New items, as published, until the consumer stops iterating."""
        queue: asyncio.Queue = asyncio.Queue(FOLLOW_QUEUE)
        entry = (asyncio.get_running_loop(), queue)
        with self._lock:
            self._followers.append(entry)
        try:
            while True:
                yield await queue.get()
        finally:
            with self._lock:
                self._followers.remove(entry)


def _offer(queue: asyncio.Queue, item: Any) -> None:
    if not queue.full():
        queue.put_nowait(item)


def rfc3339(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LogBook(logging.Handler):
    """A logging handler keeping the runner's log lines (`mdl logs`) and writing them to stderr."""

    def __init__(self, capacity: int = 2000, echo=None):
        super().__init__(logging.INFO)
        self.feed = Feed(capacity)
        self._echo = echo
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = f"{rfc3339(record.created)} {record.levelname.lower():7} {self.format(record)}"
        except Exception:  # noqa: BLE001 - logging must never fail a request
            return
        self.feed.publish(line)
        if self._echo is not None:
            try:
                self._echo.write(line + "\n")
                self._echo.flush()
            except (OSError, ValueError):
                pass
