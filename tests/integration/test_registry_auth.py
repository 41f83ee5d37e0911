"""Credentials and TLS against the real registry (htpasswd + self-signed TLS), login/logout, and the
Bearer token flow against a stand-in token service (distribution 2.8.2 ships none)."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from mdl.content.descriptor import Manifest
from mdl.reference import parse_reference
from mdl.registry.client import RegistryClient
from mdl.registry.open import open_repository
from mdl.registry.repository import RemoteRepository
from mdl.registry.credentials import login, logout, resolve_credentials
from mdl.registry.credentials import Credentials
from mdl.registry.errors import AuthenticationError, TLSVerificationError
from mdl.spec import mediatypes as mt
from tests.integration.blobs import BytesSource, Recorder, blob, random_blob
from tests.integration.test_registry_faults import FaultServer, reply


def _open(reg, unique_repo, env, rec=None, ca_file="default"):
    ref = parse_reference(f"{reg.host}/{unique_repo}:latest")
    return open_repository(ref, plain_http=False, ca_file=reg.ca_file if ca_file == "default" else ca_file,
                           env=env, debug_log=rec)


def _round_trip(repo) -> None:
    data, desc = random_blob(10_000)
    config_data = b'{"config":{}}'
    config = blob(config_data, mt.DOCKER_CONFIG_V01)
    repo.put_blob(desc, BytesSource(data), None)
    repo.put_blob(config, BytesSource(config_data), None)
    manifest = Manifest.build(config, [desc])
    repo.put_manifest(manifest, ["latest"])
    assert repo.fetch_manifest("latest").raw == manifest.raw
    assert repo.has_blob(desc)


@pytest.fixture
def base_env(tmp_path) -> dict[str, str]:
    """An environment with an empty Docker config of its own."""
    (tmp_path / "docker").mkdir()
    return {"DOCKER_CONFIG": str(tmp_path / "docker"), "HOME": str(tmp_path), "PATH": os.environ.get("PATH", "")}


def _assert_auth_error(err, reg):
    assert err.value.kind == "auth"
    assert err.value.message.startswith(f"authentication required for {reg.host}; run mdl login")
    assert f"run mdl login {reg.host}" in err.value.message


def test_no_credentials(auth_registry, unique_repo, base_env):
    repo = _open(auth_registry, unique_repo, base_env)
    with pytest.raises(AuthenticationError) as err:
        repo.resolve("latest")
    _assert_auth_error(err, auth_registry)


def test_wrong_password_never_leaks(auth_registry, unique_repo, base_env):
    rec = Recorder()
    env = dict(base_env, MDL_REGISTRY_USERNAME=auth_registry.username, MDL_REGISTRY_PASSWORD="wrong-secret-xyz")
    repo = _open(auth_registry, unique_repo, env, rec)
    with pytest.raises(AuthenticationError) as err:
        repo.tags()
    _assert_auth_error(err, auth_registry)
    assert "rejected" in err.value.message
    text = err.value.message + (err.value.hint or "") + rec.text()
    assert "wrong-secret-xyz" not in text
    assert base64.b64encode(b"wrong-secret-xyz").decode()[:12] not in text
    assert any(e.request_headers.get("Authorization") == "<redacted>" for e in rec.exchanges)


def test_env_credentials(auth_registry, unique_repo, base_env):
    rec = Recorder()
    env = dict(base_env, MDL_REGISTRY_USERNAME=auth_registry.username, MDL_REGISTRY_PASSWORD=auth_registry.password)
    _round_trip(_open(auth_registry, unique_repo, env, rec))
    assert auth_registry.password not in rec.text()
    b64 = base64.b64encode(f"{auth_registry.username}:{auth_registry.password}".encode()).decode()
    assert b64 not in rec.text()


def test_docker_config_auths(auth_registry, unique_repo, base_env):
    auth = base64.b64encode(f"{auth_registry.username}:{auth_registry.password}".encode()).decode()
    Path(base_env["DOCKER_CONFIG"], "config.json").write_text(json.dumps({"auths": {auth_registry.host: {"auth": auth}}}))
    _round_trip(_open(auth_registry, unique_repo, base_env))


def _helper(directory: Path, name: str, body: str) -> None:
    path = directory / f"docker-credential-{name}"
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)


def test_credential_helper(auth_registry, unique_repo, base_env, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "helper.log"
    _helper(bindir, "mdltest", f"""
import json, sys
server = sys.stdin.read().strip()
open({str(log)!r}, "a").write(sys.argv[1] + " " + server + "\\n")
if sys.argv[1] == "get" and server == {auth_registry.host!r}:
    print(json.dumps({{"ServerURL": server, "Username": {auth_registry.username!r},
                      "Secret": {auth_registry.password!r}}}))
else:
    print("credentials not found in native keychain")
    sys.exit(1)
""")
    env = dict(base_env, PATH=f"{bindir}{os.pathsep}{base_env['PATH']}")
    Path(env["DOCKER_CONFIG"], "config.json").write_text(json.dumps({"credHelpers": {auth_registry.host: "mdltest"}}))
    _round_trip(_open(auth_registry, unique_repo, env))
    assert log.read_text().splitlines()[0] == f"get {auth_registry.host}"
    # a helper that has nothing for the host means anonymous
    assert resolve_credentials("other.example:5000", dict(env, DOCKER_CONFIG=env["DOCKER_CONFIG"])) is None
    Path(env["DOCKER_CONFIG"], "config.json").write_text(json.dumps({"credsStore": "mdltest"}))
    assert resolve_credentials("other.example:5000", env) is None
    assert resolve_credentials(auth_registry.host, env) == Credentials(auth_registry.username, auth_registry.password)


def test_tls_without_ca_file(auth_registry, unique_repo, base_env):
    repo = _open(auth_registry, unique_repo, base_env, ca_file=None)
    with pytest.raises(TLSVerificationError) as err:
        repo.resolve("latest")
    assert err.value.kind == "tls" and auth_registry.host in err.value.message
    assert "--ca-file" in err.value.hint


def test_tls_ca_from_ssl_cert_file(auth_registry, unique_repo, base_env):
    env = dict(base_env, SSL_CERT_FILE=auth_registry.ca_file, MDL_REGISTRY_USERNAME=auth_registry.username,
               MDL_REGISTRY_PASSWORD=auth_registry.password)
    _round_trip(_open(auth_registry, unique_repo, env, ca_file=None))


def test_login_then_logout(auth_registry, unique_repo, base_env):
    config = Path(base_env["DOCKER_CONFIG"], "config.json")
    config.write_text(json.dumps({"auths": {"other.example": {"auth": "eDp5"}}, "psFormat": "table"}))
    where = login(auth_registry.host, auth_registry.username, auth_registry.password, base_env)
    assert where == str(config)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    doc = json.loads(config.read_text())
    assert doc["psFormat"] == "table" and "other.example" in doc["auths"]
    assert base64.b64decode(doc["auths"][auth_registry.host]["auth"]).decode() == \
        f"{auth_registry.username}:{auth_registry.password}"
    _round_trip(_open(auth_registry, unique_repo, base_env))
    assert logout(auth_registry.host, base_env) is True
    doc = json.loads(config.read_text())
    assert auth_registry.host not in doc["auths"] and "other.example" in doc["auths"]
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert resolve_credentials(auth_registry.host, base_env) is None
    assert logout(auth_registry.host, base_env) is False


def test_login_with_creds_store_uses_the_helper(base_env, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    stored = tmp_path / "stored.json"
    _helper(bindir, "mdlstore", f"""
import sys
data = sys.stdin.read()
if sys.argv[1] == "store":
    open({str(stored)!r}, "w").write(data)
elif sys.argv[1] == "erase":
    open({str(stored)!r}, "w").write("erased " + data)
""")
    env = dict(base_env, PATH=f"{bindir}{os.pathsep}{base_env['PATH']}")
    config = Path(env["DOCKER_CONFIG"], "config.json")
    config.write_text(json.dumps({"credsStore": "mdlstore"}))
    assert login("reg.example:5000", "u", "p", env) == "credential helper docker-credential-mdlstore"
    assert json.loads(stored.read_text()) == {"ServerURL": "reg.example:5000", "Username": "u", "Secret": "p"}
    assert json.loads(config.read_text()) == {"credsStore": "mdlstore"}  # no password in the file
    logout("reg.example:5000", env)
    assert stored.read_text() == "erased reg.example:5000"


def test_docker_hub_key(base_env):
    login("docker.io", "hubuser", "hubpw", base_env)
    doc = json.loads(Path(base_env["DOCKER_CONFIG"], "config.json").read_text())
    assert list(doc["auths"]) == ["https://index.docker.io/v1/"]
    for name in ("docker.io", "index.docker.io"):
        assert resolve_credentials(name, base_env) == Credentials("hubuser", "hubpw")


def test_env_credentials_come_first(base_env):
    login("reg.example", "fromfile", "pw", base_env)
    env = dict(base_env, MDL_REGISTRY_USERNAME="fromenv", MDL_REGISTRY_PASSWORD="envpw")
    assert resolve_credentials("reg.example", env) == Credentials("fromenv", "envpw")


# -- Bearer tokens (stand-in token service) ---------------------------------------------------------

@pytest.fixture
def token_setup():
    servers = []
    issued = []

    def token_service(h):
        query = parse_qs(urlsplit(h.path).query)
        issued.append((h.command, query, h.headers.get("Authorization")))
        n = len(issued)
        body = {"access_token": f"tok{n}", "expires_in": 300} if n % 2 else {"token": f"tok{n}"}
        reply(h, 200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    tokens = FaultServer(token_service)
    servers.append(tokens)

    def registry(h):
        if (h.headers.get("Authorization") or "").startswith("Bearer tok"):
            reply(h, 200, json.dumps({"name": "a/b", "tags": ["x"]}).encode())
        else:
            reply(h, 401, b"", {"WWW-Authenticate": f'Bearer realm="http://{tokens.host}/token",'
                                                    f'service="reg.test",scope="repository:a/b:pull"'})

    reg = FaultServer(registry)
    servers.append(reg)
    yield reg, tokens, issued
    for s in servers:
        s.close()


def test_bearer_token_flow_and_cache(token_setup):
    reg, tokens, issued = token_setup
    rec = Recorder()
    client = RegistryClient(reg.host, credentials=Credentials("u", "bearer-pw"), debug_log=rec)
    repo = RemoteRepository(client, "a/b")
    assert repo.tags() == ["x"]
    assert repo.tags() == ["x"]
    assert len(issued) == 1  # cached for the same scope
    method, query, authz = issued[0]
    assert method == "GET" and query["service"] == ["reg.test"] and query["scope"] == ["repository:a/b:pull"]
    assert query["offline_token"] == ["true"]
    assert authz == "Basic " + base64.b64encode(b"u:bearer-pw").decode()
    assert "bearer-pw" not in rec.text() and "tok1" not in rec.text()
    # a second scope gets its own token, accepted from `token`
    RemoteRepository(client, "a/c").tags()
    assert len(issued) == 2


def test_bearer_with_identity_token_uses_oauth2_post(token_setup):
    reg, tokens, issued = token_setup
    client = RegistryClient(reg.host, credentials=Credentials(identity_token="refresh-abc"))
    assert RemoteRepository(client, "a/b").tags() == ["x"]
    method, _query, authz = issued[0]
    assert method == "POST" and authz is None
    form = parse_qs(tokens.bodies[0].decode())
    assert form["grant_type"] == ["refresh_token"] and form["refresh_token"] == ["refresh-abc"]
    assert form["service"] == ["reg.test"] and form["scope"] == ["repository:a/b:pull"]


def test_bearer_anonymous(token_setup):
    reg, tokens, issued = token_setup
    client = RegistryClient(reg.host)
    assert RemoteRepository(client, "a/b").tags() == ["x"]
    assert issued[0][2] is None and "offline_token" not in issued[0][1]


def test_loopback_registry_serving_tls_is_detected(auth_registry, unique_repo, base_env):
    # 127.0.0.1 defaults to plain HTTP (as Docker's loopback rule); the TLS port's answer switches it.
    ref = parse_reference(f"{auth_registry.host}/{unique_repo}:latest")
    repo = open_repository(ref, env=base_env)
    assert repo.client.plain_http is True
    with pytest.raises(TLSVerificationError) as err:
        repo.resolve("latest")
    assert repo.client.plain_http is False and "--ca-file" in err.value.hint
    env = dict(base_env, SSL_CERT_FILE=auth_registry.ca_file, MDL_REGISTRY_USERNAME=auth_registry.username,
               MDL_REGISTRY_PASSWORD=auth_registry.password)
    _round_trip(open_repository(ref, env=env))
    # an explicit CA file means TLS from the start
    assert open_repository(ref, ca_file=auth_registry.ca_file, env=base_env).client.plain_http is False
