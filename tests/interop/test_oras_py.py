"""mdl and oras-py (PyPI `oras`, the `test` extra), an independent Python client of the distribution
protocol, on the real registry (distribution 2.8.2):

- what oras-py pushes from plain files (config `application/vnd.unknown.config.v1+json`, layers typed
  `application/vnd.oci.image.layer.v1.tar` that hold the files as they are, no `artifactType`) is no
  model: `mdl conformance check` reports exactly one finding, `unknown-config-type` at
  `$.config.mediaType`, which fails the `interop.json` case reproducing the document, and `mdl pull`
  refuses it in one line (spec/interop.md §6);
- what `mdl package --push` wrote, in both formats, oras-py pulls: every file at its packaged path
  (the layer titles, nested paths included), byte for byte.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

import oras.client  # the `test` extra: a missing oras-py fails these tests, it never skips them
from mdl.errors import OUTCOMES
from tests.conftest import assert_clean_error
from tests.fixtures.models import write_safetensors_dir, write_tiny_gguf
from tests.interop.conftest import ok



@pytest.fixture
def client(registry, tmp_path, monkeypatch):
    """An oras-py client of the registry (plain HTTP), reading no one's docker config."""
    monkeypatch.setenv("HOME", str(tmp_path / "home-dir"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    return oras.client.OrasClient(hostname=registry.host, insecure=True)


def manifest_of(registry, repo: str, tag: str) -> dict:
    """The manifest as the registry serves it."""
    req = urllib.request.Request(f"{registry.url}/v2/{repo}/manifests/{tag}",
                                 headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_what_oras_py_pushes_from_files_is_no_model(mdl, client, registry, unique_repo, tmp_path, monkeypatch):
    files = tmp_path / "files"
    files.mkdir()
    write_tiny_gguf(files / "model.gguf", seed=7)
    (files / "LICENSE").write_text("MIT License, for the interop test\n")
    monkeypatch.chdir(files)  # oras-py pushes only paths under the working directory
    target = f"{registry.host}/{unique_repo}:v1"
    assert client.push(target=target, files=["model.gguf", "LICENSE"]).status_code == 201
    m = manifest_of(registry, unique_repo, "v1")
    assert "artifactType" not in m
    assert (m["config"]["mediaType"], m["config"]["size"]) == ("application/vnd.unknown.config.v1+json", 2)
    assert [(la["mediaType"], la["annotations"]) for la in m["layers"]] == [
        ("application/vnd.oci.image.layer.v1.tar", {"org.opencontainers.image.title": name})
        for name in ("model.gguf", "LICENSE")]
    assert m["layers"][0]["size"] == (files / "model.gguf").stat().st_size  # the file itself, not a tar

    check = mdl("conformance", "check", target, "--json")
    assert check.returncode == 1, check.stderr
    report = json.loads(check.stdout)
    assert report["ok"] is False and report["profile"] == "reader"
    [artifact] = report["artifacts"]
    assert artifact["format"] is None and artifact["other_findings"] == []
    # its one finding fails the interop.json case that reproduces this very document
    case = "interop/interop-plain-files-as-oras-py-pushes-them"
    assert case in [v["case"] for v in artifact["failed"]]
    assert {(f["kind"], f["path"], f["document"]) for v in artifact["failed"] for f in v["findings"]} == {
        ("unknown-config-type", "$.config.mediaType", "manifest")}
    text = mdl("conformance", "check", target)
    assert text.returncode == 1 and "not a model" in text.stdout
    assert f"FAIL {case} (spec/interop.md#6-oras-py)" in text.stdout
    assert "[unknown-config-type] manifest $.config.mediaType" in text.stdout

    assert_clean_error(mdl("pull", target), OUTCOMES["unsupported-artifact"].exit_code,
                       f"{target} is not a model artifact (config media type application/vnd.unknown.config.v1+json)")
    assert json.loads(ok(mdl("list", "--json")).stdout) == []


def _model(tmp_path: Path, kind: str) -> tuple[list[str], dict[str, Path]]:
    if kind == "gguf":
        root = tmp_path / "gguf"
        root.mkdir()
        (root / "LICENSE").write_text("Apache License 2.0, for the interop test\n")
        (root / "chat.jinja").write_text("{% for m in messages %}{{ m.content }}{% endfor %}")
        gguf = write_tiny_gguf(root / "tiny.gguf", seed=8)[0]
        return (["--gguf", str(gguf), "--license", str(root / "LICENSE"), "--chat-template", str(root / "chat.jinja")],
                {"tiny.gguf": gguf, "LICENSE": root / "LICENSE", "chat.jinja": root / "chat.jinja"})
    d = write_safetensors_dir(tmp_path / "st", seed=9, license_text="MIT\n")
    (d / "tokenizer").mkdir()
    (d / "tokenizer.json").rename(d / "tokenizer" / "tokenizer.json")
    (d / "tokenizer" / "special_tokens_map.json").write_text('{"bos_token": "t1"}\n')
    return ["--safetensors-dir", str(d)], {p.relative_to(d).as_posix(): p for p in d.rglob("*") if p.is_file()}


@pytest.mark.parametrize("kind", ["gguf", "safetensors"])
@pytest.mark.parametrize("fmt", ["docker", "cncf"])
def test_oras_py_pulls_what_mdl_pushed(mdl, client, registry, unique_repo, tmp_path, kind, fmt):
    args, files = _model(tmp_path, kind)
    target = f"{registry.host}/{unique_repo}:v1"
    ok(mdl("package", *args, "--format", fmt, "--push", target))
    out = tmp_path / "pulled"
    written = client.pull(target=target, outdir=str(out))
    assert sorted(Path(p).relative_to(out).as_posix() for p in written) == sorted(files)
    got = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == {path: src.read_bytes() for path, src in files.items()}
    if kind == "safetensors":
        assert "tokenizer/special_tokens_map.json" in got

