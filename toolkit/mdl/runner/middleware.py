"""ASGI middleware of the runner: every answered HTTP request counted by route and status."""

from __future__ import annotations

from .metrics import Metrics
from .openai_api import PREFIXES

_FIXED_ROUTES = ("/", "/models", "/models/create", "/health", "/health/ready", "/metrics", "/version", "/logs",
                 "/engines/status", "/engines/ps", "/engines/df", "/engines/unload", "/engines/_configure",
                 "/engines/requests", "/api/version", "/api/tags", "/api/ps", "/api/show", "/api/chat",
                 "/api/generate", "/api/embed", "/api/pull", "/api/delete")
_OTHER_PREFIXES = ("/anthropic/v1", "/engines/v1", "/engines/llama.cpp/v1")  # Anthropic's, and bare /responses


def route_label(path: str) -> str:
    """The route a path belongs to, for metrics: the same label for every prefix, model name and
    response ID."""
    if path.startswith("/responses"):
        path = "/v1" + path
    for prefix in _OTHER_PREFIXES:
        if path.startswith(prefix + "/messages"):
            path = "/v1" + path[len(prefix):]
    for prefix in PREFIXES:
        if path.startswith(prefix + "/"):
            rest = path[len(prefix):]
            if rest.startswith("/models/"):
                return "/v1/models/{model}"
            if rest.startswith("/responses/"):
                return "/v1/responses/{id}/input_items" if rest.endswith("/input_items") else "/v1/responses/{id}"
            return "/v1" + rest
    if path.startswith("/models/") and path != "/models/create":
        return "/models/{name}"
    return path if path in _FIXED_ROUTES else "other"


class CountRequests:
    """Count every answered HTTP request by route and status (a request that raised counts as 500)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = [500]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.request(route_label(scope.get("path", "")), status[0])
