"""`mdl verify --all` and `--repair`: whole-store checks that change nothing, and a repair that removes
only what is corrupt."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mdl.store import LayoutStore
from mdl.ops.package import PackageRequest, package
from mdl.reference import parse_reference
from mdl.store_check import check_store, repair
from tests.fixtures.models import write_tiny_gguf


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _flip(path: Path, offset: int = 100) -> None:
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


@pytest.fixture
def two_models(tmp_path):
    """Two models sharing a license blob; each with its own GGUF (layer 0)."""
    store = LayoutStore(tmp_path / "home")
    lic = tmp_path / "LICENSE"
    lic.write_text("MIT\n")
    ga = write_tiny_gguf(tmp_path / "a.gguf", seed=1)[0]
    gb = write_tiny_gguf(tmp_path / "b.gguf", seed=2)[0]
    a = package(store, PackageRequest(gguf=str(ga), licenses=[str(lic)]), parse_reference("ai/a"))
    b = package(store, PackageRequest(gguf=str(gb), licenses=[str(lic)]), parse_reference("ai/b"))
    return store, a, b


def test_healthy_store_passes(two_models):
    store, a, b = two_models
    report = check_store(store)
    assert report.ok, report.as_dict()
    assert {r.digest for r in report.models} == {a.digest, b.digest}
    assert not [f for f in report.findings if f.severity == "error"]
    # every blob hashed once: 2 manifests, 2 configs, 2 GGUFs, 1 shared license
    assert report.blobs_hashed == 7


def test_unreferenced_blob_and_stale_ingest_are_info(two_models):
    store, _, _ = two_models
    store.write_blob(b"orphan")
    (store.root / "ingest" / "dead.part").write_bytes(b"partial")
    report = check_store(store)
    assert report.ok
    kinds = {(f.kind, f.severity) for f in report.findings}
    assert ("unreferenced-blob", "info") in kinds and ("stale-ingest", "info") in kinds


def test_flipped_layer_is_reported_and_nothing_changes(mdl, two_models):
    store, a, b = two_models
    layer = a.manifest.layers[0]
    _flip(store.blob_path(layer.digest))
    before = _snapshot(store.root)
    proc = mdl("verify", "--all", "--json", extra_env={"MDL_HOME": str(store.root)})
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and "findings" in doc["store"]
    bad = {m["digest"]: m for m in doc["models"]}
    [finding] = bad[a.digest]["findings"]
    assert finding["kind"] == "digest-mismatch" and finding["path"] == "$.layers[0]"
    assert bad[b.digest]["ok"] is True
    assert _snapshot(store.root) == before
    human = mdl("verify", "--all", extra_env={"MDL_HOME": str(store.root)})
    assert human.returncode == 1 and "FAILED" in human.stdout and "digest-mismatch" in human.stdout


def test_repair_removes_the_corrupt_blob_and_its_model_only(mdl, two_models):
    store, a, b = two_models
    corrupt = a.manifest.layers[0].digest
    _flip(store.blob_path(corrupt))
    b_blobs = {b.digest, b.manifest.config.digest, *(d.digest for d in b.manifest.layers)}
    b_before = {d: store.blob_path(d).read_bytes() for d in b_blobs}
    env = {"MDL_HOME": str(store.root)}
    proc = mdl("verify", "--all", "--repair", extra_env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Removed model: {a.digest}" in proc.stdout and f"Deleted blob: {corrupt}" in proc.stdout
    assert not store.has_blob(corrupt) and not store.has_blob(a.digest)
    assert {d: store.blob_path(d).read_bytes() for d in b_blobs} == b_before
    assert [m.digest for m in store.models()] == [b.digest]
    after = mdl("verify", "--all", "--json", extra_env=env)
    assert after.returncode == 0, after.stdout
    assert json.loads(after.stdout)["ok"] is True


def test_missing_manifest_entry_is_reported_and_repaired(two_models):
    store, a, b = two_models
    os.unlink(store.blob_path(a.digest))
    before = _snapshot(store.root)
    report = check_store(store)
    assert not report.ok
    assert any(f.kind == "index-entry-missing" and f.path.startswith("index.json$.manifests[")
               for f in report.findings)
    assert _snapshot(store.root) == before
    _, removed = repair(store)
    assert a.digest in removed.removed_models and b.digest not in removed.removed_models
    assert [e.digest for e in store.entries()] == [b.digest]
    assert check_store(store).ok


def test_corrupt_unreferenced_blob_is_reported_and_deleted(two_models):
    store, _, b = two_models
    digest, _ = store.write_blob(b"some bytes")
    _flip(store.blob_path(digest), 0)
    report = check_store(store)
    assert not report.ok and digest in report.corrupt_blobs
    assert any(f.kind == "blob-corrupt" for f in report.findings)
    _, removed = repair(store, report)
    assert removed.deleted_blobs == [digest] and removed.removed_models == []
    assert check_store(store).ok and store.has_blob(b.digest)


def test_dangling_link_is_reported(two_models):
    store, _, _ = two_models
    (store.root / "blobs" / "sha256" / ("0" * 64)).symlink_to(store.root / "nowhere")
    report = check_store(store)
    assert any(f.kind == "dangling-link" for f in report.findings) and not report.ok


def test_repair_needs_all(mdl):
    proc = mdl("verify", "--repair", "ai/x")
    assert proc.returncode == 2


def test_layers_of_every_model_hash_in_one_pass_each_blob_once(two_models, monkeypatch):
    """`verify --all` hashes the layers of all models together (one per core), not model by model,
    and a layer two models share is read once and reported in both."""
    import mdl.model_check as model_check
    import mdl.store_check as store_check

    store, a, b = two_models
    shared = next(d for d in a.manifest.layers if d in b.manifest.layers)
    _flip(store.blob_path(shared.digest), offset=1)
    events: list[tuple[str, str]] = []
    real_hash, real_check = model_check._hash_layer, store_check.check_model_in_store
    monkeypatch.setattr(model_check, "_hash_layer",
                        lambda s, d, ahead: events.append(("hash", d.digest)) or real_hash(s, d, ahead))
    monkeypatch.setattr(store_check, "check_model_in_store",
                        lambda s, digest, cache: events.append(("check", digest)) or real_check(s, digest, cache=cache))
    report = check_store(store)
    hashed = [d for kind, d in events if kind == "hash"]
    assert sorted(hashed) == sorted({d.digest for m in (a, b) for d in m.manifest.layers})
    assert [kind for kind, _ in events] == ["hash"] * len(hashed) + ["check", "check"]  # all layers first
    for model in report.models:
        assert [f.kind for f in model.findings if f.path.startswith("$.layers")] == ["digest-mismatch"]
    assert shared.digest in report.corrupt_blobs


def test_each_manifest_is_read_once(two_models, monkeypatch):
    """`verify --all` reads the manifests to gather their layers, and the model checks reuse them."""
    store, a, b = two_models
    reads: list[str] = []
    real = type(store).manifest
    monkeypatch.setattr(type(store), "manifest", lambda self, digest: reads.append(digest) or real(self, digest))
    report = check_store(store)
    assert report.ok and sorted(reads) == sorted([a.digest, b.digest])
    for model, packaged in zip(report.models, (a, b)):  # the reused manifest still counts as checked
        assert model.blobs_checked == 2 + len(packaged.manifest.layers)  # manifest, config, layers


def test_an_interrupted_check_drops_the_layers_not_started(two_models, monkeypatch):
    """Ctrl-C while the spec checks run: the layers still queued for hashing are not read."""
    import time

    import mdl.model_check as model_check

    store, a, _ = two_models
    started: list[str] = []

    def slow_hash(s, d, ahead):
        started.append(d.digest)
        time.sleep(0.3)
        return None, False, True

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(model_check, "hash_workers", lambda n: 1)
    monkeypatch.setattr(model_check, "_hash_layer", slow_hash)
    monkeypatch.setattr(model_check, "manifest_findings", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model_check.check_model_in_store(store, a.digest)
    assert len(a.manifest.layers) == 2 and started == [a.manifest.layers[0].digest]
