"""`mdl push`, `mdl pull` and `mdl package --push` against the real registry (distribution 2.8.2)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import assert_clean_error
from tests.fixtures.models import write_large_dduf, write_tiny_gguf


def summary(proc) -> dict:
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return next(e for e in lines if e.get("event") == "summary")


def other_home(mdl, name: str) -> dict:
    return {"MDL_HOME": str(mdl.home.parent / name)}


def blobs_in(home: Path) -> list[Path]:
    d = home / "blobs" / "sha256"
    return sorted(d.iterdir()) if d.exists() else []


@pytest.fixture
def gguf(tmp_path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny.gguf")[0]


def test_package_push_then_pull_into_a_fresh_store(mdl, registry, unique_repo, gguf):
    target = f"{registry.host}/{unique_repo}:v1"
    pushed = mdl("package", "--gguf", str(gguf), "--push", target)
    assert pushed.returncode == 0, pushed.stderr
    line = pushed.stdout.strip().splitlines()[-1]
    name, digest = line.split("@")
    assert name == f"{registry.host}/{unique_repo}" and digest.startswith("sha256:")

    fresh = other_home(mdl, "fresh")
    got = summary(mdl("pull", "--json", target, extra_env=fresh))
    assert got["digest"] == digest and got["fetched"] == got["size"]
    assert mdl("verify", target, extra_env=fresh).returncode == 0
    listing = json.loads(mdl("list", "--json", extra_env=fresh).stdout)
    assert listing[0]["tags"] == [f"{registry.host}/{unique_repo}:v1"]

    again = summary(mdl("pull", "--json", target, extra_env=fresh))
    assert again["fetched"] == 0 and set(again["blobs"].values()) == {"exists"}


def test_pushing_twice_sends_nothing_and_other_repos_mount(mdl, registry, unique_repo, gguf):
    target = f"{registry.host}/{unique_repo}:v1"
    assert mdl("package", "--gguf", str(gguf), target).returncode == 0
    first = summary(mdl("push", "--json", target))
    assert first["sent"] == first["size"] and set(first["blobs"].values()) == {"sent"}
    second = summary(mdl("push", "--json", target))
    assert second["sent"] == 0 and set(second["blobs"].values()) == {"exists"}
    other = f"{registry.host}/{unique_repo}-copy:v1"
    third = summary(mdl("push", "--json", target, other))
    assert third["sent"] == 0 and set(third["blobs"].values()) == {"mounted"}
    assert summary(mdl("pull", "--json", other, extra_env=other_home(mdl, "s2")))["digest"] == first["digest"]


def test_chunked_push(mdl, registry, unique_repo, tmp_path):
    big = write_tiny_gguf(tmp_path / "m.gguf")[0]
    target = f"{registry.host}/{unique_repo}:chunked"
    assert mdl("package", "--gguf", str(big), target).returncode == 0
    res = summary(mdl("push", "--json", "--chunk-size", "1", target))
    assert res["sent"] == res["size"]
    assert mdl("pull", target, extra_env=other_home(mdl, "c")).returncode == 0


def test_modelpack_artifact_round_trip(mdl, registry, unique_repo, gguf):
    target = f"{registry.host}/{unique_repo}:cncf"
    pushed = mdl("package", "--format", "cncf", "--gguf", str(gguf), "--push", "-q", target)
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed.stdout.strip().split("@")[1]
    fresh = other_home(mdl, "mp")
    assert summary(mdl("pull", "--json", target, extra_env=fresh))["digest"] == digest
    man = json.loads(mdl("inspect", "--manifest", target, extra_env=fresh).stdout)
    assert man["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"


def test_a_blob_altered_in_the_registry_is_refused_and_nothing_is_kept(mdl, registry, unique_repo, tmp_path):
    # a model of its own: the registry stores each blob once, and this test corrupts it
    gguf = write_tiny_gguf(tmp_path / "own.gguf", seed=99)[0]
    target = f"{registry.host}/{unique_repo}:v1"
    assert mdl("package", "--gguf", str(gguf), "--push", target).returncode == 0
    man = json.loads(mdl("inspect", "--manifest", target).stdout)
    layer = man["layers"][0]["digest"]
    data = registry.blob_path(layer)
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    fresh = other_home(mdl, "corrupt")
    proc = mdl("pull", target, extra_env=fresh)
    assert_clean_error(proc, 1, layer)
    assert json.loads(mdl("list", "--json", extra_env=fresh).stdout) == []
    assert blobs_in(Path(fresh["MDL_HOME"])) == []


@pytest.mark.parametrize("suffix,fragment", [(":absent", "not found"), ("-missing-repo:v1", "not found")])
def test_missing_tag_or_repository(mdl, registry, unique_repo, gguf, suffix, fragment):
    assert mdl("package", "--gguf", str(gguf), "--push", f"{registry.host}/{unique_repo}:v1").returncode == 0
    assert_clean_error(mdl("pull", f"{registry.host}/{unique_repo}{suffix}"), 1, fragment)


def test_invalid_reference(mdl, registry):
    assert_clean_error(mdl("pull", f"{registry.host}/Bad Repo!:v1"), 2, "invalid reference")


def test_unreachable_registry_fails_fast(mdl):
    from tests.integration.registry import free_port

    start = time.monotonic()
    proc = mdl("pull", f"127.0.0.1:{free_port()}/org/model:v1")
    assert_clean_error(proc, 1, "127.0.0.1")
    assert time.monotonic() - start < 15  # the connect timeout (10 s) bounds the retries, plus start-up


def _push_raw(registry, repo: str, config_type: str, layer_type: str, tag: str) -> None:
    """Push an artifact by hand (not through mdl), as another tool would."""
    import hashlib

    import requests

    base = f"http://{registry.host}/v2/{repo}"

    def blob(data: bytes) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        loc = requests.post(f"{base}/blobs/uploads/").headers["Location"]
        sep = "&" if "?" in loc else "?"
        url = loc if loc.startswith("http") else f"http://{registry.host}{loc}"
        assert requests.put(f"{url}{sep}digest={digest}", data=data).status_code == 201
        return {"digest": digest, "size": len(data)}

    cfg = blob(b'{"config":{"format":"gguf"},"descriptor":{},"rootfs":{"type":"rootfs","diff_ids":[]}}')
    lay = blob(b"weights")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": config_type, **cfg}, "layers": [{"mediaType": layer_type, **lay}]}
    r = requests.put(f"{base}/manifests/{tag}", data=json.dumps(manifest),
                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text


def test_unknown_config_type_is_refused(mdl, registry, unique_repo):
    _push_raw(registry, unique_repo, "application/vnd.oci.image.config.v1+json",
              "application/vnd.oci.image.layer.v1.tar", "image")
    proc = mdl("pull", f"{registry.host}/{unique_repo}:image")
    assert_clean_error(proc, 1, "not a model artifact", "application/vnd.oci.image.config.v1+json")
    assert blobs_in(mdl.home) == []


def test_manifest_failing_the_schema_is_refused(mdl, registry, unique_repo):
    _push_raw(registry, unique_repo, "application/vnd.docker.ai.model.config.v0.1+json",
              "application/vnd.docker.ai.gguf.v3.lora", "draft")
    proc = mdl("pull", f"{registry.host}/{unique_repo}:draft")
    assert_clean_error(proc, 1, "fails its schema", "$.layers[0]")
    assert blobs_in(mdl.home) == []


def test_interrupted_pull_resumes(mdl, registry, unique_repo, tmp_path):
    """Kill a pull half-way (SIGKILL), run it again: it resumes from the partial file and verifies."""
    big = tmp_path / "big.dduf"
    write_large_dduf(big, 96 << 20)
    target = f"{registry.host}/{unique_repo}:big"
    assert mdl("package", "--dduf", str(big), "--push", target).returncode == 0
    fresh = other_home(mdl, "resume")
    ingest = Path(fresh["MDL_HOME"]) / "ingest"
    proc = subprocess.Popen([sys.executable, "-m", "mdl", "pull", "--concurrency", "1", target],
                            env=mdl.env | fresh, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    partial = 0
    while time.monotonic() < deadline and proc.poll() is None:
        sizes = [p.stat().st_size for p in ingest.glob("*")] if ingest.exists() else []
        partial = max(sizes, default=0)
        if partial > 8 << 20:
            break
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.skip("the pull finished before it could be interrupted")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    res = summary(mdl("pull", "--json", target, extra_env=fresh))
    assert res["fetched"] < res["size"]  # resumed: the bytes already there were not fetched again
    assert mdl("verify", target, extra_env=fresh).returncode == 0
    assert list(ingest.glob("*")) == []


def test_auth_registry_login_push_pull_over_tls(mdl, auth_registry, unique_repo, gguf):
    host = auth_registry.host
    target = f"{host}/{unique_repo}:v1"
    ca = ["--ca-file", str(auth_registry.ca_file)]
    assert mdl("package", "--gguf", str(gguf), target).returncode == 0
    denied = mdl("push", *ca, target)
    assert_clean_error(denied, 1, f"authentication required for {host}; run mdl login")
    bad = mdl("login", "-u", auth_registry.username, "--password-stdin", *ca, host, input="wrong\n")
    assert_clean_error(bad, 1, f"authentication required for {host}")
    ok = mdl("login", "-u", auth_registry.username, "--password-stdin", *ca, host,
             input=auth_registry.password + "\n")
    assert ok.returncode == 0, ok.stderr
    config = Path(mdl.env["DOCKER_CONFIG"]) / "config.json"
    assert config.stat().st_mode & 0o777 == 0o600
    pushed = mdl("--debug", "push", *ca, target)
    assert pushed.returncode == 0, pushed.stderr
    assert auth_registry.password not in pushed.stdout + pushed.stderr
    assert mdl("pull", *ca, target, extra_env=other_home(mdl, "authpull")).returncode == 0
    assert mdl("logout", host).returncode == 0
    assert_clean_error(mdl("pull", *ca, target, extra_env=other_home(mdl, "after")), 1, "run mdl login")


def test_ci_credentials_from_the_environment(mdl, auth_registry, unique_repo, gguf):
    target = f"{auth_registry.host}/{unique_repo}:ci"
    env = {"MDL_REGISTRY_USERNAME": auth_registry.username, "MDL_REGISTRY_PASSWORD": auth_registry.password}
    proc = mdl("package", "--gguf", str(gguf), "--push", "--ca-file", str(auth_registry.ca_file), target,
               extra_env=env)
    assert proc.returncode == 0, proc.stderr
    assert auth_registry.password not in proc.stdout + proc.stderr


def test_tls_without_the_ca_is_refused(mdl, auth_registry, unique_repo):
    proc = mdl("pull", f"{auth_registry.host}/{unique_repo}:v1")
    assert_clean_error(proc, 1, "--ca-file")


def test_skopeo_copies_what_save_writes_to_a_registry_and_back(mdl, registry, unique_repo, gguf, tmp_path):
    if not shutil.which("skopeo"):
        pytest.skip("skopeo is not installed")
    assert mdl("package", "--gguf", str(gguf), "ai/tiny:v1").returncode == 0
    digest = json.loads(mdl("inspect", "--json", "ai/tiny:v1").stdout)["id"]
    layout = tmp_path / "saved"
    assert mdl("save", "ai/tiny:v1", "-o", str(layout)).returncode == 0
    remote = f"docker://{registry.host}/{unique_repo}:v1"
    skopeo = ["skopeo", "--insecure-policy"]
    subprocess.run([*skopeo, "copy", "--dest-tls-verify=false", f"oci:{layout}:docker.io/ai/tiny:v1", remote],
                   check=True, capture_output=True)
    # what skopeo pushed is byte for byte what mdl packaged: mdl pulls the same digest
    assert summary(mdl("pull", "--json", f"{registry.host}/{unique_repo}:v1",
                       extra_env=other_home(mdl, "sk")))["digest"] == digest
    back = tmp_path / "back"
    subprocess.run([*skopeo, "copy", "--src-tls-verify=false", remote, f"oci:{back}:x"], check=True,
                   capture_output=True)
    index = json.loads((back / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest
    fresh = other_home(mdl, "load")
    assert mdl("load", str(back), "--tag", "ai/back:v1", extra_env=fresh).returncode == 0
    assert json.loads(mdl("inspect", "--json", "ai/back:v1", extra_env=fresh).stdout)["id"] == digest


def test_safetensors_v02_round_trip(mdl, registry, unique_repo, tmp_path):
    from tests.fixtures.models import write_safetensors_dir

    model_dir = write_safetensors_dir(tmp_path / "st", n_shards=2)
    (model_dir / "nested").mkdir()
    (model_dir / "nested" / "generation_config.json").write_text("{}")
    target = f"{registry.host}/{unique_repo}:st"
    digest = mdl("package", "--safetensors-dir", str(model_dir), "--push", "-q", target).stdout.strip().split("@")[1]
    fresh = other_home(mdl, "st")
    assert summary(mdl("pull", "--json", target, extra_env=fresh))["digest"] == digest
    man = json.loads(mdl("inspect", "--manifest", target, extra_env=fresh).stdout)
    assert man["config"]["mediaType"] == "application/vnd.docker.ai.model.config.v0.2+json"
    paths = [layer["annotations"]["org.cncf.model.filepath"] for layer in man["layers"]]
    assert "nested/generation_config.json" in paths


def test_legacy_cnai_artifact_written_by_another_tool_is_accepted(mdl, registry, unique_repo):
    """A ModelPack artifact in the pre-2025 `vnd.cnai` spelling, pushed by hand as older modctl did."""
    import hashlib

    import requests

    base = f"http://{registry.host}/v2/{unique_repo}"

    def blob(data: bytes) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        loc = requests.post(f"{base}/blobs/uploads/").headers["Location"]
        url = loc if loc.startswith("http") else f"http://{registry.host}{loc}"
        assert requests.put(url + ("&" if "?" in url else "?") + f"digest={digest}", data=data).status_code == 201
        return {"digest": digest, "size": len(data)}

    weights = b"GGUF" + bytes(60)
    layer = blob(weights)
    config = {"descriptor": {"createdAt": "2025-03-01T00:00:00Z", "name": "old"},
              "config": {"format": "gguf", "paramSize": "1B"},
              "modelfs": {"type": "layers", "diff_ids": [layer["digest"]]}}
    cfg = blob(json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "artifactType": "application/vnd.cnai.model.manifest.v1+json",
                "config": {"mediaType": "application/vnd.cnai.model.config.v1+json", **cfg},
                "layers": [{"mediaType": "application/vnd.cnai.model.weight.v1.raw", **layer,
                            "annotations": {"org.cnai.model.filepath": "old.gguf"}}]}
    raw = json.dumps(manifest).encode()
    r = requests.put(f"{base}/manifests/old", data=raw,
                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    got = summary(mdl("pull", "--json", f"{registry.host}/{unique_repo}:old"))
    assert got["digest"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert mdl("verify", f"{registry.host}/{unique_repo}:old").returncode == 0


def test_debug_shows_the_http_exchange(mdl, registry, unique_repo, gguf):
    target = f"{registry.host}/{unique_repo}:dbg"
    proc = mdl("--debug", "package", "--gguf", str(gguf), "--push", target)
    assert proc.returncode == 0, proc.stderr
    assert "HEAD" in proc.stderr and "/v2/" in proc.stderr and "PUT" in proc.stderr
