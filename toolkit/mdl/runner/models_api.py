"""Docker's model API: `GET /models`, `GET /models/{name}`, `DELETE /models/{name}`,
`POST /models/create` with `{"from": "<reference>"}`, which pulls and streams newline-delimited JSON
progress, ending with a `success` line (or an `error` line when the pull fails after it started), and
`GET /models/{name}/export`, which streams the model as an OCI layout tar (`mdl save`'s bytes, what
`mdl load` reads), a bounded number of 1 MiB chunks ahead of the client.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..errors import ModelNotFoundError
from ..model_check import refuse_partial
from ..ops.pull import PullResult, pull
from ..ops.save import save_model
from ..reference import Reference, parse_reference
from ..registry.open import open_repository
from .api_errors import error_param, to_api_error
from .catalog import docker_model, familiar, summaries, summary_of
from .pump import Pump
from .request_body import read_json, require
from .security import check_pull_allowed

NDJSON_TYPE = "application/x-ndjson"
TAR_TYPE = "application/x-tar"
EXPORT_CHUNK = 1 << 20
EXPORT_AHEAD = 8  # chunks produced ahead of the client: the memory an export holds


async def list_models(request: Request) -> Response:
    found = await run_in_threadpool(summaries, request.app.state.store)
    return JSONResponse([docker_model(s) for s in found])


async def get_model(request: Request) -> Response:
    s = await run_in_threadpool(summary_of, request.app.state.store, request.path_params["name"])
    return JSONResponse(docker_model(s))


async def delete_model(request: Request) -> Response:
    store, scheduler = request.app.state.store, request.app.state.scheduler
    name = request.path_params["name"]
    force = request.query_params.get("force", "").lower() in ("1", "true", "yes")

    def remove() -> dict:
        result = store.remove(name, force=force)
        for digest in result.removed_models:
            with contextlib.suppress(Exception):
                scheduler.unload(digest)
        return {"untagged": [familiar(t) for t in result.untagged], "deleted": result.removed_models,
                "freed_bytes": result.freed_bytes}

    return JSONResponse(await run_in_threadpool(remove))


@error_param("from")
async def create_model(request: Request) -> Response:
    state = request.app.state
    body = await read_json(request, state.max_body)
    ref = parse_reference(require(body, "from", (str,), "a model reference"))
    check_pull_allowed(state.policy, ref.registry)  # mdl serve --pull-from

    def produce(emit, cancelled: threading.Event) -> None:
        verify_key = state.policy.pull_verify_key if state.policy is not None else None
        result = pull_model(state.store, ref, env=state.env, concurrency=state.pull_concurrency,
                            progress=_PullProgress(emit), verify_key=verify_key)
        signed = {"signature": {"form": result.signature.form, "key": result.signature.key}} \
            if result.signature is not None else {}
        emit({"type": "success", "message": f"Model pulled successfully: {result.reference}",
              "reference": result.reference, "digest": result.digest, "size": result.size,
              "fetched": result.fetched, **signed})

    pump = Pump(produce, "mdl-pull").start()
    first = await pump.get()
    if first[0] == "error":  # failed before any byte moved: a plain error response
        raise first[1]

    async def lines():
        item = first
        while True:
            what, value = item
            if what == "item":
                yield json.dumps(value, separators=(",", ":")).encode() + b"\n"
            elif what == "end":
                return
            else:
                err = to_api_error(value, param="from")
                doc = {"type": "error", "message": err.message, "error": err.body()["error"]}
                yield json.dumps(doc, separators=(",", ":")).encode() + b"\n"
                return
            item = await pump.get()

    return StreamingResponse(lines(), media_type=NDJSON_TYPE)


def pull_model(store, ref: Reference, *, env: dict, concurrency: int, progress,
               verify_key: str | None = None) -> PullResult:
    """Pull `ref` into `store`: the runner's one call into the pull library (`mdl serve --pull-verify-key`:
    nothing reaches the store unless a signature by that key names the manifest, as `mdl pull --verify-key`)."""
    repo = open_repository(ref, env=env, concurrency=concurrency)
    return pull(store, repo, ref, concurrency=concurrency, progress=progress, verify_key=verify_key)


class _PullProgress:
    """A Progress (mdl.content.transfer) that emits Docker-style progress lines, at most ~4 per
    second per blob plus one at each start and end."""

    def __init__(self, emit: Callable[[dict], None], interval: float = 0.25):
        self._emit, self._interval = emit, interval
        self._lock = threading.Lock()
        self._state: dict[str, list] = {}  # digest -> [what, bytes, last emit time]

    def _line(self, event: str, desc, what: str, nbytes: int, **extra) -> None:
        self._emit({"type": "progress", "event": event, "message": f"{what} {desc.digest[:19]}: {event}",
                    "what": what, "digest": desc.digest, "total": desc.size, "pulled": nbytes, **extra})

    def start(self, desc, what: str) -> None:
        with self._lock:
            self._state[desc.digest] = [what, 0, time.monotonic()]
        self._line("start", desc, what, 0)

    def advance(self, desc, nbytes: int) -> None:
        with self._lock:
            st = self._state.setdefault(desc.digest, ["blob", 0, 0.0])
            st[1] += nbytes
            now = time.monotonic()
            if now - st[2] < self._interval:
                return
            st[2] = now
            what, done = st[0], st[1]
        self._line("progress", desc, what, done)

    def done(self, desc, outcome: str) -> None:
        with self._lock:
            what, done, _ = self._state.pop(desc.digest, ["blob", 0, 0.0])
        self._line("done", desc, what, done if done else desc.size, outcome=outcome)


async def export_model(request: Request) -> Response:
    """The model as an OCI layout tar, streamed while it is written (deterministic bytes, as `mdl save`)."""
    store = request.app.state.store
    name = request.path_params["name"]

    def check() -> tuple[str, str | None]:
        try:
            digest = store.resolve(name)
        except ModelNotFoundError:
            try:  # a model whose name ends in /export (`GET /models/org/export`) is asked for itself
                return store.resolve(f"{name}/export"), f"{name}/export"
            except ModelNotFoundError:
                raise ModelNotFoundError(name) from None
        refuse_partial(store, name, digest, store.manifest(digest), "to export it", roles=None)
        return digest, None

    digest, itself = await run_in_threadpool(check)
    if itself is not None:
        return JSONResponse(docker_model(await run_in_threadpool(summary_of, store, itself)))
    slots = threading.Semaphore(EXPORT_AHEAD)

    def produce(emit, cancelled: threading.Event) -> None:
        out = _ChunkWriter(emit, cancelled, slots)
        save_model(store, name, out)
        out.flush()

    pump = Pump(produce, "mdl-export").start()

    async def body():
        try:
            while True:
                what, value = await pump.get()
                if what == "end":
                    return
                if what == "error":
                    raise value  # mid-stream: the connection breaks, so the client never takes a cut tar as whole
                slots.release()
                yield value
        finally:
            pump.cancel()

    filename = digest.split(":", 1)[1][:12] + ".tar"
    return StreamingResponse(body(), media_type=TAR_TYPE,
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


class _ExportCancelled(Exception):
    """The client went away: the export thread stops writing."""


class _ChunkWriter(io.RawIOBase):
    """A writable stream that hands EXPORT_CHUNK-byte chunks to `emit`, waiting for a free slot first, so
    at most EXPORT_AHEAD chunks wait for a slow client."""

    def __init__(self, emit: Callable[[bytes], None], cancelled: threading.Event, slots: threading.Semaphore):
        super().__init__()
        self._emit, self._cancelled, self._slots = emit, cancelled, slots
        self._buf = bytearray()
        self._written = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._written

    def write(self, b) -> int:
        if self._cancelled.is_set():
            raise _ExportCancelled()
        n = len(b)
        self._buf += b
        self._written += n
        if len(self._buf) >= EXPORT_CHUNK:
            self._send()
        return n

    def _send(self) -> None:
        while not self._slots.acquire(timeout=0.5):
            if self._cancelled.is_set():
                raise _ExportCancelled()
        self._emit(bytes(self._buf))
        self._buf.clear()

    def flush(self) -> None:
        if self._buf and not self.closed:
            self._send()

    def close(self) -> None:
        self._buf.clear()  # what is left unsent when closed is dropped (IOBase.close flushes)
        super().close()
