"""The worker process's side: one loaded llama.cpp engine answering the server over a pipe.

`main` runs in the worker (started by worker.py with multiprocessing's forkserver or spawn method,
never by forking the threaded server). It loads the engine, says `ready` (or sends the load's error),
then answers one message at a time until `close` or until the server's end of the pipe closes:

    server -> worker                         worker -> server
    ("call", method, request)                ("ok", answer) | ("error", err)
    ("stream", method, request)              ("started", None) | ("error", err), then
                                             ("chunk", chunk)..., ("end", None) | ("error", err)
    ("cancel", None)   during a stream       the stream stops after the chunk it is on: ("end", None)
    ("close", None)                          the engine is closed, the process exits

The server sends internal requests (`generate`, `generate_stream`, `count_tokens` with an
api.internal.GenRequest; the answer a GenResult, an int, or the stream's event dicts) and embedding
bodies (`embed`); `chat`, `complete` and their streams take OpenAI's bodies, as `Engine`'s do.
Errors travel as plain data (`encode_error`/`decode_error`): an `MdlError` keeps its kind, message,
hint, and the parameter and code of a bad request, so the server answers as if it had run the engine.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import traceback
from typing import Any

from ..errors import MdlError
from .engine import _llama_cpp, load_engine
from .validation import InvalidRequestError

CALLS = frozenset({"generate", "count_tokens", "chat", "complete", "embed"})
STREAMS = frozenset({"generate_stream", "chat_stream", "complete_stream"})


def encode_error(exc: BaseException) -> dict:
    if isinstance(exc, MdlError):
        return {"kind": exc.kind, "outcome_kind": exc.outcome_kind, "message": exc.message, "hint": exc.hint,
                "param": getattr(exc, "param", None), "code": getattr(exc, "code", None)}
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)  # a bug: the server's log
    return {"kind": "internal", "outcome_kind": None, "message": f"internal error in the worker: "
            f"{type(exc).__name__}: {exc}", "hint": None, "param": None, "code": None}


def decode_error(data: dict) -> MdlError:
    if data["kind"] == "invalid-request":
        return InvalidRequestError(data["message"], data.get("param"), data.get("code"))
    err = MdlError(data["message"], data.get("hint"))
    err.kind, err.outcome_kind = data["kind"], data.get("outcome_kind")
    for name in ("param", "code"):
        if data.get(name) is not None:
            setattr(err, name, data[name])
    return err


def main(conn, resolved, options: dict) -> None:
    """The worker's entry point (multiprocessing's target)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the server stops us
    _die_with_parent()
    try:
        engine = load_engine(resolved, **options)
    except BaseException as e:  # noqa: BLE001 - handed to the server
        _send(conn, ("error", encode_error(e)))
        return
    _send(conn, ("ready", {"load_seconds": engine.load_seconds, "n_ctx": engine.n_ctx, "vision": engine.vision}))
    try:
        _serve(conn, engine)
    finally:
        engine.close()


def _serve(conn, engine) -> None:
    while True:
        try:
            op, *args = conn.recv()
        except (EOFError, OSError):  # the server is gone
            return
        if op == "close":
            return
        if op == "call" and args[0] in CALLS:
            try:
                reply: tuple = ("ok", getattr(engine, args[0])(args[1]))
            except BaseException as e:  # noqa: BLE001 - handed to the server
                reply = ("error", encode_error(e))
            if not _send(conn, reply):
                return
        elif op == "stream" and args[0] in STREAMS:
            if not _stream(conn, engine, args[0], args[1]):
                return
        # anything else ("cancel" for a stream that had already ended): ignored


def _stream(conn, engine, method: str, body: Any) -> bool:
    """Relay one stream; False when the server is gone."""
    try:
        chunks = getattr(engine, method)(body)
    except BaseException as e:  # noqa: BLE001 - before the first chunk: the server still answers 400
        return _send(conn, ("error", encode_error(e)))
    if not _send(conn, ("started", None)):
        return False
    try:
        for chunk in chunks:
            if not _send(conn, ("chunk", chunk)):
                return False
            if conn.poll():  # the server sends nothing mid-stream but "cancel" (or "close")
                op, *_ = conn.recv()
                if op in ("cancel", "close"):
                    break
    except (EOFError, OSError):
        return False
    except BaseException as e:  # noqa: BLE001 - after chunks were sent: the stream's last event
        return _send(conn, ("error", encode_error(e)))
    finally:
        chunks.close()
    return _send(conn, ("end", None))


def _send(conn, message: tuple) -> bool:
    try:
        conn.send(message)
        return True
    except (OSError, ValueError):  # the server is gone
        return False


def _die_with_parent() -> None:
    """Linux: be killed when the process that started us exits (the forkserver exits with the server),
    so not even a server killed with SIGKILL leaves a worker behind."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(1)
    except (OSError, AttributeError):
        pass


def preload() -> None:
    """What the forkserver imports once (worker_preload.py), so that each worker starts in milliseconds:
    llama-cpp-python and the engine."""
    try:
        _llama_cpp()
    except MdlError:  # not installed: each worker then fails to load with the usual hint
        pass
