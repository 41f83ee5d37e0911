"""Answer a registry's authentication challenges: Basic, or Bearer tokens (distribution `docs/spec/auth/`).

- `Basic`: the stored username and password on every request to the registry's own origin.
- `Bearer`: a token from the challenge's `realm` for the `service` and the scopes a request needs
  (`repository:<name>:pull[,push]`): `GET realm?service=..&scope=..` (with Basic credentials when we
  have them, and `offline_token=true`), or with an identity token the OAuth2 form
  `POST realm grant_type=refresh_token` (`docs/spec/auth/oauth.md`). The answer's `token` or
  `access_token` is cached per (registry, scope set) until `expires_in` (default 60 s) runs out.

Credentials are resolved lazily (a credential helper runs only once a registry asks for them).
Tokens and passwords never enter a message or the debug log. Credential lookup and `login`/`logout`
live in `credentials.py` and are re-exported here.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from typing import Any

from .challenge import Challenge, parse_challenges
from .credentials import Credentials
from .errors import AuthenticationError, PermissionDeniedError, RegistryError

__all__ = ["Authenticator", "basic_header"]

DEFAULT_TOKEN_LIFETIME = 60  # seconds, distribution token.md: "expires_in ... defaults to 60 seconds"
EXPIRY_MARGIN = 10
CLIENT_ID = "mdl"

CredentialSource = Credentials | None | Callable[[], "Credentials | None"]
# send(method, url, *, headers, params, data) -> requests.Response (body read); maps network errors.
TokenSender = Callable[..., Any]


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class Authenticator:
    """The Authorization header for a request to one registry, learnt from its challenges. Thread-safe."""

    def __init__(self, registry: str, credentials: CredentialSource, send: TokenSender):
        self.registry = registry
        self._credentials_source = credentials
        self._credentials: Credentials | None = None
        self._resolved = not callable(credentials)
        if self._resolved:
            self._credentials = credentials  # type: ignore[assignment]
        self._send = send
        self._lock = threading.Lock()
        self._scheme: str | None = None  # "basic" or "bearer", once the registry has told us
        self._bearer: Challenge | None = None
        self._tokens: dict[frozenset[str], tuple[str, float]] = {}

    @property
    def credentials(self) -> Credentials | None:
        with self._lock:
            if not self._resolved:
                self._credentials = self._credentials_source()  # type: ignore[operator]
                self._resolved = True
            return self._credentials

    def header(self, scopes: tuple[str, ...]) -> str | None:
        """The header to send before any challenge for these scopes (None: send nothing)."""
        if self._scheme == "basic":
            creds = self.credentials
            return basic_header(creds.username or "", creds.password or "") if creds and creds.has_basic else None
        if self._scheme == "bearer" and self._bearer is not None:
            return "Bearer " + self._token(frozenset(scopes))
        return None

    def answer(self, www_authenticate: str | None, scopes: tuple[str, ...], sent: str | None) -> str:
        """The header to retry with after a 401 carrying `www_authenticate`; `sent` is what was sent.
        AuthenticationError when there is nothing new to try."""
        if www_authenticate is None:
            raise AuthenticationError(self.registry)
        challenges = parse_challenges(www_authenticate, self.registry)
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        creds = self.credentials
        if bearer is not None:
            if not bearer.realm:
                raise RegistryError(self.registry, "authentication", 401, "MALFORMED_CHALLENGE",
                                    "the Bearer challenge has no realm")
            wanted = set(scopes)
            if bearer.params.get("scope"):
                wanted.update(bearer.params["scope"].split(" "))
            key = frozenset(s for s in wanted if s)
            with self._lock:
                self._scheme, self._bearer = "bearer", bearer
                self._tokens.pop(key, None)  # the registry refused what we had, or we had none
            header = "Bearer " + self._token(key)
            if header == sent:
                raise AuthenticationError(self.registry, _rejected(creds))
            return header
        if basic is not None:
            if creds is None or not creds.has_basic:
                raise AuthenticationError(self.registry)
            header = basic_header(creds.username or "", creds.password or "")
            if header == sent:
                raise AuthenticationError(self.registry, "the registry rejected the credentials")
            with self._lock:
                self._scheme = "basic"
            return header
        schemes = ", ".join(c.scheme for c in challenges)
        raise RegistryError(self.registry, "authentication", 401, "UNSUPPORTED",
                            f"unsupported authentication scheme(s): {schemes}")

    def rejected(self) -> AuthenticationError:
        """The error for a second 401 after answering a challenge."""
        return AuthenticationError(self.registry, _rejected(self.credentials))

    def _token(self, scopes: frozenset[str]) -> str:
        now = time.monotonic()
        with self._lock:
            cached = self._tokens.get(scopes)
            bearer = self._bearer
        if cached and cached[1] > now:
            return cached[0]
        assert bearer is not None
        token, lifetime = self._fetch_token(bearer, scopes)
        with self._lock:
            self._tokens[scopes] = (token, now + max(lifetime - EXPIRY_MARGIN, 1))
        return token

    def _fetch_token(self, bearer: Challenge, scopes: frozenset[str]) -> tuple[str, int]:
        creds = self.credentials
        realm = bearer.realm or ""
        service = bearer.params.get("service")
        ordered = sorted(scopes)
        if creds is not None and creds.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token, "client_id": CLIENT_ID,
                    "access_type": "offline"}
            if service:
                form["service"] = service
            if ordered:
                form["scope"] = " ".join(ordered)
            resp = self._send("POST", realm, headers={}, params=None, data=form)
        else:
            params: list[tuple[str, str]] = []
            if service:
                params.append(("service", service))
            params += [("scope", s) for s in ordered]
            headers = {}
            if creds is not None and creds.has_basic:
                headers["Authorization"] = basic_header(creds.username or "", creds.password or "")
                params += [("offline_token", "true"), ("client_id", CLIENT_ID)]
            resp = self._send("GET", realm, headers=headers, params=params, data=None)
        # The token service is not the registry's API (a 404 there is a wrong realm, not a missing
        # repository), so its answers map here rather than in `errors.error_for_response`.
        if resp.status_code == 401:
            raise AuthenticationError(self.registry, _rejected(creds))
        if resp.status_code == 403:
            raise PermissionDeniedError(self.registry, " ".join(ordered) or "a token")
        if resp.status_code != 200:
            raise RegistryError(self.registry, "a token request", resp.status_code, None,
                                "the token service failed")
        try:
            doc = resp.json()
            token = doc.get("token") or doc.get("access_token")
            lifetime = int(doc.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError, RecursionError):
            token, lifetime = None, 0
        if not isinstance(token, str) or not token:
            raise RegistryError(self.registry, "a token request", resp.status_code, None,
                                "the token service answered without a token")
        return token, lifetime


def _rejected(creds: Credentials | None) -> str | None:
    if creds is None:
        return None
    return "the registry rejected the credentials"
