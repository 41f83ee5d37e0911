"""Registry credentials the way Docker keeps them, so `docker login` and `mdl login` share them.

Lookup order for a registry host (docs/notes.md §1):

1. `MDL_REGISTRY_USERNAME` / `MDL_REGISTRY_PASSWORD` in the environment given (CI);
2. the Docker config, `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`:
   `credHelpers[host]`, then `credsStore`, then `auths[host]` (`auth` = base64 `user:pass`, or `identitytoken`).

Docker Hub is keyed `https://index.docker.io/v1/` (`index.docker.io` and `docker.io` are accepted too).
Credential helpers are `docker-credential-<name>` programs (docker/docker-credential-helpers): `get`
reads the server on stdin and prints `{"ServerURL","Username","Secret"}`; a `<token>` username means
the secret is an identity (refresh) token; "credentials not found" means anonymous. `store` reads that
JSON on stdin, `erase` reads the server.

The environment is always passed in (resolved once at the CLI boundary); nothing here reads
`os.environ`. Secrets never appear in a message.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import MdlError
from ..store.locks import atomic_write

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", DOCKER_HUB_KEY,
                        "https://index.docker.io", "index.docker.io/v1/", "https://docker.io"})
TOKEN_USERNAME = "<token>"
HELPER_TIMEOUT = 30


@dataclass(frozen=True)
class Credentials:
    username: str | None = None
    password: str | None = None
    identity_token: str | None = None  # an OAuth2 refresh token (docker `identitytoken`)

    def __repr__(self) -> str:  # never show secrets, even in a traceback's locals
        return f"Credentials(username={self.username!r}, password={'***' if self.password else None}, " \
               f"identity_token={'***' if self.identity_token else None})"

    @property
    def has_basic(self) -> bool:
        return self.username is not None and self.password is not None


class CredentialStoreError(MdlError):
    kind = "credentials"

    def __init__(self, registry: str, problem: str, hint: str | None = None):
        self.registry = registry
        self.problem = problem
        super().__init__(f"credentials for {registry}: {problem}",
                         hint or "check your Docker config (~/.docker/config.json) and credential helpers")


def config_key(host: str) -> str:
    """The key Docker files `host`'s credentials under."""
    return DOCKER_HUB_KEY if host.lower() in _HUB_NAMES else host


def _hostname_of_key(key: str) -> str:
    """A config.json `auths` key as a bare host (keys may be URLs: `https://host/v1/`)."""
    k = key.strip()
    for prefix in ("http://", "https://"):
        if k.lower().startswith(prefix):
            k = k[len(prefix):]
            break
    return k.split("/", 1)[0].lower()


def config_path(env: Mapping[str, str]) -> Path:
    """`$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`."""
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]) / "config.json"
    home = env.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".docker" / "config.json"


def _load_config(path: Path) -> dict:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise CredentialStoreError(str(path), f"cannot read {path}: {e.strerror}") from None
    try:
        doc = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError) as e:
        raise CredentialStoreError(str(path), f"{path} is not valid JSON: {e}",
                                   "fix or remove the file, then run mdl login again") from None
    if not isinstance(doc, dict):
        raise CredentialStoreError(str(path), f"{path} is not a JSON object")
    return doc


def _helper_program(name: str, env: Mapping[str, str]) -> str | None:
    return shutil.which(f"docker-credential-{name}", path=env.get("PATH", os.defpath))


def _run_helper(name: str, action: str, stdin: str, env: Mapping[str, str], host: str) -> str | None:
    """stdout of `docker-credential-<name> <action>`, None on "credentials not found"."""
    program = _helper_program(name, env)
    if program is None:
        raise CredentialStoreError(host, f"credential helper docker-credential-{name} is not on PATH",
                                   f"install docker-credential-{name}, or remove it from your Docker config")
    try:
        proc = subprocess.run([program, action], input=stdin.encode(), capture_output=True,
                              env=dict(env), timeout=HELPER_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CredentialStoreError(host, f"credential helper docker-credential-{name} failed to run: "
                                   f"{type(e).__name__}") from None
    out = proc.stdout.decode(errors="replace")
    if proc.returncode != 0:
        text = (out + proc.stderr.decode(errors="replace")).lower()
        if action == "get" and ("credentials not found" in text or "not found" in text):
            return None
        if action == "erase" and "not found" in text:
            return None
        # The helper's own output could echo what it was given; do not repeat it.
        raise CredentialStoreError(host, f"credential helper docker-credential-{name} {action} "
                                   f"exited with status {proc.returncode}")
    return out


def _from_helper(name: str, host: str, env: Mapping[str, str]) -> Credentials | None:
    out = _run_helper(name, "get", config_key(host), env, host)
    if out is None:
        return None
    try:
        doc = json.loads(out)
        username, secret = doc.get("Username"), doc.get("Secret")
    except (ValueError, AttributeError):
        raise CredentialStoreError(host, f"credential helper docker-credential-{name} printed invalid JSON") \
            from None
    if not secret:
        return None
    if username == TOKEN_USERNAME:
        return Credentials(identity_token=secret)
    return Credentials(username=username or "", password=secret)


def _auth_entry(auths: Mapping, host: str) -> dict | None:
    key = config_key(host)
    if isinstance(auths.get(key), dict):
        return auths[key]
    want = _hostname_of_key(key) if key != DOCKER_HUB_KEY else None
    for k, v in auths.items():
        if not isinstance(v, dict):
            continue
        if key == DOCKER_HUB_KEY and k.lower() in _HUB_NAMES:
            return v
        if want is not None and _hostname_of_key(k) == want:
            return v
    return None


def _from_entry(entry: dict, host: str) -> Credentials | None:
    if entry.get("identitytoken"):
        return Credentials(username=entry.get("username") or None, identity_token=entry["identitytoken"])
    auth = entry.get("auth")
    if auth:
        try:
            user, sep, password = base64.b64decode(auth, validate=False).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise CredentialStoreError(host, "the `auth` entry in the Docker config is not base64 user:password",
                                       f"run mdl login {host} again") from None
        if not sep:
            raise CredentialStoreError(host, "the `auth` entry in the Docker config has no ':'",
                                       f"run mdl login {host} again")
        return Credentials(username=user, password=password)
    if entry.get("username") and entry.get("password"):
        return Credentials(username=entry["username"], password=entry["password"])
    return None


def resolve_credentials(host: str, env: Mapping[str, str]) -> Credentials | None:
    """The credentials to use for `host`, or None for anonymous access."""
    user, password = env.get("MDL_REGISTRY_USERNAME"), env.get("MDL_REGISTRY_PASSWORD")
    if user and password:
        return Credentials(username=user, password=password)
    config = _load_config(config_path(env))
    helpers = config.get("credHelpers") or {}
    if isinstance(helpers, dict):
        key = config_key(host)
        helper = helpers.get(key) or helpers.get(host)
        if helper:
            return _from_helper(helper, host, env)
    store = config.get("credsStore")
    if store:
        creds = _from_helper(store, host, env)
        if creds is not None:
            return creds
    auths = config.get("auths") or {}
    if isinstance(auths, dict):
        entry = _auth_entry(auths, host)
        if entry is not None:
            return _from_entry(entry, host)
    return None


def _write_config(path: Path, doc: dict) -> None:
    """Replace Docker's config atomically, readable by its owner only (it may hold credentials)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, (json.dumps(doc, indent="\t") + "\n").encode(), mode=0o600)


def login(host: str, username: str, password: str, env: Mapping[str, str]) -> str:
    """Store credentials for `host` as Docker does; returns where ("credential helper <name>" or the path).
    Call it after checking the credentials against the registry."""
    path = config_path(env)
    config = _load_config(path)
    key = config_key(host)
    helpers = config.get("credHelpers") or {}
    helper = helpers.get(key) or helpers.get(host) if isinstance(helpers, dict) else None
    helper = helper or config.get("credsStore")
    if helper:
        _run_helper(helper, "store", json.dumps({"ServerURL": key, "Username": username, "Secret": password}),
                    env, host)
        return f"credential helper docker-credential-{helper}"
    auths = config.get("auths")
    if not isinstance(auths, dict):
        auths = {}
    entry = dict(auths.get(key) or {}) if isinstance(auths.get(key), dict) else {}
    entry.pop("identitytoken", None)
    entry["auth"] = base64.b64encode(f"{username}:{password}".encode()).decode()
    auths[key] = entry
    config["auths"] = auths
    _write_config(path, config)
    return str(path)


def logout(host: str, env: Mapping[str, str]) -> bool:
    """Forget `host`'s credentials; True when some were stored."""
    path = config_path(env)
    config = _load_config(path)
    key = config_key(host)
    removed = False
    helpers = config.get("credHelpers") or {}
    helper = helpers.get(key) or helpers.get(host) if isinstance(helpers, dict) else None
    helper = helper or config.get("credsStore")
    if helper:
        removed = _run_helper(helper, "erase", key, env, host) is not None
    auths = config.get("auths")
    if isinstance(auths, dict):
        stale = [k for k in auths
                 if k == key or (key != DOCKER_HUB_KEY and _hostname_of_key(k) == key.lower())]
        for k in stale:
            del auths[k]
        if stale:
            _write_config(path, config)
            removed = True
    return removed
