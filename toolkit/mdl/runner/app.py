"""The HTTP face of the runner: Docker Model Runner's paths, served from the local store.

Routes (the same paths Docker Model Runner answers on, port 12434):

- the OpenAI API under `/engines/v1`, `/engines/llama.cpp/v1` and `/v1` (openai_api.py);
- Anthropic's Messages API at `/v1/messages`, `/anthropic/v1/messages`, `/engines[/llama.cpp]/v1/messages`
  (api/anthropic.py);
- Ollama's API under `/api/` (api/ollama.py);
- OpenAI's Responses API under `/responses`, `/v1/responses`, `/engines[/llama.cpp]/v1/responses`
  (api/responses.py; responses kept in memory for an hour);
- Docker's model API under `/models` (models_api.py);
- the operations API: `/engines/status`, `ps`, `df`, `unload`, `_configure`, `requests`, `/version`,
  `/logs` (ops_api.py);
- `GET /health` (alive), `GET /health/ready` (serving), `GET /metrics` (Prometheus text), here;
- `GET /`: a dashboard for a browser (dashboard.py), "running" for other clients.

Every request passes security.py's `Guard` first (Host, Origin, API key, JSON bodies).

Errors have the shape of the API a route speaks (OpenAI's unless marked otherwise): endpoints raise,
the handlers of api_errors.py answer. Every API's generation goes through one internal request
(api/internal.py, api/gateway.py, generation.py).
Endpoints are module-level functions; what they share (store, scheduler, metrics, limits) is on
`request.app.state`, set once by `create_app`.

This package's HTTP modules import Starlette; import them only when serving (the `mdl[serve]` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
import traceback
from collections.abc import Mapping

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import __version__
from . import dashboard, models_api, openai_api, ops_api
from .api import anthropic, ollama, responses
from .api.response_store import ResponseStore
from .api_errors import EXCEPTION_HANDLERS, AnswerUnhandled
from .feeds import LogBook
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .middleware import CountRequests
from .request_body import MAX_BODY
from .request_log import RequestLog
from .security import Guard, Policy

log = logging.getLogger("mdl.runner")


def create_app(store, scheduler, *, env: Mapping[str, str], max_body: int = MAX_BODY,
               reap_interval: float | None = None, pull_concurrency: int = 4,
               policy: Policy | None = None, request_history: int = 500, log_to=None) -> Starlette:
    """The runner's ASGI app over `store` (a LayoutStore) and `scheduler` (mdl.runner.scheduler.Scheduler).

    `env` supplies registry credentials and proxies for `POST /models/create`; `reap_interval`, when
    given, is how often a background task unloads idle models (`scheduler.reap_idle()`); `policy` is
    what security.py enforces (by default: loopback Host names, same-origin, JSON bodies, no key);
    `request_history` how many requests `/engines/requests` keeps; the runner's log lines (`/logs`)
    are also written to `log_to` (a text stream) when given."""
    app = Starlette(routes=_routes(), lifespan=_lifespan, exception_handlers=EXCEPTION_HANDLERS)
    app.state.store = store
    app.state.scheduler = scheduler
    app.state.env = dict(env)
    app.state.max_body = max_body
    app.state.pull_concurrency = pull_concurrency
    app.state.reap_interval = reap_interval
    app.state.metrics = Metrics()
    app.state.ready = False  # true from startup until shutdown begins
    app.state.stopping = threading.Event()  # set when asked to stop: streams end instead of holding it up
    app.state.policy = policy or Policy()
    app.state.requests = RequestLog(request_history)
    app.state.responses = ResponseStore()
    app.state.logbook = LogBook(echo=log_to)
    app.state.started = time.monotonic()
    app.state.backend_version = ops_api.backend_version()
    app.add_middleware(AnswerUnhandled)
    app.add_middleware(Guard, policy=app.state.policy)  # before any route sees the request
    app.add_middleware(CountRequests, metrics=app.state.metrics)  # added last: outermost, sees every answer
    return app


def _routes() -> list[Route]:
    # Order matters where paths overlap: `/models/create` is matched before `/models/{name:path}`.
    routes = [Route("/", dashboard.root, methods=["GET"]), Route("/static/{name}", dashboard.asset, methods=["GET"])]
    for prefix in openai_api.PREFIXES:
        routes += [
            Route(f"{prefix}/models", openai_api.list_models, methods=["GET"]),
            Route(prefix + "/models/{model:path}", openai_api.get_model, methods=["GET"]),
            Route(f"{prefix}/chat/completions", openai_api.chat_completions, methods=["POST"]),
            Route(f"{prefix}/completions", openai_api.completions, methods=["POST"]),
            Route(f"{prefix}/embeddings", openai_api.embeddings, methods=["POST"]),
        ]
    for prefix in anthropic.PREFIXES:
        routes += [
            Route(f"{prefix}/v1/messages", anthropic.messages, methods=["POST"]),
            Route(f"{prefix}/v1/messages/count_tokens", anthropic.count, methods=["POST"]),
        ]
    for prefix in responses.PREFIXES:
        routes += [
            Route(f"{prefix}/responses", responses.create, methods=["POST"]),
            Route(prefix + "/responses/{response_id}", responses.retrieve, methods=["GET"]),
            Route(prefix + "/responses/{response_id}", responses.delete, methods=["DELETE"]),
            Route(prefix + "/responses/{response_id}/input_items", responses.input_items, methods=["GET"]),
        ]
    routes += [
        Route("/api/version", ollama.version, methods=["GET"]),
        Route("/api/tags", ollama.tags, methods=["GET"]),
        Route("/api/ps", ollama.ps, methods=["GET"]),
        Route("/api/show", ollama.show, methods=["POST"]),
        Route("/api/chat", ollama.chat, methods=["POST"]),
        Route("/api/generate", ollama.generate_, methods=["POST"]),
        Route("/api/embed", ollama.embed_, methods=["POST"]),
        Route("/api/pull", ollama.pull, methods=["POST"]),
        Route("/api/delete", ollama.delete, methods=["DELETE"]),
    ]
    routes += [
        Route("/models", models_api.list_models, methods=["GET"]),
        Route("/models/create", models_api.create_model, methods=["POST"]),
        Route("/models/{name:path}/export", models_api.export_model, methods=["GET"]),
        Route("/models/{name:path}", models_api.get_model, methods=["GET"]),
        Route("/models/{name:path}", models_api.delete_model, methods=["DELETE"]),
        Route("/engines/status", ops_api.status, methods=["GET"]),
        Route("/engines/ps", ops_api.ps, methods=["GET"]),
        Route("/engines/df", ops_api.df, methods=["GET"]),
        Route("/engines/unload", ops_api.unload, methods=["POST"]),
        Route("/engines/_configure", ops_api.configure, methods=["GET", "POST"]),
        Route("/engines/llama.cpp/_configure", ops_api.configure, methods=["GET", "POST"]),
        Route("/engines/requests", ops_api.requests, methods=["GET"]),
        Route("/version", ops_api.version, methods=["GET"]),
        Route("/logs", ops_api.logs, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return routes


# ---------------------------------------------------------------------------------------------
# health and metrics


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    if not request.app.state.ready:
        return JSONResponse({"status": "starting or stopping"}, status_code=503)
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    state = request.app.state
    return Response(state.metrics.render(state.scheduler), media_type=METRICS_CONTENT_TYPE)


# ---------------------------------------------------------------------------------------------
# lifespan


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette):
    """Ready while serving; unloads idle models every `reap_interval`; closes the scheduler at the end."""
    state = app.state
    log.addHandler(state.logbook)
    log.setLevel(logging.INFO)
    log.propagate = False  # the logbook writes the lines (and echoes them); not Python's last resort too
    reaper = asyncio.create_task(_reap(state.scheduler, state.reap_interval)) if state.reap_interval else None
    state.ready = True
    log.info("mdl %s serving (llama-cpp-python %s)", __version__, state.backend_version)
    try:
        yield
    finally:
        state.ready = False
        if reaper is not None:
            reaper.cancel()
            with contextlib.suppress(BaseException):
                await reaper
        await run_in_threadpool(state.scheduler.close)
        log.info("stopped")
        log.removeHandler(state.logbook)


async def _reap(scheduler, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await run_in_threadpool(scheduler.reap_idle)
        except Exception:  # noqa: BLE001 - keep reaping
            traceback.print_exc(file=sys.stderr)
