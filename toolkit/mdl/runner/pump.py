"""A blocking producer (an engine's token loop, a pull) in its own thread, feeding the event loop.

llama.cpp and the pull block; run in a thread, they hand each item to the loop, which streams it to
the client. When the client goes away the consumer cancels, and the producer stops at its next check.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any


STOP_CHECK = 0.25  # seconds between looks at the server's stopping flag while a producer is silent


class Pump:
    """Runs `produce(emit, cancelled)` in a thread; `await get()` returns ("item", x), ("end", None)
    or ("error", exc) in order. `cancel()` asks the producer to stop (it checks `cancelled`)."""

    def __init__(self, produce: Callable[[Callable[[Any], None], threading.Event], None], name: str):
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self.cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(produce,), name=name, daemon=True)

    def start(self) -> Pump:
        self._thread.start()
        return self

    def _put(self, kind: str, value: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop is closed: the server is gone
            self.cancelled.set()

    def _run(self, produce) -> None:
        try:
            produce(lambda item: self._put("item", item), self.cancelled)
        except BaseException as e:  # noqa: BLE001 - handed to the loop
            self._put("error", e)
        else:
            self._put("end", None)

    async def get(self, stopping: threading.Event | None = None) -> tuple[str, Any]:
        """The next item; ("stopping", None) if `stopping` is set while waiting for it."""
        if stopping is None or not self._queue.empty():
            return await self._queue.get()
        while True:
            try:
                return await asyncio.wait_for(self._queue.get(), STOP_CHECK)
            except asyncio.TimeoutError:
                if stopping.is_set():
                    return ("stopping", None)

    def cancel(self) -> None:
        self.cancelled.set()
