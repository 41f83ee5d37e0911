"""Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, or in the shape of the
API an endpoint speaks (`error_shape`: Anthropic's, Ollama's).

Endpoints raise; the handlers here, registered once by the app, answer: an `ApiError` as it is, an
`MdlError` by its kind's row of `mdl.errors.OUTCOMES`, a path or method no route takes as 404/405,
and (in `AnswerUnhandled`) anything else, a bug, as 500 `internal_error`. A stream that fails after
its first byte cannot change its status; it ends with `to_api_error`'s body as its last event.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import MdlError


class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def error_param(name: str) -> Callable:
    """Mark an endpoint whose MdlErrors are about the model its request names in `name`: their 400 and
    404 answers carry `name` as OpenAI's `param` (clients show which field to fix)."""

    def mark(endpoint: Callable) -> Callable:
        endpoint.error_param = name
        return endpoint

    return mark


def error_shape(render: Callable[[ApiError], dict]) -> Callable:
    """Mark an endpoint whose errors are answered in another API's shape: `render(err)` is the body
    (Anthropic's, Ollama's); the status is the same."""

    def mark(endpoint: Callable) -> Callable:
        endpoint.error_shape = render
        return endpoint

    return mark


def to_api_error(exc: BaseException, *, param: str | None = None) -> ApiError:
    """The OpenAI error for `exc`; a bug's traceback goes to stderr, the server's log."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, MdlError):
        outcome = exc.outcome
        message = exc.message + (f" ({exc.hint})" if exc.hint else "")
        if exc.kind == "invalid-request":  # the engine names the parameter and, at times, a finer code
            return ApiError(outcome.http_status, message, type=outcome.api_type,
                            code=getattr(exc, "code", None) or outcome.api_code, param=getattr(exc, "param", None))
        return ApiError(outcome.http_status, message, type=outcome.api_type, code=outcome.api_code,
                        param=param if outcome.http_status in (400, 404) else None)
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    return ApiError(500, f"internal error: {type(exc).__name__}: {exc}", type="server_error",
                    code="internal_error")


def status_of(exc: BaseException) -> int:
    """The HTTP status `exc` is answered with (without logging it: see `to_api_error`)."""
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, MdlError):
        return exc.outcome.http_status
    return 500


def _response(err: ApiError, request: Request | None = None) -> JSONResponse:
    # Starlette's router puts the endpoint it matched in the scope: its `error_shape` mark, if any.
    shape = getattr(request.scope.get("endpoint"), "error_shape", None) if request is not None else None
    return JSONResponse(shape(err) if shape is not None else err.body(), status_code=err.status)


async def _answer_api_error(request: Request, exc: ApiError) -> JSONResponse:
    return _response(exc, request)


async def _answer_mdl_error(request: Request, exc: MdlError) -> JSONResponse:
    param = getattr(request.scope.get("endpoint"), "error_param", None)
    return _response(to_api_error(exc, param=param), request)


async def _answer_no_route(request: Request, exc: HTTPException) -> JSONResponse:
    status = exc.status_code
    message = {404: f"no route for {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}"}
    return _response(ApiError(status, message.get(status, str(exc.detail)),
                              code="not_found" if status == 404 else "method_not_allowed"))


EXCEPTION_HANDLERS: dict = {
    ApiError: _answer_api_error,
    MdlError: _answer_mdl_error,
    404: _answer_no_route,
    405: _answer_no_route,
}


class AnswerUnhandled:
    """ASGI middleware: an exception no handler took (a bug) is answered as 500 `internal_error`.

    Not a Starlette handler for `Exception`: Starlette re-raises after such a handler answers, and the
    server then drops the connection, which a client that keeps connections open sees as a reset."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_wrapper(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:  # noqa: BLE001 - answered, its traceback logged
            if started:  # too late for another answer
                raise
            await _response(to_api_error(exc))(scope, receive, send)
