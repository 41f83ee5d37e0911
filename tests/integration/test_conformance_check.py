"""`mdl conformance check`: one real artifact (local store, OCI layout, registry) against every case
that applies; a deliberately broken artifact fails exactly the case that targets it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mdl.content.descriptor import canonical_json
from mdl.content.digest import sha256_bytes
from tests.fixtures.models import write_tiny_gguf

DIFF_IDS_CASE = "docker-config/docker-config-diff-ids-equal-the-layer-digests-in-order"


@pytest.fixture
def packaged(mdl, tmp_path) -> str:
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")[0]
    assert mdl("package", "--gguf", str(gguf), "ai/tiny:v1").returncode == 0
    return "ai/tiny:v1"


def checked(proc) -> list[dict]:
    return json.loads(proc.stdout)["artifacts"]


def test_a_packaged_model_passes_every_case_that_applies(mdl, packaged):
    proc = mdl("conformance", "check", "--json", packaged)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [a] = checked(proc)
    assert a["ok"] and a["format"] == "docker" and a["cases"] >= 1 and a["failed"] == []
    human = mdl("conformance", "check", packaged)
    assert human.returncode == 0 and human.stdout.startswith("OK")


def _rewrite(layout: Path, edit_config) -> None:
    """Give the layout's model a new config made by `edit_config`, and a manifest naming it (both new
    blobs, correctly hashed: only the rule the edit breaks is broken)."""
    index = json.loads((layout / "index.json").read_text())
    entry = index["manifests"][0]
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / entry["digest"].split(":")[1]).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_bytes())
    edit_config(config)
    raw_config = canonical_json(config)
    (blobs / sha256_bytes(raw_config).split(":")[1]).write_bytes(raw_config)
    manifest["config"].update(digest=sha256_bytes(raw_config), size=len(raw_config))
    raw_manifest = canonical_json(manifest)
    (blobs / sha256_bytes(raw_manifest).split(":")[1]).write_bytes(raw_manifest)
    entry.update(digest=sha256_bytes(raw_manifest), size=len(raw_manifest))
    (layout / "index.json").write_text(json.dumps(index))


def test_a_broken_artifact_fails_exactly_the_case_that_targets_it(mdl, packaged, tmp_path):
    layout = tmp_path / "layout"
    assert mdl("save", packaged, "-o", str(layout)).returncode == 0
    assert mdl("conformance", "check", "--json", str(layout)).returncode == 0  # intact, it passes

    _rewrite(layout, lambda c: c["rootfs"].update(diff_ids=["sha256:" + "0" * 64]))
    proc = mdl("conformance", "check", "--json", str(layout))
    assert proc.returncode == 1
    [a] = checked(proc)
    assert [f["case"] for f in a["failed"]] == [DIFF_IDS_CASE]
    assert [(f["kind"], f["document"], f["path"]) for f in a["failed"][0]["findings"]] == \
        [("diff-ids", "config", "$.rootfs.diff_ids")]
    assert a["other_findings"] == []
    human = mdl("conformance", "check", str(layout))
    assert f"FAIL {DIFF_IDS_CASE}" in human.stdout


def test_a_missing_blob_is_reported_outside_the_cases(mdl, packaged, tmp_path):
    layout = tmp_path / "layout"
    assert mdl("save", packaged, "-o", str(layout)).returncode == 0
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_bytes())
    (layout / "blobs" / "sha256" / manifest["layers"][0]["digest"][7:]).unlink()
    [a] = checked(mdl("conformance", "check", "--json", str(layout)))
    assert a["failed"] == [] and [(f["kind"], f["path"]) for f in a["other_findings"]] == [("blob-missing", "$.layers[0]")]


def test_a_registry_artifact_is_checked_in_place(mdl, registry, unique_repo, packaged):
    target = f"{registry.host}/{unique_repo}:v1"
    assert mdl("tag", packaged, target).returncode == 0
    assert mdl("push", target).returncode == 0
    proc = mdl("conformance", "check", "--json", "--remote", target)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [a] = checked(proc)
    assert a["ok"] and a["layers_hashed"] is True and a["name"] == target
    # The written profile reads the registry's manifest and config again, not the store's.
    assert mdl("rm", packaged).returncode == 0 and mdl("rm", target).returncode == 0
    proc = mdl("conformance", "check", "--json", "--written", target)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [w] = checked(proc)
    assert w["ok"] and w["cases"] > a["cases"]


WRITTEN_ANNOTATIONS_CASE = "manifest-written/written-manifest-every-layer-carries-the-four-annotations"
INTEROP = Path(__file__).resolve().parents[3] / "shared" / "interop" / "docker-model-runner"


def _rewrite_manifest(layout: Path, edit_manifest) -> None:
    """Give the layout's model a new manifest made by `edit_manifest` (blobs unchanged)."""
    index = json.loads((layout / "index.json").read_text())
    entry = index["manifests"][0]
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / entry["digest"].split(":")[1]).read_bytes())
    edit_manifest(manifest)
    raw = canonical_json(manifest)
    (blobs / sha256_bytes(raw).split(":")[1]).write_bytes(raw)
    entry.update(digest=sha256_bytes(raw), size=len(raw))
    (layout / "index.json").write_text(json.dumps(index))


@pytest.mark.parametrize("fmt", ["docker", "cncf"])
def test_what_mdl_packages_passes_the_written_profile(mdl, tmp_path, fmt):
    if not INTEROP.is_dir():
        pytest.skip("../shared/interop is absent")
    proc = mdl("package", "--format", fmt, "--gguf", str(INTEROP / "dummy.gguf"), "--license",
               str(INTEROP / "license.txt"), "--chat-template", str(INTEROP / "template.jinja"),
               "--mmproj", str(INTEROP / "dummy.mmproj"), f"ai/dummy:{fmt}")
    assert proc.returncode == 0, proc.stderr
    proc = mdl("conformance", "check", "--written", "--json", f"ai/dummy:{fmt}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    [a] = report["artifacts"]
    assert report["profile"] == "written" and a["ok"] and a["failed"] == [] and a["other_findings"] == []
    reader = json.loads(mdl("conformance", "check", "--json", f"ai/dummy:{fmt}").stdout)["artifacts"][0]
    assert a["cases"] > reader["cases"]  # the written cases apply on top of the reader ones


def test_a_layer_without_a_title_fails_only_the_written_profile(mdl, packaged, tmp_path):
    layout = tmp_path / "layout"
    assert mdl("save", packaged, "-o", str(layout)).returncode == 0
    _rewrite_manifest(layout, lambda m: m["layers"][0]["annotations"].pop("org.opencontainers.image.title"))
    assert mdl("conformance", "check", "--json", str(layout)).returncode == 0  # readers accept it
    proc = mdl("conformance", "check", "--written", "--json", str(layout))
    assert proc.returncode == 1
    [a] = checked(proc)
    assert [(f["case"], f["profile"]) for f in a["failed"]] == [(WRITTEN_ANNOTATIONS_CASE, "written")]
    assert [(f["kind"], f["document"], f["path"]) for f in a["failed"][0]["findings"]] == \
        [("layer-annotations", "manifest", "$.layers[0].annotations")]
    assert a["other_findings"] == []
    human = mdl("conformance", "check", "--written", str(layout))
    assert human.returncode == 1 and f"FAIL {WRITTEN_ANNOTATIONS_CASE}" in human.stdout
