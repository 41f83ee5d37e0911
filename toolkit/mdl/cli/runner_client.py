"""How the CLI talks to a running `mdl serve` (`mdl ps`, `unload`, `configure`, `requests`, `status`,
`logs`, and `mdl run` when a runner answers).

The runner is found as Docker's CLI finds it: `MODEL_RUNNER_HOST` (default `http://127.0.0.1:12434`);
`MDL_API_KEY` is sent as a bearer token when set. Plain `http.client` from the standard library: these
commands start in a fraction of a second and import nothing of the server.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

from ..errors import MdlError

DEFAULT_HOST = "http://127.0.0.1:12434"


class RunnerUnreachableError(MdlError):
    kind = "runner-unreachable"

    def __init__(self, url: str, problem: str):
        self.url = url
        # one line that says what to run
        super().__init__(f"no model runner answers at {url} ({problem}): start one with `mdl serve`, "
                         "or set MODEL_RUNNER_HOST to where one runs")


class RunnerError(MdlError):
    """The runner answered with an error (its message, in OpenAI's shape, is shown as it is)."""

    kind = "runner"

    def __init__(self, status: int, message: str, code: str | None = None):
        self.status, self.code = status, code
        super().__init__(message)


def runner_url(env=os.environ) -> str:
    url = (env.get("MODEL_RUNNER_HOST") or DEFAULT_HOST).strip().rstrip("/")
    return url if "://" in url else "http://" + url


class RunnerClient:
    def __init__(self, url: str | None = None, *, api_key: str | None = None, timeout: float = 30.0):
        self.url = url or runner_url()
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MdlError(f"MODEL_RUNNER_HOST {self.url!r} is not an http:// URL",
                           "set it like http://127.0.0.1:12434")
        self._parts = parts
        self._base = parts.path.rstrip("/")
        self.api_key = api_key if api_key is not None else (os.environ.get("MDL_API_KEY") or None)
        self.timeout = timeout

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
        return cls(self._parts.hostname, self._parts.port, timeout=timeout)

    def open(self, method: str, path: str, body: Any = None, *, query: dict | None = None,
             timeout: float | None = None) -> http.client.HTTPResponse:
        """Send a request; returns the response (status < 400) to read or stream."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        target = self._base + path + ("?" + urlencode({k: v for k, v in query.items() if v is not None})
                                      if query else "")
        conn = self._connection(self.timeout if timeout is None else timeout)
        try:
            conn.request(method, target, body=data, headers=headers)
            response = conn.getresponse()
        except (ConnectionError, socket.timeout, socket.gaierror, OSError) as e:
            conn.close()
            raise RunnerUnreachableError(self.url, _problem(e)) from None
        if response.status >= 400:
            raise _error_of(response)
        return response

    def get(self, path: str, **query) -> Any:
        return _json(self.open("GET", path, query=query))

    def post(self, path: str, body: Any) -> Any:
        return _json(self.open("POST", path, body))

    def lines(self, path: str, **query) -> Iterator[str]:
        """The lines of a streamed answer, as they come (no timeout between them)."""
        response = self.open("GET", path, query=query, timeout=None)
        while True:
            line = response.readline()
            if not line:
                return
            yield line.decode("utf-8", "replace").rstrip("\r\n")

    def events(self, path: str, **query) -> Iterator[Any]:
        """The JSON documents of a server-sent event stream."""
        for line in self.lines(path, **query):
            if line.startswith("data: ") and line != "data: [DONE]":
                yield json.loads(line[len("data: "):])

    def answers(self, timeout: float = 1.0) -> bool:
        """Whether a runner answers `/health` here (quickly: for `mdl run` choosing where to run)."""
        conn = self._connection(timeout)
        try:
            conn.request("GET", self._base + "/health")
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()


def _problem(e: BaseException) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, socket.timeout):
        return "timed out"
    return str(e) or type(e).__name__


def _json(response: http.client.HTTPResponse) -> Any:
    raw = response.read()
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        raise RunnerError(response.status, f"the runner answered something that is not JSON: {raw[:80]!r}") from None


def _error_of(response: http.client.HTTPResponse) -> RunnerError:
    raw = response.read()
    try:
        err = json.loads(raw)["error"]
        return RunnerError(response.status, str(err.get("message") or raw), err.get("code"))
    except (ValueError, KeyError, TypeError, AttributeError):
        text = raw.decode("utf-8", "replace").strip()[:200]
        return RunnerError(response.status, f"the runner answered {response.status}: {text}")
