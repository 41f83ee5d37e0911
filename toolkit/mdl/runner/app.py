"""The HTTP face of the runner: Docker Model Runner's paths, served from the local store.

Routes (the same paths Docker Model Runner answers on, port 12434):

- the OpenAI API under `/engines/v1`, `/engines/llama.cpp/v1` and `/v1` (openai_api.py);
- Docker's model API under `/models` (models_api.py);
- `GET /health` (alive), `GET /health/ready` (serving), `GET /metrics` (Prometheus text), here.

Errors have OpenAI's shape on every route: endpoints raise, the handlers of api_errors.py answer.
Endpoints are module-level functions; what they share (store, scheduler, metrics, limits) is on
`request.app.state`, set once by `create_app`.

This package's HTTP modules import Starlette; import them only when serving (the `mdl[serve]` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import traceback
from collections.abc import Mapping

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from . import models_api, openai_api
from .api_errors import EXCEPTION_HANDLERS, AnswerUnhandled
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .middleware import CountRequests
from .request_body import MAX_BODY


def create_app(store, scheduler, *, env: Mapping[str, str], max_body: int = MAX_BODY,
               reap_interval: float | None = None, pull_concurrency: int = 4) -> Starlette:
    """The runner's ASGI app over `store` (a LayoutStore) and `scheduler` (mdl.runner.scheduler.Scheduler).

    `env` supplies registry credentials and proxies for `POST /models/create`; `reap_interval`, when
    given, is how often a background task unloads idle models (`scheduler.reap_idle()`)."""
    app = Starlette(routes=_routes(), lifespan=_lifespan, exception_handlers=EXCEPTION_HANDLERS)
    app.state.store = store
    app.state.scheduler = scheduler
    app.state.env = dict(env)
    app.state.max_body = max_body
    app.state.pull_concurrency = pull_concurrency
    app.state.reap_interval = reap_interval
    app.state.metrics = Metrics()
    app.state.ready = False  # true from startup until shutdown begins
    app.add_middleware(AnswerUnhandled)
    app.add_middleware(CountRequests, metrics=app.state.metrics)  # added last: outermost, sees every answer
    return app


def _routes() -> list[Route]:
    # Order matters where paths overlap: `/models/create` is matched before `/models/{name:path}`.
    routes = [Route("/", root, methods=["GET"])]
    for prefix in openai_api.PREFIXES:
        routes += [
            Route(f"{prefix}/models", openai_api.list_models, methods=["GET"]),
            Route(prefix + "/models/{model:path}", openai_api.get_model, methods=["GET"]),
            Route(f"{prefix}/chat/completions", openai_api.chat_completions, methods=["POST"]),
            Route(f"{prefix}/completions", openai_api.completions, methods=["POST"]),
            Route(f"{prefix}/embeddings", openai_api.embeddings, methods=["POST"]),
        ]
    routes += [
        Route("/models", models_api.list_models, methods=["GET"]),
        Route("/models/create", models_api.create_model, methods=["POST"]),
        Route("/models/{name:path}", models_api.get_model, methods=["GET"]),
        Route("/models/{name:path}", models_api.delete_model, methods=["DELETE"]),
        Route("/health", health, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return routes


# ---------------------------------------------------------------------------------------------
# health and metrics


async def root(request: Request) -> Response:
    return PlainTextResponse("mdl model runner is running\n")


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
    reaper = asyncio.create_task(_reap(state.scheduler, state.reap_interval)) if state.reap_interval else None
    state.ready = True
    try:
        yield
    finally:
        state.ready = False
        if reaper is not None:
            reaper.cancel()
            with contextlib.suppress(BaseException):
                await reaper
        await run_in_threadpool(state.scheduler.close)


async def _reap(scheduler, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await run_in_threadpool(scheduler.reap_idle)
        except Exception:  # noqa: BLE001 - keep reaping
            traceback.print_exc(file=sys.stderr)
