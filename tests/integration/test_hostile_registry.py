"""Hostile registry answers, through the fault proxy in front of the real registry (distribution 2.8.2),
driven with the real `mdl`: what `test_registry_faults.py` does not cover already.

- a manifest over 4 MiB, through `mdl pull` (the client-level refusal is in test_registry_faults.py);
- bodies longer than their Content-Length (manifest, config, layer), the extra bytes shaped as a forged
  HTTP response that a reused connection would take for the next answer;
- an upload `Location` on another host, and redirects to another host (same IP, another port: another
  origin) of a manifest GET, a blob GET and a manifest PUT, against a registry that wants credentials:
  the other host never sees `Authorization`, its own challenge is not answered, and the command fails
  cleanly (credentials go to the registry's origin only, SECURITY.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets

import pytest

from tests.conftest import assert_clean_error
from tests.fixtures.models import write_random_file, write_tiny_gguf
from tests.integration.faultproxy import Fault, FaultProxy
from tests.integration.registry import start_registry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# What a poisoned connection would hand to the next request: a complete, plausible HTTP answer.
FORGED = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 13\r\n"
          b"Docker-Content-Digest: sha256:" + b"0" * 64 + b"\r\n\r\nforged bytes!")


def summary(proc) -> dict:
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return next(e for e in lines if e.get("event") == "summary")


def home(mdl, name: str) -> dict:
    return {"MDL_HOME": str(mdl.home.parent / name)}


def assert_nothing_stored(mdl, env: dict) -> None:
    proc = mdl("verify", "--all", extra_env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(mdl("list", "--json", extra_env=env).stdout) == []
    blobs = os.path.join(env["MDL_HOME"], "blobs", "sha256")
    assert not os.path.isdir(blobs) or os.listdir(blobs) == []


def proxy_for(registry) -> FaultProxy:
    host, port = registry.host.rsplit(":", 1)
    return FaultProxy(host, int(port))


def via(proxy, target: str) -> str:
    return proxy.host + target[target.index("/"):]


@pytest.fixture
def proxy(registry):
    p = proxy_for(registry)
    yield p
    p.stop()


@pytest.fixture(scope="module")
def model(registry, tmp_path_factory) -> tuple[str, str, dict]:
    """A model of three layers (a 3 MiB DDUF, a license, a chat template) pushed once:
    (registry reference, digest, manifest)."""
    import subprocess
    import sys
    import zipfile

    tmp = tmp_path_factory.mktemp("hostile")
    payload = write_random_file(tmp / "payload.bin", 3 << 20, seed=51)
    dduf = tmp / "m.dduf"
    with zipfile.ZipFile(dduf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("model_index.json", '{"_class_name": "Pipeline"}')
        zf.write(payload, "unet/diffusion_pytorch_model.safetensors")
    (tmp / "LICENSE").write_text("Apache-2.0\n")
    (tmp / "template.jinja").write_text("{{ messages[0]['content'] }}")
    target = f"{registry.host}/test/hostile-{os.getpid()}:v1"
    env = os.environ | {"MDL_HOME": str(tmp / "home"), "DOCKER_CONFIG": str(tmp / "docker")}

    def run(*args):
        proc = subprocess.run([sys.executable, "-m", "mdl", *args], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    digest = run("package", "--dduf", str(dduf), "--license", str(tmp / "LICENSE"), "--chat-template",
                 str(tmp / "template.jinja"), "--push", "-q", target).strip().rsplit("@", 1)[1]
    return target, digest, json.loads(run("inspect", "--manifest", target))


# ---------------------------------------------------------------------------------------------
# a manifest over 4 MiB


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "until-close"])
def test_pull_refuses_a_manifest_over_4_mib(mdl, proxy, model, declared):
    target, _, _ = model
    body = b'{"schemaVersion": 2, "pad": "' + b" " * (5 << 20) + b'"}'
    headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": "sha256:" + hashlib.sha256(body).hexdigest()}
    if not declared:
        headers["Content-Length"] = None  # no length: the body runs until the connection closes
    fault = proxy.add(Fault("GET", "/manifests/", status=200, body=body, headers=headers, times=10))
    env = home(mdl, f"big-{declared}")
    proc = mdl("pull", via(proxy, target), extra_env=env)
    assert fault.hits == 1  # refused at once, not retried
    got = f"{len(body)} bytes" if declared else "more bytes"
    assert_clean_error(proc, 1, "is too large", got, "over the 4194304-byte limit")
    assert_nothing_stored(mdl, env)


# ---------------------------------------------------------------------------------------------
# bodies longer than their Content-Length


@pytest.mark.parametrize("tail", ["short", "long"])
@pytest.mark.parametrize("what", ["manifest", "config", "layers"])
def test_pull_ignores_bytes_past_content_length(mdl, proxy, model, what, tail):
    """Every answer of the kind carries a forged HTTP response after its body: alone (it fits in the read
    buffer of the answer before it), or followed by 256 KiB more (it stays in the socket, so the client
    must not reuse the connection). The pull takes exactly the declared bytes, never reads the forgery
    as the answer to a later request, and stores the model it asked for."""
    target, digest, man = model
    extra = FORGED if tail == "short" else FORGED + b"HTTP/1.1 200 OK\r\n" * (256 << 10 >> 4)
    if what == "manifest":
        faults = [proxy.add(Fault("GET", "/manifests/", append=extra, times=100))]
    elif what == "config":
        faults = [proxy.add(Fault("GET", f"/blobs/{man['config']['digest']}", append=extra, times=100))]
    else:
        faults = [proxy.add(Fault("GET", f"/blobs/{d['digest']}", append=extra, times=100)) for d in man["layers"]]
    env = home(mdl, f"long-{what}-{tail}")
    res = summary(mdl("pull", "--json", "--concurrency", "1", via(proxy, target), extra_env=env))
    assert all(f.hits == 1 for f in faults)  # each answered once: nothing had to be fetched again
    assert res["digest"] == digest and res["fetched"] == res["size"]
    proc = mdl("verify", "--all", extra_env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------
# another host: upload Location, redirects


@pytest.fixture(scope="module")
def auth_plain(tmp_path_factory):
    """A registry that wants credentials (htpasswd), on plain HTTP so the proxy can answer for it."""
    password = "pw-" + secrets.token_hex(12)
    reg = start_registry(tmp_path_factory.mktemp("auth-plain"), htpasswd=("mdltester", password))
    yield reg
    reg.stop()


@pytest.fixture
def hosts(auth_plain):
    """(the registry as mdl sees it, another host): two proxies in front of the same registry."""
    a, b = proxy_for(auth_plain), proxy_for(auth_plain)
    yield a, b
    a.stop()
    b.stop()


def creds(reg) -> dict:
    return {"MDL_REGISTRY_USERNAME": reg.username, "MDL_REGISTRY_PASSWORD": reg.password}


@pytest.fixture(scope="module")
def auth_model(auth_plain, tmp_path_factory) -> tuple[str, str, dict]:
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("auth-model")
    gguf = write_tiny_gguf(tmp / "a.gguf", seed=52)[0]
    target = f"{auth_plain.host}/test/creds-{os.getpid()}:v1"
    env = os.environ | {"MDL_HOME": str(tmp / "home"), "DOCKER_CONFIG": str(tmp / "docker")} | creds(auth_plain)

    def run(*args):
        proc = subprocess.run([sys.executable, "-m", "mdl", *args], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    digest = run("package", "--gguf", str(gguf), "--push", "-q", target).strip().rsplit("@", 1)[1]
    return target, digest, json.loads(run("inspect", "--manifest", target))


def assert_other_host_got_no_credentials(other: FaultProxy, reg) -> None:
    assert other.requests, "the other host was never asked: the test did not test anything"
    for (method, target), headers in zip(other.requests, other.headers):
        assert "authorization" not in headers, (method, target)
        assert reg.password not in json.dumps(headers)


def test_control_the_proxied_registry_works_with_credentials(mdl, auth_plain, hosts, auth_model):
    """Without faults, pull and push through the proxy succeed: the failures below are the faults'."""
    a, _ = hosts
    target, digest, _ = auth_model
    env = home(mdl, "control") | creds(auth_plain)
    assert summary(mdl("pull", "--json", via(a, target), extra_env=env))["digest"] == digest
    assert summary(mdl("push", "--json", via(a, target), via(a, target) + "-copy", extra_env=env))["digest"] == digest
    assert any("authorization" in h for h in a.headers)


def test_upload_location_on_another_host_gets_no_credentials(mdl, auth_plain, hosts, tmp_path):
    a, other = hosts
    gguf = write_tiny_gguf(tmp_path / "up.gguf", seed=53)[0]
    remote = f"{a.host}/test/location-{os.getpid()}:v1"
    env = creds(auth_plain)
    assert mdl("package", "--gguf", str(gguf), remote).returncode == 0
    repo = remote.split("/", 1)[1].split(":")[0]
    fault = a.add(Fault("POST", "/blobs/uploads/", status=202, body=b"", times=100, headers={
        "Location": f"http://{other.host}/v2/{repo}/blobs/uploads/{secrets.token_hex(8)}",
        "Docker-Upload-UUID": "x"}))
    proc = mdl("push", remote, extra_env=env)
    assert fault.hits >= 1
    assert_other_host_got_no_credentials(other, auth_plain)
    assert_clean_error(proc, 1, other.host, "credentials")
    assert auth_plain.password not in proc.stdout + proc.stderr


@pytest.mark.parametrize("command,method,path", [
    ("pull", "GET", "/manifests/"),
    ("pull", "GET", "/blobs/"),
    ("push", "PUT", "/manifests/"),
])
def test_redirect_to_another_host_gets_no_credentials(mdl, auth_plain, hosts, auth_model, command, method, path):
    """The registry redirects (307) to the same path on another host, which asks for credentials
    itself (it is the same registry behind another port): mdl neither forwards nor offers them."""
    a, other = hosts
    target, _, man = auth_model
    name_and_ref = target.split("/", 1)[1]
    repo = name_and_ref.split(":")[0]
    if path == "/blobs/":
        path = f"/blobs/{man['layers'][0]['digest']}"
        location = f"http://{other.host}/v2/{repo}{path}"
    elif method == "GET":
        location = f"http://{other.host}/v2/{repo}/manifests/v1"
    else:
        location = f"http://{other.host}/v2/{repo}/manifests/v2"
    fault = a.add(Fault(method, path, status=307, body=b"", times=100, headers={"Location": location}))
    env = home(mdl, f"redirect-{command}-{method}") | creds(auth_plain)
    if command == "pull":
        proc = mdl("pull", via(a, target), extra_env=env)
    else:
        assert mdl("pull", target, extra_env=env).returncode == 0
        proc = mdl("push", target, via(a, target).replace(":v1", ":v2"), extra_env=env)
    assert fault.hits >= 1
    assert_other_host_got_no_credentials(other, auth_plain)
    assert_clean_error(proc, 1, other.host, "credentials")
    assert auth_plain.password not in proc.stdout + proc.stderr
    if command == "pull":
        assert_nothing_stored(mdl, env)
