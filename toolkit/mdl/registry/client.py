"""HTTP to one registry: scheme and TLS choice, auth challenges, retries, redirects, error mapping.

- Plain HTTP for loopback registries (`localhost`, `127.0.0.1`, `[::1]`, as Docker does) or when asked;
  otherwise HTTPS with verification on, against `ca_file` (or `SSL_CERT_FILE`, passed in) if given.
- A 401 is answered once (`auth.py`); a second 401 is an `AuthenticationError`.
- Connection errors, timeouts, 408, 429 and 5xx are retried under a `mdl.retry.RetryPolicy`: exponential
  backoff and full jitter, honoring `Retry-After` (seconds or an HTTP-date, capped), bounded in count and
  in total time.
  A body that cannot be replayed (a generator) is never resent: the caller (the uploader) recovers.
- Redirects are followed by hand, at most 5, and `Authorization` goes only to the registry's own
  origin (scheme, host, port): blob GETs are redirected to storage backends that must not see it.
- Other 4xx map to errors at once (`errors.error_for_response`). `debug_log`, when given, receives an
  `Exchange` per HTTP exchange with `Authorization`, cookies and token-like query values redacted.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from ..reference import is_plain_http
from ..retry import RetryPolicy
from .auth import Authenticator, CredentialSource
from .errors import (
    CREDENTIALS_MID_UPLOAD,
    ERROR_BODY_LIMIT,
    AuthenticationError,
    RegistryError,
    RegistryUnreachableError,
    TLSVerificationError,
    error_for_response,
)

MAX_REDIRECTS = 5
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DOCKER_HUB_NAMES = frozenset({"docker.io", "index.docker.io"})
DOCKER_HUB_API = "registry-1.docker.io"
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-registry-auth"})
_SECRET_QUERY_HINTS = ("token", "signature", "sig", "credential", "password", "secret", "key", "auth")


@dataclass
class Exchange:
    """One HTTP exchange, already redacted, for `debug_log`."""

    method: str
    url: str
    status: int | None
    request_headers: dict[str, str] = field(default_factory=dict)
    response_headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    def __str__(self) -> str:
        outcome = str(self.status) if self.status is not None else f"error: {self.error}"
        return f"{self.method} {self.url} -> {outcome} request={self.request_headers} " \
               f"response={self.response_headers}"


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if not parts.query and "@" not in parts.netloc:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = [(k, "<redacted>" if any(h in k.lower() for h in _SECRET_QUERY_HINTS) else v)
             for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="<>:/"), parts.fragment))


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for k, v in headers.items():
        low = k.lower()
        out[k] = "<redacted>" if low in _SECRET_HEADERS else redact_url(v) if low == "location" else v
    return out


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def add_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def _replayable(data: Any) -> bool:
    return data is None or isinstance(data, (bytes, bytearray, memoryview, str, dict, list, tuple)) or callable(data)


def _body(data: Any) -> Any:
    return data() if callable(data) else data


def _describe(exc: BaseException, connect_timeout: float, read_timeout: float) -> str:
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"no connection within {connect_timeout:g} s"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return f"no answer within {read_timeout:g} s"
    text = str(exc)
    low = text.lower()
    if "refused" in low:
        return "connection refused"
    if "name or service not known" in low or "nodename nor servname" in low or "name resolution" in low \
            or "getaddrinfo" in low:
        return "the host name could not be resolved"
    if "reset by peer" in low or "connection aborted" in low or "remotedisconnected" in low:
        return "the connection was closed by the server"
    return type(exc).__name__


class RegistryClient:
    """Requests to one registry host. Thread-safe; share one per registry across a transfer."""

    def __init__(self, host: str, *, plain_http: bool | None = None, ca_file: str | None = None,
                 credentials: CredentialSource = None, connect_timeout: float = 10, read_timeout: float = 60,
                 retries: int = 5, debug_log: Callable[[Exchange], None] | None = None, pool_size: int = 10,
                 backoff_base: float = 0.5, backoff_cap: float = 30.0, retry_after_cap: float = 60.0,
                 retry_budget: float = 300.0, proxies: Mapping[str, str] | None = None,
                 ssl_cert_file: str | None = None):
        self.registry = host
        self.api_host = DOCKER_HUB_API if host.lower() in DOCKER_HUB_NAMES else host
        # Loopback registries default to HTTP as Docker's do, unless a CA file says TLS; if such a
        # registry turns out to serve TLS, the first answer says so and the client switches once.
        self._may_upgrade = plain_http is None and is_plain_http(host) and not ca_file
        if plain_http is None:
            plain_http = is_plain_http(host) and not ca_file
        self._set_scheme(plain_http)
        # An explicit `ca_file` also means "this registry speaks TLS"; `ssl_cert_file` (SSL_CERT_FILE from
        # the environment) only replaces the default CA bundle.
        self.verify: bool | str = ca_file or ssl_cert_file or True
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retry_policy = RetryPolicy(max(0, retries), backoff_base, backoff_cap, retry_after_cap, retry_budget)
        self.debug_log = debug_log
        self.session = requests.Session()
        self.session.trust_env = False  # no ~/.netrc credentials leaking to redirect targets
        if proxies:
            self.session.proxies.update(proxies)
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(pool_size, 1), max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.auth = Authenticator(host, credentials, self._token_send)
        self._sleep = time.sleep
        self._log_lock = threading.Lock()

    def _set_scheme(self, plain_http: bool) -> None:
        self.plain_http = plain_http
        self.base_url = f"{'http' if plain_http else 'https'}://{self.api_host}"
        self._origin = origin(self.base_url)

    def _tls_port_answered(self, resp: requests.Response) -> bool:
        """Whether a loopback registry we spoke HTTP to is serving TLS: Go answers plain HTTP on a TLS
        port with a 400 "Client sent an HTTP request to an HTTPS server" (asked again by GET for a HEAD)."""
        if not (self._may_upgrade and self.plain_http and resp.status_code == 400):
            return False
        self._may_upgrade = False
        try:
            if resp.request is not None and resp.request.method == "HEAD":
                probe = self.session.get(self.base_url + "/v2/", allow_redirects=False,
                                         timeout=(self.connect_timeout, self.read_timeout))
                head = probe.content[:200]
            else:
                if not resp._content_consumed:  # type: ignore[attr-defined]
                    # keep the body for the error mapping that follows when this is a real 400
                    resp._content = resp.raw.read(ERROR_BODY_LIMIT, decode_content=True)  # type: ignore[attr-defined]
                    resp._content_consumed = True  # type: ignore[attr-defined]
                head = resp.content[:200]
        except Exception:  # noqa: BLE001 - only a hint; the 400 stands if unreadable
            return False
        if b"HTTP request to an HTTPS server" not in (head or b""):
            return False  # an HTTP registry's own 400: it speaks HTTP, never ask again
        resp.close()
        self._set_scheme(False)
        return True

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, url_or_path: str) -> str:
        """An absolute URL: paths (`/v2/...`) and relative upload `Location`s are on the registry."""
        if url_or_path.startswith(("http://", "https://")):
            return url_or_path
        return urljoin(self.base_url + "/", url_or_path)

    def is_registry_origin(self, url: str) -> bool:
        return origin(url) == self._origin

    # -- the exchange ------------------------------------------------------------------------------

    def _log(self, method: str, url: str, resp: requests.Response | None, req_headers: Mapping[str, str],
             error: str | None = None) -> None:
        if self.debug_log is None:
            return
        ex = Exchange(method, redact_url(url), resp.status_code if resp is not None else None,
                      redact_headers(req_headers), redact_headers(resp.headers) if resp is not None else {}, error)
        with self._log_lock:
            self.debug_log(ex)

    def _send_once(self, method: str, url: str, headers: dict[str, str], data: Any,
                   params: Any, stream: bool, auth: str | None) -> requests.Response:
        """One request and its redirects; Authorization only to the registry's origin."""
        for _hop in range(MAX_REDIRECTS + 1):
            h = dict(headers)
            if auth is not None and self.is_registry_origin(url):
                h["Authorization"] = auth
            try:
                resp = self.session.request(method, url, headers=h, data=data, params=params, stream=stream,
                                            allow_redirects=False, verify=self.verify,
                                            timeout=(self.connect_timeout, self.read_timeout))
            except requests.exceptions.RequestException as e:
                self._log(method, url, None, h, type(e).__name__)
                raise
            self._log(method, resp.url, resp, h)
            location = resp.headers.get("Location")
            if resp.status_code not in REDIRECT_STATUSES or not location:
                return resp
            resp.close()
            if data is not None and not _replayable(data):
                raise RegistryError(self.registry, f"{method} {urlsplit(url).path}", resp.status_code, None,
                                    "the registry redirected a streamed upload")
            url = urljoin(resp.url, location)
            params = None
            if resp.status_code == 303 or (resp.status_code in (301, 302) and method not in ("GET", "HEAD")):
                method, data = "GET", None
                headers = {k: v for k, v in headers.items() if k.lower() not in ("content-type", "content-length")}
        raise RegistryError(self.registry, f"{method} {urlsplit(url).path}", None, "TOO_MANY_REDIRECTS",
                            f"more than {MAX_REDIRECTS} redirects")

    def request(self, method: str, url_or_path: str, *, scope: str | Iterable[str] | None = None,
                headers: Mapping[str, str] | None = None, data: Any = None, params: Any = None,
                stream: bool = False, expected_status: Iterable[int] | None = (200,), what: str | None = None,
                not_found: str | None = None, retry: bool = True) -> requests.Response:
        """Send a request and return the response whose status is in `expected_status` (any when None).

        `data`: bytes/str/dict (replayable), a callable returning a fresh body per attempt (replayable), or
        an iterator (sent once, never retried). `scope`: the token scope(s) the request needs.
        `what` names the operation in errors; `not_found` the thing a 404 means is missing.
        `retry=False` sends the request once (upload PATCHes: the uploader asks the session's offset).
        On an unexpected status the body is read (bounded), the response closed and a mapped error raised.
        """
        url = self.url(url_or_path)
        scopes: tuple[str, ...] = (scope,) if isinstance(scope, str) else tuple(scope or ())
        hdrs = dict(headers or {})
        resendable = _replayable(data)  # after a 401 the registry has not used the body
        replayable = retry and resendable
        what = what or f"{method} {urlsplit(url).path}"
        tries = self.retry_policy.start()
        answered = False
        auth = self.auth.header(scopes) if self.is_registry_origin(url) else None
        while True:
            try:
                resp = self._send_once(method, url, hdrs, _body(data), params, stream, auth)
            except requests.exceptions.SSLError as e:
                raise TLSVerificationError(self.registry, _tls_problem(e)) from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                    requests.exceptions.ChunkedEncodingError) as e:
                delay = tries.delay()
                # Retried, but within the connect timeout: an unreachable registry is reported in that time.
                within = tries.elapsed() + delay <= self.connect_timeout
                if replayable and within and tries.allows(delay):
                    tries.wait(delay, self._sleep)
                    continue
                raise RegistryUnreachableError(self.registry, _describe(e, self.connect_timeout,
                                                                         self.read_timeout)) from None
            status = resp.status_code
            if status == 400 and self._tls_port_answered(resp):
                if not resendable:
                    raise RegistryUnreachableError(self.registry, "the registry serves HTTPS; retry the command")
                url = "https://" + url[len("http://"):]
                auth = self.auth.header(scopes)
                continue
            if status == 401 and self.is_registry_origin(resp.url):
                challenge = resp.headers.get("WWW-Authenticate")
                resp.close()
                if answered:
                    raise self.auth.rejected()
                auth = self.auth.answer(challenge, scopes, auth)
                answered = True
                if not resendable:
                    # The body is gone; the header is learnt, so the caller's next attempt carries it.
                    raise AuthenticationError(self.registry, CREDENTIALS_MID_UPLOAD)
                continue
            if status in RETRY_STATUSES and replayable:
                asked = self._retry_after(resp) if status in (429, 503) else None
                delay = tries.delay(asked)
                if tries.allows(delay):
                    resp.close()
                    tries.wait(delay, self._sleep)
                    continue
            if expected_status is None or status in expected_status:
                return resp
            raise self.error_for(resp, what, not_found)

    def _retry_after(self, resp: requests.Response) -> float | None:
        return self.retry_policy.retry_after(resp.headers.get("Retry-After"))

    def error_for(self, resp: requests.Response, what: str, not_found: str | None = None) -> Exception:
        """The error for an unexpected response (reads a bounded body and closes the response)."""
        other_host = None
        if resp.url and not self.is_registry_origin(resp.url):
            # a redirect target or an upload Location on another host answered
            parts = urlsplit(resp.url)
            other_host = (parts.hostname or "?") + (f":{parts.port}" if parts.port else "")
        return error_for_response(resp, self.registry, what, not_found, other_host=other_host)

    def _token_send(self, method: str, url: str, *, headers: Mapping[str, str], params: Any,
                    data: Any) -> requests.Response:
        """A token-service request (auth.py): retries and TLS/network error mapping, no registry auth."""
        tries = self.retry_policy.start()
        h = dict(headers)
        while True:
            try:
                resp = self.session.request(method, url, headers=h, params=params, data=data, allow_redirects=True,
                                            verify=self.verify, timeout=(self.connect_timeout, self.read_timeout))
            except requests.exceptions.SSLError as e:
                raise TLSVerificationError(urlsplit(url).netloc or self.registry, _tls_problem(e)) from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
                self._log(method, url, None, h, type(e).__name__)
                if tries.allows(0):
                    tries.wait(tries.delay(), self._sleep)
                    continue
                raise RegistryUnreachableError(urlsplit(url).netloc or self.registry,
                                               _describe(e, self.connect_timeout, self.read_timeout)) from None
            self._log(method, url, resp, h)
            if resp.status_code in RETRY_STATUSES:
                delay = tries.delay(self._retry_after(resp))
                if tries.allows(delay):
                    tries.wait(delay, self._sleep)
                    continue
            return resp


def _tls_problem(exc: BaseException) -> str:
    text = str(exc)
    m = re.search(r"certificate verify failed: ([^('\")]+)", text)
    if m:
        return "certificate verify failed: " + m.group(1).strip()
    if "certificate verify failed" in text.lower():
        return "certificate verify failed"
    if "wrong version number" in text.lower():
        return "the server does not speak TLS on this port (an HTTP registry?)"
    return "TLS handshake failed"
