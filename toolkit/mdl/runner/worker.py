"""Each loaded model in its own worker process: the server holds no engine.

`load_worker` is the scheduler's loader for `mdl serve`: it starts a process (multiprocessing's
forkserver, which has preloaded llama-cpp-python, so a worker starts in milliseconds; spawn where
there is no forkserver; never a fork of the threaded server), which loads the engine
(worker_process.py), and returns a `WorkerEngine`: the same methods as `engine.Engine`, each a message
over a pipe. The scheduler is unchanged: one request at a time per instance, in arrival order, the
memory budget and LRU, waiting instead of failing.

A worker that dies (a crash, the OOM killer, SIGKILL) fails only the request it was answering, with
`WorkerDiedError` (HTTP 500) naming the model and the cause; the scheduler then drops it, and the next
request starts a new worker. Closing a worker (unload, eviction, shutdown) ends its process, which
returns its memory to the system. `stop_all` ends any worker still running when the server stops.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import weakref
from collections.abc import Iterator
from multiprocessing.connection import wait
from typing import Any

from ..errors import MdlError
from .catalog import familiar
from .resolve import ResolvedModel
from .worker_process import decode_error, main

CLOSE_TIMEOUT = 5.0  # seconds a worker gets to close its engine and exit before it is killed
_live: weakref.WeakSet = weakref.WeakSet()
_context_lock = threading.Lock()
_context = None


class WorkerDiedError(MdlError):
    kind = "worker-died"

    def __init__(self, reference: str, cause: str, when: str):
        self.reference, self.cause = reference, cause
        super().__init__(f"the worker process of {familiar(reference)} died {when}: {cause}",
                         "the next request starts a new one; if it keeps dying, check the server's log "
                         "and its memory (a smaller model or --memory-budget)")


def mp_context():
    """multiprocessing's forkserver context (preloading llama-cpp-python), or spawn without one."""
    global _context
    with _context_lock:
        if _context is None:
            if "forkserver" in multiprocessing.get_all_start_methods():
                _context = multiprocessing.get_context("forkserver")
                _context.set_forkserver_preload(["__main__", "mdl.runner.worker_preload"])
            else:
                _context = multiprocessing.get_context("spawn")
        return _context


def load_worker(resolved: ResolvedModel, *, n_threads: int | None = None, n_ctx: int | None = None,
                embedding: bool = False, defaults: dict | None = None) -> WorkerEngine:
    """Start a worker holding `resolved` loaded as `engine.load_engine` would load it."""
    ctx = mp_context()
    start = time.monotonic()
    ours, theirs = ctx.Pipe(duplex=True)
    options = {"n_threads": n_threads, "n_ctx": n_ctx, "embedding": embedding, "defaults": defaults}
    proc = ctx.Process(target=main, args=(theirs, resolved, options), daemon=True,
                       name=f"mdl worker {familiar(resolved.reference)}")
    proc.start()
    theirs.close()  # ours is now the only end here: the worker's exit is seen as end of file
    worker = WorkerEngine(proc, ours, resolved, embedding)
    try:
        what, info = worker._receive("while loading")
    except BaseException:
        worker.close()
        raise
    if what == "error":
        worker.close()
        raise decode_error(info)
    worker.load_seconds = time.monotonic() - start
    worker.n_ctx, worker.vision = info["n_ctx"], info["vision"]
    _live.add(worker)
    return worker


class WorkerEngine:
    """An engine in a worker process; like `Engine`, used by one request at a time."""

    def __init__(self, proc, conn, resolved: ResolvedModel, embedding: bool):
        self._proc, self._conn = proc, conn
        self.resolved, self.embedding = resolved, embedding
        self.pid = proc.pid
        self.load_seconds = 0.0
        self.n_ctx: int | None = None
        self.vision = False
        self._dead: str | None = None  # the cause, once the worker is known to be gone
        self._closing = threading.Lock()
        self._closed = False

    # -- the engine's methods -----------------------------------------------------------------------

    def generate(self, request):
        return self._call("generate", request)

    def generate_stream(self, request) -> Iterator[dict]:
        return self._stream("generate_stream", request)

    def count_tokens(self, request) -> int:
        return self._call("count_tokens", request)

    def chat(self, request: dict) -> dict:
        return self._call("chat", request)

    def complete(self, request: dict) -> dict:
        return self._call("complete", request)

    def embed(self, request: dict) -> dict:
        return self._call("embed", request)

    def chat_stream(self, request: dict) -> Iterator[dict]:
        return self._stream("chat_stream", request)

    def complete_stream(self, request: dict) -> Iterator[dict]:
        return self._stream("complete_stream", request)

    def _call(self, method: str, request: dict) -> dict:
        self._send(("call", method, request))
        what, value = self._receive("while answering")
        if what == "error":
            raise decode_error(value)
        return value

    def _stream(self, method: str, request: dict) -> Iterator[dict]:
        """Request errors raise here, before the first chunk, as `Engine`'s streams do."""
        self._send(("stream", method, request))
        what, value = self._receive("while answering")
        if what == "error":
            raise decode_error(value)
        return self._relay()

    def _relay(self) -> Iterator[dict]:
        finished = False
        try:
            while True:
                what, value = self._receive("while streaming")
                if what == "chunk":
                    yield value
                elif what == "end":
                    finished = True
                    return
                else:  # "error" after chunks were sent
                    finished = True
                    raise decode_error(value)
        finally:
            if not finished and self._dead is None:  # closed early (the client left): stop the worker's loop
                self._cancel()

    def _cancel(self) -> None:
        try:
            self._conn.send(("cancel", None))
            while self._receive("while stopping a stream")[0] not in ("end", "error"):
                pass
        except WorkerDiedError:
            pass

    # -- the pipe -----------------------------------------------------------------------------------

    def _send(self, message: tuple) -> None:
        if not self.alive():
            raise WorkerDiedError(self.resolved.reference, self.cause(), "before the request reached it")
        try:
            self._conn.send(message)
        except (OSError, ValueError):
            raise self._died("while receiving a request") from None

    def _receive(self, when: str) -> tuple[str, Any]:
        """The worker's next message; WorkerDiedError when it is gone."""
        if self._dead is not None:
            raise WorkerDiedError(self.resolved.reference, self._dead, when)
        try:
            ready = wait([self._conn, self._proc.sentinel])
            if self._conn in ready or self._conn.poll():
                return self._conn.recv()
        except (EOFError, OSError):
            pass
        raise self._died(when)

    def _died(self, when: str) -> WorkerDiedError:
        self._proc.join(1.0)  # its pipe closes a moment before it can be reaped
        self._dead = self._dead or _cause(self._proc.exitcode)
        return WorkerDiedError(self.resolved.reference, self._dead, when)

    # -- life ---------------------------------------------------------------------------------------

    def alive(self) -> bool:
        """Whether the worker can take a request (called only while no request is using it)."""
        if self._dead is not None:
            return False
        if self._proc.is_alive():
            try:
                if not self._conn.poll():  # nothing to read while idle: its end is still open
                    return True
                self._conn.recv()  # a message nobody waits for: dropped
                return True
            except (EOFError, OSError):
                pass
        self._died("while idle")
        return False

    def cause(self) -> str:
        return self._dead or "it is running"

    def memory(self) -> int | None:
        """Resident bytes of the worker process (Linux), else None."""
        try:
            with open(f"/proc/{self.pid}/statm", "rb") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return None

    def close(self, *, wait: float = CLOSE_TIMEOUT) -> None:
        """End the worker: ask (and give it `wait` seconds), then SIGTERM, then SIGKILL. Its memory goes
        back to the system. Idempotent, and safe from another thread than the one using it."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
            _live.discard(self)
            proc = self._proc
            if proc.is_alive() and self._dead is None and wait > 0:
                try:
                    self._conn.send(("close", None))
                except (OSError, ValueError):
                    pass
                proc.join(wait)
            if proc.is_alive():
                proc.terminate()
                proc.join(2.0)
            if proc.is_alive():
                proc.kill()
                proc.join(2.0)
            self._dead = self._dead or "closed"
            self._conn.close()


def _cause(exitcode: int | None) -> str:
    if exitcode is None:
        return "its pipe closed"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        if -exitcode == signal.SIGKILL:
            return f"killed by {name} (out of memory, or killed by someone)"
        return f"killed by {name}" + (" (a crash in llama.cpp)" if -exitcode in (signal.SIGSEGV, signal.SIGABRT,
                                                                                  signal.SIGBUS) else "")
    return f"exited with status {exitcode}"


def stop_all() -> None:
    """End every worker still running (the server is stopping; a request may still be using one, so
    it is not asked over the pipe: SIGTERM)."""
    for worker in list(_live):
        worker.close(wait=0)
