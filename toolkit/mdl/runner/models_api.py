"""Docker's model API: `GET /models`, `GET /models/{name}`, `DELETE /models/{name}`, and
`POST /models/create` with `{"from": "<reference>"}`, which pulls and streams newline-delimited JSON
progress, ending with a `success` line (or an `error` line when the pull fails after it started).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..ops.pull import PullResult, pull
from ..reference import Reference, parse_reference
from ..registry import open_repository
from .api_errors import error_param, to_api_error
from .catalog import docker_model, familiar, summaries, summary_of
from .pump import Pump
from .request_body import read_json, require

NDJSON_TYPE = "application/x-ndjson"


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

    def produce(emit, cancelled: threading.Event) -> None:
        result = pull_model(state.store, ref, env=state.env, concurrency=state.pull_concurrency,
                            progress=_PullProgress(emit))
        emit({"type": "success", "message": f"Model pulled successfully: {result.reference}",
              "reference": result.reference, "digest": result.digest, "size": result.size,
              "fetched": result.fetched})

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


def pull_model(store, ref: Reference, *, env: dict, concurrency: int, progress) -> PullResult:
    """Pull `ref` into `store`: the runner's one call into the pull library."""
    repo = open_repository(ref, env=env, concurrency=concurrency)
    return pull(store, repo, ref, concurrency=concurrency, progress=progress)


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
