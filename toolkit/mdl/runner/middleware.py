"""ASGI middleware of the runner: every answered HTTP request counted by route and status."""

from __future__ import annotations

from .metrics import Metrics
from .openai_api import PREFIXES

_FIXED_ROUTES = ("/", "/models", "/models/create", "/health", "/health/ready", "/metrics", "/version", "/logs",
                 "/engines/status", "/engines/ps", "/engines/df", "/engines/unload", "/engines/_configure",
                 "/engines/requests")


def route_label(path: str) -> str:
    """The route a path belongs to, for metrics: the same label for every prefix and model name."""
    for prefix in PREFIXES:
        if path.startswith(prefix + "/"):
            rest = path[len(prefix):]
            if rest.startswith("/models/"):
                return "/v1/models/{model}"
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
