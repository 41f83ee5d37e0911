"""Pulls and pushes through a fault-injecting TCP proxy (`faultproxy.py`) in front of the real registry:
connections cut mid-body, 5xx and 429 answers, stalls, a flipped byte. Each run either completes (retry,
resume) or fails cleanly naming the cause; the store holds only complete, verified models."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import assert_clean_error
from tests.fixtures.models import write_large_dduf, write_tiny_gguf
from tests.integration.faultproxy import Fault, FaultProxy

BIG = 12 << 20


def summary(proc) -> dict:
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return next(e for e in lines if e.get("event") == "summary")


def home(mdl, name: str) -> dict:
    return {"MDL_HOME": str(mdl.home.parent / name)}


def blobs_in(h: dict) -> list[Path]:
    d = Path(h["MDL_HOME"]) / "blobs" / "sha256"
    return sorted(d.iterdir()) if d.exists() else []


def models_in(mdl, h: dict) -> list:
    proc = mdl("list", "--json", extra_env=h)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def assert_store_verified(mdl, h: dict) -> None:
    proc = mdl("verify", "--all", extra_env=h)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture
def proxy(registry):
    host, port = registry.host.rsplit(":", 1)
    p = FaultProxy(host, int(port))
    yield p
    p.stop()


def _pushed(mdl, registry, repo: str, model: Path, flag: str) -> tuple[str, str, dict]:
    """Package and push directly to the registry; (tag in the registry, manifest digest, manifest)."""
    target = f"{registry.host}/{repo}:v1"
    proc = mdl("package", flag, str(model), "--push", "-q", target)
    assert proc.returncode == 0, proc.stderr
    man = json.loads(mdl("inspect", "--manifest", target).stdout)
    return target, proc.stdout.strip().split("@")[1], man


@pytest.fixture(scope="module")
def shared(registry, tmp_path_factory) -> tuple[str, str, dict]:
    """A tiny GGUF model pushed once for the pull tests that leave the registry alone:
    (tag in the registry, manifest digest, manifest)."""
    import os
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("shared")
    env = os.environ | {"MDL_HOME": str(tmp / "home"), "DOCKER_CONFIG": str(tmp / "docker")}
    gguf = write_tiny_gguf(tmp / "shared.gguf", seed=20)[0]
    target = f"{registry.host}/test/faults-shared-{os.getpid()}:v1"

    def run(*args):
        proc = subprocess.run([sys.executable, "-m", "mdl", *args], capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    digest = run("package", "--gguf", str(gguf), "--push", "-q", target).strip().split("@")[1]
    return target, digest, json.loads(run("inspect", "--manifest", target))


def via(proxy, target: str) -> str:
    return proxy.host + target[target.index("/"):]


def test_pull_with_connections_cut_mid_blob_resumes(mdl, registry, proxy, unique_repo, tmp_path):
    big = write_large_dduf(tmp_path / "big.dduf", BIG, seed=11)
    target, digest, man = _pushed(mdl, registry, unique_repo, big, "--dduf")
    layer = max(man["layers"], key=lambda d: d["size"])["digest"]
    cut = proxy.add(Fault("GET", f"/blobs/{layer}", cut_after=3 << 20, times=3))
    h = home(mdl, "cut")
    res = summary(mdl("pull", "--json", via(proxy, target), extra_env=h))
    assert cut.hits == 3
    assert res["digest"] == digest
    assert res["fetched"] < 2 * res["size"]
    ranged = [t for m, t in proxy.requests if m == "GET" and layer in t]
    assert len(ranged) == 4
    assert mdl("verify", via(proxy, target), extra_env=h).returncode == 0
    assert list((Path(h["MDL_HOME"]) / "ingest").glob("*")) == []
    assert_store_verified(mdl, h)


def test_pull_through_transient_errors_completes(mdl, proxy, shared):
    target, digest, _ = shared
    fm = proxy.add(Fault("GET", "/manifests/", status=503, times=2))
    fb = proxy.add(Fault("GET", "/blobs/", status=502, times=2))
    h = home(mdl, "t")
    res = summary(mdl("pull", "--json", via(proxy, target), extra_env=h))
    assert (fm.hits, fb.hits) == (2, 2)
    assert res["digest"] == digest and res["fetched"] == res["size"]
    assert_store_verified(mdl, h)


def test_pull_honours_retry_after_on_429(mdl, proxy, shared):
    target, digest, _ = shared
    f = proxy.add(Fault("GET", "/manifests/", status=429, headers={"Retry-After": "1"}, times=1))
    h = home(mdl, "r")
    start = time.monotonic()
    res = summary(mdl("pull", "--json", via(proxy, target), extra_env=h))
    assert time.monotonic() - start >= 1.0
    assert f.hits == 1 and res["digest"] == digest
    assert_store_verified(mdl, h)


def test_persistent_500_fails_cleanly_and_keeps_nothing(mdl, proxy, shared):
    target, _, man = shared
    layer = man["layers"][0]["digest"]
    proxy.add(Fault("GET", f"/blobs/{layer}", status=500, times=1000))
    h = home(mdl, "p")
    start = time.monotonic()
    proc = mdl("pull", via(proxy, target), extra_env=h)
    assert time.monotonic() - start < 60
    assert_clean_error(proc, 1, proxy.host, "500")
    assert models_in(mdl, h) == []
    assert blobs_in(h) == []
    assert_store_verified(mdl, h)


def test_flipped_byte_in_a_blob_is_refused(mdl, proxy, shared):
    target, _, man = shared
    layer = man["layers"][0]
    f = proxy.add(Fault("GET", f"/blobs/{layer['digest']}", flip_at=layer["size"] // 2, times=1000))
    h = home(mdl, "f")
    proc = mdl("pull", via(proxy, target), extra_env=h)
    assert f.hits >= 1
    assert_clean_error(proc, 1, layer["digest"])
    assert models_in(mdl, h) == []
    assert blobs_in(h) == []
    assert_store_verified(mdl, h)


def _pull_back(mdl, target: str, name: str) -> dict:
    h = home(mdl, name)
    res = summary(mdl("pull", "--json", target, extra_env=h))
    assert mdl("verify", target, extra_env=h).returncode == 0
    assert_store_verified(mdl, h)
    return res


def test_push_with_the_upload_cut_retries_or_fails_cleanly(mdl, registry, proxy, unique_repo, tmp_path):
    big = write_large_dduf(tmp_path / "up.dduf", 4 << 20, seed=31)
    local = "ai/up:v1"
    assert mdl("package", "--dduf", str(big), local).returncode == 0
    digest = json.loads(mdl("inspect", "--json", local).stdout)["id"]
    remote = f"{proxy.host}/{unique_repo}:v1"
    f = proxy.add(Fault("PATCH", "/blobs/uploads/", cut_request_after=1 << 20, times=1))
    assert mdl("tag", local, remote).returncode == 0
    proc = mdl("push", "--json", remote)
    assert f.hits == 1
    if proc.returncode == 0:
        assert summary(proc)["digest"] == digest
        direct = f"{registry.host}/{unique_repo}:v1"
        assert _pull_back(mdl, direct, "pushcut")["digest"] == digest
    else:
        assert_clean_error(proc, 1, proxy.host)
    assert_store_verified(mdl, {"MDL_HOME": str(mdl.home)})


def test_push_with_503_on_the_first_digest_put_completes(mdl, registry, proxy, unique_repo, tmp_path):
    gguf = write_tiny_gguf(tmp_path / "p5.gguf", seed=32)[0]
    remote = f"{proxy.host}/{unique_repo}:v1"
    assert mdl("package", "--gguf", str(gguf), remote).returncode == 0
    digest = json.loads(mdl("inspect", "--json", remote).stdout)["id"]
    f = proxy.add(Fault("PUT", r"/blobs/uploads/.*[?&]digest=", status=503, times=1))
    res = summary(mdl("push", "--json", remote))
    assert f.hits == 1
    assert res["digest"] == digest
    assert _pull_back(mdl, f"{registry.host}/{unique_repo}:v1", "p503")["digest"] == digest


def test_stall_longer_than_the_read_timeout_fails_in_bounded_time(proxy, shared, tmp_path, mdl):
    from mdl.store import LayoutStore
    from mdl.ops.pull import pull
    from mdl.reference import parse_reference
    from mdl.registry.open import open_repository
    from mdl.registry.errors import RegistryUnreachableError

    target = shared[0]
    stall = proxy.add(Fault("GET", "/blobs/", stall=4.0, times=1000))
    ref = parse_reference(via(proxy, target))
    repo = open_repository(ref)
    repo.client.read_timeout = 0.5
    repo.client.connect_timeout = 1.0
    store = LayoutStore(tmp_path / "stall-home")
    start = time.monotonic()
    with pytest.raises(RegistryUnreachableError) as e:
        pull(store, repo, ref, concurrency=1)
    assert time.monotonic() - start < 20
    assert stall.hits >= 1
    assert proxy.host in str(e.value) and "0.5 s" in str(e.value)
    repo.client.close()
    h = {"MDL_HOME": str(tmp_path / "stall-home")}
    assert models_in(mdl, h) == []
    assert_store_verified(mdl, h)


def test_pull_with_the_manifest_and_config_answers_cut_completes(mdl, proxy, shared):
    target, digest, man = shared
    fm = proxy.add(Fault("GET", "/manifests/", cut_after=10, times=1))
    fc = proxy.add(Fault("GET", f"/blobs/{man['config']['digest']}", cut_after=0, times=1))
    h = home(mdl, "m")
    res = summary(mdl("pull", "--json", via(proxy, target), extra_env=h))
    assert (fm.hits, fc.hits) == (1, 1)
    assert res["digest"] == digest and res["fetched"] == res["size"]
    assert_store_verified(mdl, h)


def test_pull_with_every_manifest_answer_cut_fails_cleanly(mdl, proxy, shared):
    target, _, _ = shared
    f = proxy.add(Fault("GET", "/manifests/", cut_after=10, times=1000))
    h = home(mdl, "mc")
    proc = mdl("pull", via(proxy, target), extra_env=h)
    assert f.hits == 3
    assert_clean_error(proc, 1, proxy.host, "connection lost while reading manifest")
    assert models_in(mdl, h) == [] and blobs_in(h) == []
    assert_store_verified(mdl, h)
