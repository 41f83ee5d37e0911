"""Reading a stream one chunk ahead of its consumer, on a helper thread.

A copy does three things per chunk: read (socket or file), hash, write (socket or file). All three
release the GIL, so with the read on its own thread the consumer hashes and writes chunk k while
chunk k+1 arrives. Even a file in the page cache gains: copying it out costs ~20% of a SHA-256
pass, which the other core now does (docs/performance.md). Memory is `buffers` x `bufsize`,
whatever the blob's size.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

CHUNK = 1 << 20
BUFFERS = 3


def readinto(stream: Any, view: memoryview) -> int:
    """`stream.readinto(view)`, or `read` copied into it for streams that lack readinto."""
    method = getattr(stream, "readinto", None)
    if method is not None:
        return method(view) or 0
    data = stream.read(len(view))
    view[: len(data)] = data
    return len(data)


def read_ahead(stream: BinaryIO, limit: int | None = None, *, bufsize: int = CHUNK, buffers: int = BUFFERS,
               on_read: Callable[[memoryview], None] | None = None) -> Iterator[memoryview]:
    """Up to `limit` bytes of `stream` (None: to its end) as chunks; each chunk is valid until the next
    is asked for.
    `on_read` (e.g. a hash update) runs on the reading thread before the chunk is handed over.
    A read error is raised to the consumer; stopping early (closing the generator) stops the reader."""
    free: queue.Queue = queue.Queue()
    ready: queue.Queue = queue.Queue()
    for _ in range(buffers):
        free.put(bytearray(bufsize))
    failure: list[BaseException] = []

    def produce() -> None:
        remaining = limit
        try:
            while remaining is None or remaining > 0:
                buf = free.get()
                if buf is None:
                    return  # the consumer stopped
                view = memoryview(buf)[: bufsize if remaining is None else min(bufsize, remaining)]
                n = readinto(stream, view)
                if not n:
                    return
                if on_read is not None:
                    on_read(view[:n])
                if remaining is not None:
                    remaining -= n
                ready.put((buf, n))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
            failure.append(e)
        finally:
            ready.put(None)

    worker = threading.Thread(target=produce, name="mdl-read-ahead", daemon=True)
    worker.start()
    try:
        while (item := ready.get()) is not None:
            buf, n = item
            yield memoryview(buf)[:n]
            free.put(buf)
        if failure:
            raise failure[0]
    finally:
        free.put(None)
        worker.join()


def chunks(stream: BinaryIO, *, ahead: bool, bufsize: int = CHUNK, buffers: int = BUFFERS) -> Iterator[memoryview]:
    """The rest of `stream` as chunks, each valid until the next is asked for; `ahead` reads them with
    `read_ahead`, which pays only when a core is idle: threads that already keep every core busy are
    slowed by the extra hand-offs (docs/performance.md)."""
    if ahead:
        yield from read_ahead(stream, bufsize=bufsize, buffers=buffers)
        return
    view = memoryview(bytearray(bufsize))
    while n := readinto(stream, view):
        yield view[:n]
