"""Opening a repository on a registry: the client, credentials looked up as Docker does, proxies."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..reference import Reference, is_plain_http
from .client import Exchange, RegistryClient
from .credentials import Credentials, resolve_credentials
from .repository import RemoteRepository


def _proxies(env: Mapping[str, str], host: str) -> dict[str, str]:
    """HTTP(S)_PROXY from the environment given, unless NO_PROXY names the host (loopback never proxied)."""
    if is_plain_http(host):
        return {}
    no_proxy = (env.get("NO_PROXY") or env.get("no_proxy") or "").lower()
    hostname = host.lower().rsplit(":", 1)[0] if not host.startswith("[") else host.lower()
    for entry in (e.strip().lstrip(".") for e in no_proxy.split(",")):
        if entry == "*" or (entry and (hostname == entry or hostname.endswith("." + entry) or host.lower() == entry)):
            return {}
    out = {}
    for scheme in ("http", "https"):
        value = env.get(f"{scheme.upper()}_PROXY") or env.get(f"{scheme}_proxy")
        if value:
            out[scheme] = value
    return out


def open_repository(reference: Reference, *, plain_http: bool | None = None, ca_file: str | None = None,
                    env: Mapping[str, str] | None = None, debug_log: Callable[[Exchange], None] | None = None,
                    concurrency: int = 4) -> RemoteRepository:
    """The repository `reference` names, with credentials looked up (lazily) from `env` as Docker does.
    `ca_file` falls back to `SSL_CERT_FILE` in `env`; `concurrency` sizes the connection pool."""
    client = open_client(reference.registry, plain_http=plain_http, ca_file=ca_file, env=env, debug_log=debug_log,
                         concurrency=concurrency)
    return RemoteRepository(client, reference.repository)


def open_client(host: str, *, plain_http: bool | None = None, ca_file: str | None = None,
                env: Mapping[str, str] | None = None, debug_log: Callable[[Exchange], None] | None = None,
                concurrency: int = 4) -> RegistryClient:
    """A client for the registry `host`, set up as `open_repository` sets up its own; share it across the
    repositories of that host (`RemoteRepository(client, name)`)."""
    env = dict(env or {})
    return RegistryClient(
        host,
        plain_http=plain_http,
        ca_file=ca_file,
        ssl_cert_file=env.get("SSL_CERT_FILE") or None,
        credentials=lambda: resolve_credentials(host, env),
        debug_log=debug_log,
        pool_size=max(10, 2 * concurrency),
        proxies=_proxies(env, host),
    )


def check_credentials(host: str, username: str, password: str, *, plain_http: bool | None = None,
                      ca_file: str | None = None, env: Mapping[str, str] | None = None) -> None:
    """Ask the registry's API root with these credentials, as `docker login` does before storing
    them; raises AuthenticationError (or the connection's error) when they do not work."""
    env = dict(env or {})
    client = RegistryClient(host, plain_http=plain_http, ca_file=ca_file or env.get("SSL_CERT_FILE") or None,
                            credentials=Credentials(username, password), proxies=_proxies(env, host))
    with client:
        client.request("GET", "/v2/", what="checking the credentials").close()
