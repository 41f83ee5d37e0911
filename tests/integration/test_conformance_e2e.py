"""`mdl conformance e2e` as a user runs it: a subprocess against the real registries on 127.0.0.1,
Debian's distribution 2.8.2 and distribution v3.1.2 (`registry-v3`, built by tests/interop/build_peers.sh;
missing, its tests fail).

A full run takes ~2 s (a ~0.5 MB model, two formats); the module runs it three times per registry (plain
HTTP with a JSON report, plain HTTP with --keep and human output, TLS with htpasswd auth) and four failing
runs per registry that stop early (no credentials twice, a read-only registry), a bad target and one
without llama.cpp.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import requests

pytest.importorskip("llama_cpp")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from mdl.spec import mediatypes as mt  # noqa: E402
from tests.integration.registry import FLAVORS, start_registry  # noqa: E402

FORMATS = ("docker", "cncf")
STEPS = {  # step name -> the formats it runs for (None: once, for both)
    "registry": [None], "generate": [None], "direct": [None], "serve": [None],
    "package": list(FORMATS), "push": list(FORMATS), "pull": list(FORMATS), "verify": list(FORMATS),
    "chat": list(FORMATS), "compare": list(FORMATS), "delete": list(FORMATS),
}
TIMEOUT = 120


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MDL_", "REGISTRY_")) and k not in ("DOCKER_CONFIG", "SSL_CERT_FILE")}
    env.update(MDL_HOME=str(tmp / "home"), DOCKER_CONFIG=str(tmp / "docker"), **extra)
    return env


def _e2e(tmp: Path, target: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mdl", "conformance", "e2e", target, *args],
                          env=env or _env(tmp), capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL)


def _registry_get(registry, path: str, **kw) -> requests.Response:
    s = requests.Session()
    s.trust_env = False
    return s.get(registry.url + path, timeout=10, **kw)


def _tags(registry, repository: str) -> list[str]:
    resp = _registry_get(registry, f"/v2/{repository}/tags/list")
    if resp.status_code == 404:
        return []
    resp.raise_for_status()
    return resp.json().get("tags") or []


def _manifest_status(registry, repository: str, reference: str) -> int:
    return _registry_get(registry, f"/v2/{repository}/manifests/{reference}",
                         headers={"Accept": mt.OCI_MANIFEST}).status_code


@pytest.fixture(scope="module", params=FLAVORS)
def registry(request, tmp_path_factory):
    """Each registry in turn (overrides the conftest's 2.8.2 one for this module)."""
    reg = start_registry(tmp_path_factory.mktemp(f"registry-{request.param}"), flavor=request.param)
    yield reg
    reg.stop()


@pytest.fixture(scope="module", params=FLAVORS)
def auth_registry(request, tmp_path_factory):
    """Each registry in turn behind htpasswd auth and TLS."""
    reg = start_registry(tmp_path_factory.mktemp(f"auth-registry-{request.param}"), flavor=request.param,
                         htpasswd=("mdltester", "pw-" + secrets.token_hex(12)), tls=True)
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def run(registry, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    proc = _e2e(tmp, f"{registry.host}/ns", "--json")
    return proc, tmp


def test_e2e_passes_for_both_formats(run):
    proc, _ = run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True
    assert set(report) >= {"registry", "repository", "ok", "seconds", "counts", "steps", "artifacts", "kept"}
    ran: dict[str, list] = {}
    for step in report["steps"]:
        assert set(step) == {"name", "format", "status", "seconds", "detail"}, step
        assert step["status"] == "pass", step
        assert isinstance(step["seconds"], (int, float)) and step["seconds"] >= 0
        ran.setdefault(step["name"], []).append(step["format"])
    assert ran == STEPS
    assert report["counts"] == {"pass": len(report["steps"]), "fail": 0, "skip": 0}
    assert report["kept"] == []
    assert report["seconds"] < 60


def test_e2e_answers_identically_and_reports_what_it_pushed(run, registry):
    proc, _ = run
    report = json.loads(proc.stdout)
    steps = {(s["name"], s["format"]): s for s in report["steps"]}
    for fmt in FORMATS:
        assert steps[("compare", fmt)]["detail"] == "identical to llama.cpp on the original file"
        assert steps[("chat", fmt)]["detail"] == steps[("direct", None)]["detail"]
    assert report["registry"] == registry.host
    assert re.fullmatch(r"ns/mdl-e2e-[0-9a-f]{8}", report["repository"])
    assert set(report["artifacts"]) == set(FORMATS)
    for fmt, artifact in report["artifacts"].items():
        assert re.fullmatch(rf"{re.escape(registry.host)}/{report['repository']}:{fmt}@sha256:[0-9a-f]{{64}}",
                            artifact)
    assert report["artifacts"]["docker"] != report["artifacts"]["cncf"]


def test_e2e_leaves_nothing_behind(run, registry):
    proc, tmp = run
    report = json.loads(proc.stdout)
    repository = report["repository"]
    assert _tags(registry, repository) == []
    for artifact in report["artifacts"].values():
        name, digest = artifact.split("@")
        tag = name.rsplit(":", 1)[1]
        assert _manifest_status(registry, repository, digest) == 404
        assert _manifest_status(registry, repository, tag) == 404
    # Every blob pushed was deleted too: the repository links no layer, config or manifest any more.
    links = sorted(str(p.relative_to(registry.root)) for p in
                   (registry.root / "docker" / "registry" / "v2" / "repositories" / repository).rglob("link"))
    assert links == [], links
    deletes = {s["format"]: s["detail"] for s in report["steps"] if s["name"] == "delete"}
    # The config goes with the docker model; the GGUF layer, shared, with the cncf one.
    assert deletes["docker"].endswith("; 1 blob(s) deleted, 1 kept for the other format")
    assert deletes["cncf"].endswith("; 2 blob(s) deleted")
    assert report["left_behind"] == []
    assert report["not_removable"][0] == (f"repository {repository}: still listed in /v2/_catalog (the API has no "
                                          "repository delete)")
    assert report["not_removable"][1].startswith("the bytes of the 3 blob(s) pushed:")
    # The user's store (MDL_HOME) is never touched.
    assert not (tmp / "home").exists() or not any((tmp / "home").iterdir())


def test_e2e_keep_leaves_the_models_and_prints_one_line_per_step(registry, tmp_path):
    proc = _e2e(tmp_path, f"{registry.host}/keep", "--keep")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    summary = lines[-1]
    m = re.fullmatch(r"ok: 16 passed, 0 failed, 2 skipped in [0-9.]+s \(" + re.escape(registry.host)
                     + r"/(keep/mdl-e2e-[0-9a-f]{8})\)", summary)
    assert m, summary
    repository = m.group(1)
    assert len(lines) == 19
    assert [line.split()[0] for line in lines[:-3]] == ["PASS"] * 16
    assert lines[-3].startswith("SKIP  delete (docker)") and "--keep leaves" in lines[-3]
    assert lines[-2].startswith("SKIP  delete (cncf)")
    assert sorted(_tags(registry, repository)) == ["cncf", "docker"]
    s = requests.Session()
    s.trust_env = False
    for tag in FORMATS:
        digest = _registry_get(registry, f"/v2/{repository}/manifests/{tag}",
                               headers={"Accept": mt.OCI_MANIFEST}).headers["Docker-Content-Digest"]
        assert s.delete(f"{registry.url}/v2/{repository}/manifests/{digest}", timeout=10).status_code == 202


def test_e2e_over_tls_with_credentials(auth_registry, tmp_path):
    env = _env(tmp_path, MDL_REGISTRY_USERNAME=auth_registry.username, MDL_REGISTRY_PASSWORD=auth_registry.password)
    proc = _e2e(tmp_path, f"{auth_registry.host}/secure", "--ca-file", auth_registry.ca_file, "--json", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] and report["counts"]["fail"] == report["counts"]["skip"] == 0
    assert report["steps"][0]["detail"] == f"{auth_registry.host} answers over HTTPS"


def test_e2e_without_credentials_fails_at_the_registry_step(auth_registry, tmp_path):
    proc = _e2e(tmp_path, f"{auth_registry.host}/secure", "--ca-file", auth_registry.ca_file, "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is False
    first, rest = report["steps"][0], report["steps"][1:]
    assert (first["name"], first["status"], first["error"]["kind"]) == ("registry", "fail", "auth")
    assert "mdl login" in first["error"]["hint"]
    assert rest and all(s["status"] == "skip" for s in rest)
    assert "delete" not in {s["name"] for s in rest}  # nothing was pushed, so nothing to delete
    assert report["counts"] == {"pass": 0, "fail": 1, "skip": len(rest)}
    assert report["artifacts"] == {} and report["kept"] == []


def test_e2e_human_output_names_the_failure_and_its_hint(auth_registry, tmp_path):
    proc = _e2e(tmp_path, f"{auth_registry.host}/secure", "--ca-file", auth_registry.ca_file)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("FAIL  registry") and "authentication required" in lines[0]
    assert lines[1].strip().startswith("hint: run `mdl login")
    assert lines[-1].startswith("FAILED: 0 passed, 1 failed, ")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_e2e_on_a_read_only_registry_fails_at_push_and_still_cleans_up(tmp_path, flavor):
    reg = start_registry(tmp_path / "registry", readonly=True, flavor=flavor)
    try:
        proc = _e2e(tmp_path, f"{reg.host}/ro", "--json")
    finally:
        reg.stop()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    status = {(s["name"], s["format"]): s for s in report["steps"]}
    for name in ("registry", "generate", "direct"):
        assert status[(name, None)]["status"] == "pass"
    assert status[("serve", None)]["status"] == "skip"
    for fmt in FORMATS:
        push = status[("push", fmt)]
        assert (push["status"], push["error"]["kind"]) == ("fail", "registry")
        assert "HTTP 405" in push["error"]["message"]
        assert status[("package", fmt)]["status"] == "pass"
        for name in ("pull", "verify", "chat", "compare"):
            assert status[(name, fmt)]["status"] == "skip"
        # The push was attempted, so cleanup looks: the manifest never arrived, nothing to delete.
        assert status[("delete", fmt)]["status"] == "pass"
        assert "nothing to delete" in status[("delete", fmt)]["detail"]
    assert report["counts"]["fail"] == 2


def test_e2e_refuses_a_target_without_a_registry(tmp_path):
    proc = _e2e(tmp_path, "just-a-name")
    assert proc.returncode == 2
    assert "does not start with a registry host" in proc.stderr


def test_e2e_without_the_serve_extra(tmp_path):
    code = ("import sys; sys.modules['llama_cpp'] = None; from mdl.cli.app import main; "
            "sys.exit(main(['conformance', 'e2e', '127.0.0.1:1/ns']))")
    proc = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 1
    assert "llama-cpp-python" in proc.stderr and "mdl[serve]" in proc.stderr
