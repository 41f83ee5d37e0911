"""What keeps a local runner safe from the web pages its user visits, and from the network.

A browser lets any page send requests to `http://127.0.0.1:12434`: a form posts `text/plain` with no
preflight, and a page whose DNS name is rebound to 127.0.0.1 talks to the runner as if it were its
own origin. So, on every request, before any route sees it (`Guard`, an ASGI middleware):

1. `Host` must name a loopback address (or `localhost`) or a name given with `--allowed-host`, when
   the server is bound to loopback or names were given: a rebound DNS name gets 421.
2. `Origin`, when sent, must be the server's own (the scheme and the `Host` it was sent to) or one
   listed with `--cors-origin`; any other gets 403. A listed origin gets CORS headers, and its
   preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered here.
3. With an API key (`--api-key`, `MDL_API_KEY`), every route but `/health` needs it: `Authorization:
   Bearer <key>` (OpenAI clients), `x-api-key: <key>` (Anthropic clients) or HTTP Basic with the key
   as password (a browser's own prompt, for the dashboard). Compared in constant time; never logged,
   never echoed.
4. A request with a body must say `Content-Type: application/json`: a form's `text/plain` gets 415.

`POST /models/create` may pull only from the registries given with `--pull-from`
(`check_pull_allowed`). Refusals have OpenAI's error shape.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..errors import MdlError

PUBLIC_PATHS = frozenset({"/health"})  # answered without the API key: liveness probes
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH", b"DELETE"})
_DOCKER_HUB_ALIASES = {"index.docker.io": "docker.io", "registry-1.docker.io": "docker.io"}


class RegistryNotAllowedError(MdlError):
    kind = "registry-not-allowed"

    def __init__(self, registry: str, allowed: Iterable[str]):
        self.registry = registry
        super().__init__(f"this runner does not pull from {registry}",
                         f"it pulls only from {', '.join(sorted(allowed))} (mdl serve --pull-from)")


def normalize_registry(host: str) -> str:
    host = host.strip().lower().rstrip("/")
    return _DOCKER_HUB_ALIASES.get(host, host)


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address, without port or brackets) is this machine's loopback."""
    host = host.strip().lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name of a `Host` header, without its port: `[::1]:80` -> `::1`, `Example.com.:80` -> `example.com`."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0].rstrip(".") if header.count(":") == 1 else header.rstrip(".")


@dataclass(frozen=True)
class Policy:
    """The safety settings of one `mdl serve`."""

    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()  # exact origins (`https://app.example`), or `*` for any
    allowed_hosts: tuple[str, ...] = ()  # names `Host` may carry besides loopback addresses
    check_host: bool = True  # bound to loopback (or names given): refuse other Host names
    pull_from: tuple[str, ...] | None = None  # registries POST /models/create may pull from; None: any
    pull_verify_key: str | None = None  # public key every model POST /models/create pulls must be signed by
    _origins: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_origins", frozenset(o.strip().lower().rstrip("/") for o in self.cors_origins))

    @classmethod
    def for_server(cls, bind_host: str, *, api_key: str | None = None, cors_origins: Iterable[str] = (),
                   allowed_hosts: Iterable[str] = (), pull_from: Iterable[str] | None = None,
                   pull_verify_key: str | None = None) -> Policy:
        hosts = tuple(h.strip().lower().rstrip(".") for h in allowed_hosts if h.strip())
        pulls = tuple(normalize_registry(r) for r in pull_from) if pull_from else None
        return cls(api_key=api_key or None, cors_origins=tuple(cors_origins), allowed_hosts=hosts,
                   check_host=is_loopback(bind_host.strip("[]")) or bool(hosts), pull_from=pulls,
                   pull_verify_key=pull_verify_key)

    def host_allowed(self, header: str | None) -> bool:
        if not self.check_host:
            return True
        if not header:
            return False
        name = host_name(header)
        return is_loopback(name) or name in self.allowed_hosts

    def listed_origin(self, origin: str) -> bool:
        return "*" in self._origins or origin.lower().rstrip("/") in self._origins

    def key_matches(self, headers: dict[bytes, bytes]) -> bool:
        """Whether the request carries the API key (Bearer, x-api-key or Basic's password)."""
        expected = (self.api_key or "").encode()
        given = _presented_key(headers)
        # compare_digest takes time independent of where the bytes differ; a missing key compares too
        return hmac.compare_digest(given if given is not None else b"\0" + expected, expected)


def _presented_key(headers: dict[bytes, bytes]) -> bytes | None:
    auth = headers.get(b"authorization", b"").strip()
    scheme, _, value = auth.partition(b" ")
    if scheme.lower() == b"bearer" and value.strip():
        return value.strip()
    if scheme.lower() == b"basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        return decoded.partition(b":")[2]
    key = headers.get(b"x-api-key", b"").strip()
    return key or None


def same_origin(origin: str, host_header: str | None, scheme: str) -> bool:
    """Whether `origin` is the server's own: the scheme and the host (and port) the request was sent to."""
    if not host_header:
        return False
    parts = urlsplit(origin.strip().lower())
    return parts.scheme == scheme and parts.netloc == host_header.strip().lower() and not parts.path.strip("/")


def check_pull_allowed(policy: Policy | None, registry: str) -> None:
    if policy is None or policy.pull_from is None:
        return
    if normalize_registry(registry) not in policy.pull_from:
        raise RegistryNotAllowedError(registry, policy.pull_from)


# ---------------------------------------------------------------------------------------------
# the middleware


class Guard:
    """ASGI middleware applying a `Policy` to every HTTP request (see the module's docstring)."""

    def __init__(self, app, policy: Policy):
        self.app, self.policy = app, policy

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        policy = self.policy
        headers = dict(scope.get("headers") or ())  # lower-case names; a repeated header: the last
        host = _text(headers.get(b"host"))
        if not policy.host_allowed(host):
            return await _refuse(scope, receive, send, 421, "misdirected_request",
                                 f"this runner does not answer to the host name {host_name(host or '')!r}: "
                                 "use 127.0.0.1 or localhost, or start it with --allowed-host")
        origin = _text(headers.get(b"origin"))
        cors = None
        if origin is not None and not same_origin(origin, host, scope.get("scheme", "http")):
            if not policy.listed_origin(origin):
                return await _refuse(scope, receive, send, 403, "origin_not_allowed",
                                     "cross-origin requests are refused: start mdl serve with --cors-origin "
                                     "to allow a web application's origin")
            cors = origin
        method = scope.get("method", "").encode()
        if cors is not None and method == b"OPTIONS" and b"access-control-request-method" in headers:
            return await _preflight(send, cors, headers)
        if policy.api_key and scope.get("path") not in PUBLIC_PATHS and not policy.key_matches(headers):
            html = b"text/html" in headers.get(b"accept", b"")
            challenge = b'Basic realm="mdl", charset="UTF-8"' if html else b'Bearer realm="mdl"'
            return await _refuse(scope, receive, send, 401, "invalid_api_key",
                                 "this runner needs an API key: send it as 'Authorization: Bearer <key>' "
                                 "(the api_key of OpenAI clients) or 'x-api-key'",
                                 etype="authentication_error", extra=[(b"www-authenticate", challenge)], cors=cors)
        if method in _BODY_METHODS and _has_body(headers) and not _is_json(headers.get(b"content-type")):
            return await _refuse(scope, receive, send, 415, "unsupported_media_type",
                                 "a request body must be JSON: send 'Content-Type: application/json'", cors=cors)
        if cors is None:
            return await self.app(scope, receive, send)

        async def send_with_cors(message):
            if message["type"] == "http.response.start":
                message = dict(message, headers=[*message.get("headers", ()), *_cors_headers(cors)])
            await send(message)

        return await self.app(scope, receive, send_with_cors)


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


def _has_body(headers: dict[bytes, bytes]) -> bool:
    length = headers.get(b"content-length", b"").strip()
    return b"transfer-encoding" in headers or (length != b"" and length != b"0")


def _is_json(content_type: bytes | None) -> bool:
    if not content_type:
        return False
    return content_type.split(b";", 1)[0].strip().lower() == b"application/json"


def _cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    return [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]


async def _preflight(send, origin: str, headers: dict[bytes, bytes]) -> None:
    asked = headers.get(b"access-control-request-headers", b"")
    allow = b"authorization, content-type, x-api-key" + (b", " + asked if asked else b"")
    await send({"type": "http.response.start", "status": 204, "headers": [
        *_cors_headers(origin),
        (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
        (b"access-control-allow-headers", allow),
        (b"access-control-max-age", b"600"),
    ]})
    await send({"type": "http.response.body", "body": b""})


async def _refuse(scope, receive, send, status: int, code: str, message: str, *,
                  etype: str = "invalid_request_error", extra=(), cors: str | None = None) -> None:
    body = json.dumps({"error": {"message": message, "type": etype, "param": None, "code": code}}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *extra, *(_cors_headers(cors) if cors else ()),
    ]})
    await send({"type": "http.response.body", "body": body})
