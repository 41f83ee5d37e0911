"""The dashboard a browser gets at `/`: plain HTML, CSS and JavaScript files shipped in the package
(`static/`), no build step, nothing from elsewhere. The page reads the runner's own API (`/models`,
`/engines/ps`, `/engines/requests?follow`) and chats through `/engines/v1/chat/completions`.

Only a request that asks for HTML (`Accept: text/html`, what a browser sends) gets the page; other
clients keep the plain-text answer. The page's Content-Security-Policy allows only same-origin
scripts, styles and requests, and the script sets text, never HTML.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from .api_errors import ApiError

STATIC = Path(__file__).with_name("static")
_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
ASSETS = frozenset({"dashboard.css", "dashboard.js", "favicon.svg"})
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


async def root(request: Request) -> Response:
    if wants_html(request):
        return _file("dashboard.html")
    return PlainTextResponse("mdl model runner is running\n")


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in ASSETS:
        raise ApiError(404, f"no route for {request.url.path}", code="not_found")
    return _file(name)


def _file(name: str) -> Response:
    path = STATIC / name
    return Response(path.read_bytes(), media_type=_TYPES[path.suffix], headers=HEADERS)
