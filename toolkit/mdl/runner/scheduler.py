"""Which models are loaded, who uses them, and in what order.

- A model is loaded on its first request and kept; the key is (manifest digest, embedding mode), so an
  embeddings request on a chat model loads a second instance in embedding mode.
- At most `max_models` instances are loaded (and their weight bytes stay within `memory_budget`).
  To make room the least recently used *idle* instance (not in use, nobody waiting) is unloaded; when
  none is idle, the request waits until one is, rather than failing.
- One instance serves one request at a time, in arrival order: each request takes a ticket in the
  instance's queue and is served when its ticket is at the head (a bare Lock is not fair). Different
  instances run concurrently. A load is done once, by the request at the head of the queue; the others
  wait for it.

All state is guarded by one Condition; loading and unloading run outside it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..store import LayoutStore
from ..errors import MdlError
from .engine import Engine, load_engine
from .resolve import ResolvedModel, resolve_model, verify_model


class ModelTooLargeError(MdlError):
    kind = "model-too-large"

    def __init__(self, reference: str, size: int, budget: int):
        self.reference, self.size, self.budget = reference, size, budget
        super().__init__(f"{reference} needs {size} bytes, over the memory budget of {budget} bytes",
                         "raise the memory budget or use a smaller (more quantized) model")


@dataclass
class LoadedInfo:
    digest: str
    reference: str
    embedding: bool
    load_seconds: float
    last_used: float
    in_use: bool
    size: int
    waiting: int = 0  # requests queued for this instance (beyond the agreed interface)


@dataclass
class SchedulerStats:
    loads: int = 0
    load_seconds_total: float = 0.0
    unloads: int = 0
    load_failures: int = 0


class _Slot:
    """One model instance: loaded, loading, or about to be."""

    def __init__(self, key: tuple[str, bool], resolved: ResolvedModel):
        self.key = key
        self.resolved = resolved
        self.engine: Engine | None = None
        self.loading = False
        self.failed: BaseException | None = None
        self.queue: deque[object] = deque()  # tickets, in arrival order
        self.in_use = False
        self.last_used = 0.0
        self.unload_when_idle = False
        self.gone = False  # removed from the scheduler (unloaded or failed)

    @property
    def resident(self) -> bool:
        return self.engine is not None or self.loading

    @property
    def idle(self) -> bool:
        return self.engine is not None and not self.in_use and not self.queue


class Scheduler:
    def __init__(self, store: LayoutStore, links_dir: Path, *, max_models: int = 1,
                 memory_budget: int | None = None, idle_timeout: float | None = None,
                 n_threads: int | None = None, n_ctx: int | None = None,
                 loader: Callable[..., Engine] = load_engine,
                 clock: Callable[[], float] = time.monotonic):
        if max_models < 1:
            raise ValueError("max_models must be at least 1")
        self.store = store
        self.links_dir = Path(links_dir)
        self.max_models = max_models
        self.memory_budget = memory_budget
        self.idle_timeout = idle_timeout
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self._loader = loader
        self._clock = clock
        self._cond = threading.Condition()
        self._slots: dict[tuple[str, bool], _Slot] = {}
        self._verified: set[str] = set()
        self.stats = SchedulerStats()

    # -- use ----------------------------------------------------------------------------------------

    @contextmanager
    def acquire(self, reference: str, *, embedding: bool = False) -> Iterator[Engine]:
        """The engine of `reference`, for this request alone, loaded if needed. Errors of resolution
        and loading propagate."""
        resolved = resolve_model(self.store, reference, self.links_dir)
        slot = self._enter(resolved, bool(embedding))
        try:
            assert slot.engine is not None
            yield slot.engine
        finally:
            self._leave(slot)

    def _enter(self, resolved: ResolvedModel, embedding: bool) -> _Slot:
        key = (resolved.digest, embedding)
        ticket = object()
        with self._cond:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot(key, resolved)
            slot.queue.append(ticket)
            try:
                while True:
                    if slot.failed is not None:
                        raise slot.failed
                    head = slot.queue[0] is ticket
                    if head and slot.engine is not None and not slot.in_use:
                        slot.queue.popleft()
                        slot.in_use = True
                        return slot
                    if head and not slot.resident and self._make_room(slot):
                        slot.loading = True
                        break
                    self._cond.wait()
            except BaseException:
                if ticket in slot.queue:
                    slot.queue.remove(ticket)
                self._forget_if_unused(slot)
                self._cond.notify_all()
                raise
        # This request loads the instance; the others queued on it wait for the result.
        try:
            engine = self._load(slot.resolved, embedding)
        except BaseException as e:
            with self._cond:
                slot.loading = False
                slot.queue.remove(ticket)
                if slot.queue:
                    slot.failed = e  # everyone waiting on this load gets its error
                slot.gone = True
                if self._slots.get(key) is slot:
                    del self._slots[key]
                self.stats.load_failures += 1
                self._cond.notify_all()
            raise
        with self._cond:
            slot.loading = False
            slot.engine = engine
            slot.queue.popleft()  # our ticket is still at the head: nobody else could pass it
            slot.in_use = True
            self.stats.loads += 1
            self.stats.load_seconds_total += engine.load_seconds
            self._cond.notify_all()
            return slot

    def _leave(self, slot: _Slot) -> None:
        close = None
        with self._cond:
            slot.in_use = False
            slot.last_used = self._clock()
            if slot.unload_when_idle and slot.idle:
                close = self._detach(slot)
            self._cond.notify_all()
        if close is not None:
            self._close_engine(close)

    def _load(self, resolved: ResolvedModel, embedding: bool) -> Engine:
        if resolved.digest not in self._verified:
            verify_model(self.store, resolved)  # spec/runtime.md §1: verify every blob before use
            self._verified.add(resolved.digest)
        return self._loader(resolved, n_threads=self.n_threads, n_ctx=self.n_ctx, embedding=embedding)

    # -- room ---------------------------------------------------------------------------------------

    def _make_room(self, slot: _Slot) -> bool:
        """Under the lock: unload idle instances until `slot` fits. False: wait (something is busy)."""
        size = slot.resolved.size
        if self.memory_budget is not None and size > self.memory_budget:
            raise ModelTooLargeError(slot.resolved.reference, size, self.memory_budget)
        while True:
            resident = [s for s in self._slots.values() if s.resident and s is not slot]
            used = sum(s.resolved.size for s in resident)
            fits = len(resident) < self.max_models and (
                self.memory_budget is None or used + size <= self.memory_budget)
            if fits:
                return True
            idle = [s for s in resident if s.idle]
            if not idle:
                return False
            victim = min(idle, key=lambda s: s.last_used)
            engine = self._detach(victim)
            # Closing frees memory before the new load; it is quick next to a load, so do it here.
            self._close_engine(engine)

    def _detach(self, slot: _Slot) -> Engine | None:
        """Under the lock: take `slot` out of the scheduler; returns its engine for the caller to close."""
        engine, slot.engine = slot.engine, None
        slot.gone = True
        if self._slots.get(slot.key) is slot:
            del self._slots[slot.key]
        if engine is not None:
            self.stats.unloads += 1
        return engine

    def _forget_if_unused(self, slot: _Slot) -> None:
        if not slot.resident and not slot.queue and not slot.in_use and self._slots.get(slot.key) is slot:
            del self._slots[slot.key]

    @staticmethod
    def _close_engine(engine: Engine | None) -> None:
        if engine is not None:
            engine.close()

    # -- management ---------------------------------------------------------------------------------

    def loaded(self) -> list[LoadedInfo]:
        with self._cond:
            return [LoadedInfo(s.resolved.digest, s.resolved.reference, s.key[1], s.engine.load_seconds,
                               s.last_used, s.in_use, s.resolved.size, len(s.queue))
                    for s in self._slots.values() if s.engine is not None]

    def reap_idle(self) -> list[str]:
        """Unload the instances idle for longer than `idle_timeout`; returns their digests."""
        if self.idle_timeout is None:
            return []
        now = self._clock()
        closing: list[Engine] = []
        with self._cond:
            for s in list(self._slots.values()):
                if s.idle and now - s.last_used > self.idle_timeout:
                    engine = self._detach(s)
                    if engine is not None:
                        closing.append(engine)
            self._cond.notify_all()
        for engine in closing:
            self._close_engine(engine)
        return [e.resolved.digest for e in closing]

    def unload(self, digest: str) -> bool:
        """Unload every instance of the model `digest` (both modes); one in use goes when its request
        ends. False when none is loaded."""
        closing: list[Engine] = []
        found = False
        with self._cond:
            for s in list(self._slots.values()):
                if s.key[0] != digest or not s.resident:
                    continue
                found = True
                if s.idle:
                    engine = self._detach(s)
                    if engine is not None:
                        closing.append(engine)
                else:
                    s.unload_when_idle = True
            self._cond.notify_all()
        for engine in closing:
            self._close_engine(engine)
        return found

    def close(self) -> None:
        """Unload everything (instances in use go when their requests end)."""
        digests = {s.key[0] for s in list(self._slots.values())}
        for d in digests:
            self.unload(d)
