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
- An idle instance is unloaded after its keep-alive (`idle_timeout` unless `configure` set one for
  the model: 0 unloads as soon as the request ends, NEVER keeps it). `configure` also sets the context
  size and sampling defaults the model is loaded with; a loaded instance is unloaded so that the next
  request loads it with them.
- An engine may live in another process (worker.py) and die there: a dead engine is dropped when it
  is next wanted or reaped, and the next request loads a new one.

All state is guarded by one Condition; loading and unloading run outside it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from ..store import LayoutStore
from ..errors import MdlError
from .engine import Engine, load_engine
from .resolve import ResolvedModel, resolve_model, verify_model
from .catalog import familiar
from .settings import NEVER, ModelSettings

log = logging.getLogger("mdl.runner")


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
    loading: bool = False
    keep_alive: float | None = None  # seconds idle before it is unloaded; NEVER: kept
    idle_since: float | None = None  # wall-clock time the last request ended (None: in use or loading)
    n_ctx: int | None = None
    pid: int | None = None  # the worker process holding the engine, when it has one
    memory: int | None = None  # resident bytes of that process, else the weights' size


@dataclass
class SchedulerStats:
    loads: int = 0
    load_seconds_total: float = 0.0
    unloads: int = 0
    load_failures: int = 0
    worker_deaths: int = 0


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
        self.last_used_wall = 0.0
        self.unload_when_idle = False
        self.keep_alive: float | None = None  # set by a request: overrides the configured keep-alive
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
        self._settings: dict[tuple[str, bool | None], tuple[str, ModelSettings]] = {}  # -> (reference, settings)
        self.stats = SchedulerStats()

    # -- use ----------------------------------------------------------------------------------------

    @contextmanager
    def acquire(self, reference: str, *, embedding: bool = False, keep_alive: float | None = None) -> Iterator[Engine]:
        """The engine of `reference`, for this request alone, loaded if needed. Errors of resolution
        and loading propagate. `keep_alive` (seconds; NEVER; 0), when given, is how long the instance
        then stays loaded while idle, until a later request gives another (Ollama's per-request keep_alive)."""
        resolved = resolve_model(self.store, reference, self.links_dir)
        slot = self._enter(resolved, bool(embedding))
        try:
            assert slot.engine is not None
            yield slot.engine
        finally:
            if keep_alive is not None:
                slot.keep_alive = keep_alive
            self._leave(slot)

    def want_context(self, reference: str, n_ctx: int) -> None:
        """Load `reference` with a context of `n_ctx` tokens from its next load on (Ollama's `num_ctx`):
        its configured context becomes `n_ctx` and, when that changes it, its loaded chat instance is
        unloaded (one in use goes when its request ends)."""
        resolved = resolve_model(self.store, reference, self.links_dir)
        current = self.settings_of((resolved.digest, False))
        if current.context_size == n_ctx:
            return
        with self._cond:
            self._settings[(resolved.digest, False)] = (resolved.reference, replace(current, context_size=n_ctx))
        self._unload_key((resolved.digest, False))

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
                    if head and slot.engine is not None and not slot.in_use and not _alive(slot.engine):
                        self._drop_dead(slot)  # its worker died while idle: load a new one below
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
            log.warning("could not load %s: %s", familiar(slot.resolved.reference), e)
            raise
        with self._cond:
            slot.loading = False
            slot.engine = engine
            slot.queue.popleft()  # our ticket is still at the head: nobody else could pass it
            slot.in_use = True
            self.stats.loads += 1
            self.stats.load_seconds_total += engine.load_seconds
            self._cond.notify_all()
        log.info("loaded %s%s in %.2fs%s", familiar(slot.resolved.reference), " for embeddings" if embedding else "",
                 engine.load_seconds, f" (worker pid {engine.pid})" if getattr(engine, "pid", None) else "")
        return slot

    def _leave(self, slot: _Slot) -> None:
        close = None
        with self._cond:
            slot.in_use = False
            slot.last_used = self._clock()
            slot.last_used_wall = time.time()
            if slot.engine is not None and not _alive(slot.engine):
                self._drop_dead(slot)  # died during the request: the next one loads a new engine
                if not slot.queue:
                    self._forget_if_unused(slot)
            elif (slot.unload_when_idle or self._keep_alive(slot) == 0) and slot.idle:
                close = self._detach(slot)
            self._cond.notify_all()
        if close is not None:
            self._close_engine(close)

    def _load(self, resolved: ResolvedModel, embedding: bool) -> Engine:
        if resolved.digest not in self._verified:
            verify_model(self.store, resolved)  # spec/runtime.md §1: verify every blob before use
            self._verified.add(resolved.digest)
        settings = self.settings_of((resolved.digest, embedding))
        extra = {"defaults": settings.sampling} if settings.sampling else {}
        return self._loader(resolved, n_threads=self.n_threads, n_ctx=settings.context_size or self.n_ctx,
                            embedding=embedding, **extra)

    def _drop_dead(self, slot: _Slot) -> None:
        """Under the lock: forget the dead engine of `slot` (its process is reaped by `close`)."""
        engine, slot.engine = slot.engine, None
        self.stats.unloads += 1
        self.stats.worker_deaths += 1
        log.warning("the worker of %s is gone (%s); the next request starts a new one",
                    familiar(slot.resolved.reference), getattr(engine, "cause", lambda: "exited")())
        if engine is not None:
            try:
                engine.close()
            except Exception:  # noqa: BLE001 - it is dead already
                pass

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
            log.info("unloaded %s%s", familiar(slot.resolved.reference), " (embeddings)" if slot.key[1] else "")
        return engine

    def _forget_if_unused(self, slot: _Slot) -> None:
        if not slot.resident and not slot.queue and not slot.in_use and self._slots.get(slot.key) is slot:
            del self._slots[slot.key]

    @staticmethod
    def _close_engine(engine: Engine | None) -> None:
        if engine is not None:
            engine.close()

    # -- management ---------------------------------------------------------------------------------

    def loaded(self, *, loading: bool = False) -> list[LoadedInfo]:
        """The loaded instances (and, with `loading`, those being loaded)."""
        with self._cond:
            slots = [s for s in self._slots.values() if s.engine is not None or (loading and s.loading)]
            now, wall = self._clock(), time.time()
            out = []
            for s in slots:
                engine = s.engine
                idle = engine is not None and not s.in_use
                out.append(LoadedInfo(
                    s.resolved.digest, s.resolved.reference, s.key[1],
                    engine.load_seconds if engine is not None else 0.0, s.last_used, s.in_use, s.resolved.size,
                    len(s.queue), loading=engine is None, keep_alive=self._keep_alive(s),
                    idle_since=(s.last_used_wall or wall - (now - s.last_used)) if idle else None,
                    n_ctx=_context_of(engine), pid=getattr(engine, "pid", None)))
        for info, s in zip(out, slots):
            memory = getattr(s.engine, "memory", None)
            info.memory = (memory() if callable(memory) else None) or info.size
        return out

    def reap_idle(self) -> list[str]:
        """Unload the instances idle for longer than their keep-alive, and drop dead ones; returns
        their digests."""
        now = self._clock()
        closing: list[Engine] = []
        dead: list[str] = []
        with self._cond:
            for s in list(self._slots.values()):
                if s.engine is not None and not s.in_use and not _alive(s.engine):
                    dead.append(s.resolved.digest)
                    self._drop_dead(s)
                    self._forget_if_unused(s)
                elif s.idle and now - s.last_used > self._keep_alive(s):
                    engine = self._detach(s)
                    if engine is not None:
                        closing.append(engine)
            self._cond.notify_all()
        for engine in closing:
            self._close_engine(engine)
        return dead + [e.resolved.digest for e in closing]

    # -- settings -----------------------------------------------------------------------------------

    def settings_of(self, key: tuple[str, bool]) -> ModelSettings:
        """What `configure` set for the instance `key` (its mode's settings, else the model's)."""
        found = self._settings.get(key) or self._settings.get((key[0], None))
        return found[1] if found else ModelSettings()

    def _keep_alive(self, slot: _Slot) -> float:
        return slot.keep_alive if slot.keep_alive is not None else self.keep_alive_of(slot.key)

    def keep_alive_of(self, key: tuple[str, bool]) -> float:
        keep = self.settings_of(key).keep_alive
        if keep is None:
            keep = self.idle_timeout if self.idle_timeout is not None else NEVER
        return keep

    def configure(self, reference: str, embedding: bool | None, settings: ModelSettings) -> tuple[ResolvedModel, int]:
        """Set the settings of a model (of one mode, or both when `embedding` is None), applied when it
        is next loaded: its loaded instances are unloaded (one in use when its request ends). Returns
        the model and how many instances were unloaded."""
        resolved = resolve_model(self.store, reference, self.links_dir)
        with self._cond:
            if embedding is None:  # the model's settings replace both modes' own
                self._settings.pop((resolved.digest, False), None)
                self._settings.pop((resolved.digest, True), None)
            self._settings[(resolved.digest, embedding)] = (resolved.reference, settings)
        modes = (False, True) if embedding is None else (embedding,)
        return resolved, sum(self._unload_key((resolved.digest, m)) for m in modes)

    def configurations(self) -> list[tuple[str, str, bool | None, ModelSettings]]:
        """(digest, reference, mode or None, settings) of every configured model."""
        with self._cond:
            return [(d, ref, mode, st) for (d, mode), (ref, st) in self._settings.items()]

    def unload(self, digest: str) -> bool:
        """Unload every instance of the model `digest` (both modes); one in use goes when its request
        ends. False when none is loaded."""
        return bool(self._unload_key((digest, False)) + self._unload_key((digest, True)))

    def unload_models(self, digests) -> int:
        """Unload the instances of these models; returns how many there were."""
        return sum(self._unload_key((d, mode)) for d in set(digests) for mode in (False, True))

    def unload_all(self) -> int:
        """Unload every instance; returns how many there were."""
        with self._cond:
            keys = list(self._slots)
        return sum(self._unload_key(k) for k in keys)

    def _unload_key(self, key: tuple[str, bool]) -> int:
        closing: Engine | None = None
        with self._cond:
            s = self._slots.get(key)
            if s is None or not s.resident:
                return 0
            if s.idle:
                closing = self._detach(s)
            else:
                s.unload_when_idle = True
            self._cond.notify_all()
        self._close_engine(closing)
        return 1

    def close(self) -> None:
        """Unload everything (instances in use go when their requests end)."""
        digests = {s.key[0] for s in list(self._slots.values())}
        for d in digests:
            self.unload(d)


def _alive(engine) -> bool:
    """Whether an engine can still answer (one in a worker process may have died)."""
    alive = getattr(engine, "alive", None)
    return alive() if callable(alive) else True


def _context_of(engine) -> int | None:
    try:
        return int(engine.n_ctx) if engine is not None else None
    except Exception:  # noqa: BLE001 - closed meanwhile
        return None
