"""`mdl verify REF` on a registry model without pulling it, and `--deep` (real distribution 2.8.2)."""

from __future__ import annotations

import json
import zlib
import pytest

from tests.conftest import assert_clean_error
from tests.fixtures.models import write_tiny_gguf


@pytest.fixture
def pushed(mdl, registry, unique_repo, tmp_path) -> tuple[str, str]:
    """A tiny model pushed to the registry and absent from the store the test verifies from. Its blobs
    are its own (the registry shares blobs between repositories, and some tests damage them)."""
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf", seed=zlib.crc32(unique_repo.encode()))[0]
    license_file = tmp_path / "LICENSE"
    license_file.write_text(f"License of {unique_repo}\n")
    target = f"{registry.host}/{unique_repo}:v1"
    proc = mdl("package", "--gguf", str(gguf), "--license", str(license_file), "--push", target,
               extra_env={"MDL_HOME": str(tmp_path / "packer")})
    assert proc.returncode == 0, proc.stderr
    return target, proc.stdout.strip().splitlines()[-1].split("@")[1]


def report(proc) -> dict:
    doc = json.loads(proc.stdout)
    assert len(doc["models"]) == 1
    return doc["models"][0]


def manifest_of(registry, digest: str) -> dict:
    return json.loads(registry.blob_path(digest).read_bytes())


def test_shallow_checks_a_registry_model_without_pulling_it(mdl, registry, pushed):
    target, digest = pushed
    proc = mdl("verify", "--json", target)
    assert proc.returncode == 0, proc.stderr
    r = report(proc)
    assert r["ok"] and r["digest"] == digest and r["layers_hashed"] is False
    assert r["blobs_checked"] == 2 + len(manifest_of(registry, digest)["layers"])
    assert not (mdl.home / "blobs").exists() or not any((mdl.home / "blobs").rglob("*"))  # nothing stored
    human = mdl("verify", target)
    assert human.returncode == 0 and human.stdout.startswith("OK") and "--deep" in human.stdout


def test_deep_hashes_every_layer_and_finds_a_flipped_byte(mdl, registry, pushed):
    target, digest = pushed
    deep = report(mdl("verify", "--json", "--deep", target))
    assert deep["ok"] and deep["layers_hashed"] is True
    layers = manifest_of(registry, digest)["layers"]
    assert deep["bytes_checked"] >= sum(layer["size"] for layer in layers)

    weights = registry.blob_path(layers[0]["digest"])
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only hashing can tell
    weights.write_bytes(bytes(data))
    assert mdl("verify", target).returncode == 0  # the shallow check sees the right size
    proc = mdl("verify", "--json", "--deep", target)
    assert proc.returncode == 1
    findings = report(proc)["findings"]
    assert [(f["kind"], f["path"]) for f in findings] == [("digest-mismatch", "$.layers[0]")]


def test_a_missing_layer_and_a_wrong_size_are_named(mdl, registry, pushed):
    target, digest = pushed
    layers = manifest_of(registry, digest)["layers"]
    registry.blob_path(layers[0]["digest"]).write_bytes(b"short")  # the size HEAD reports changes
    registry.blob_path(layers[-1]["digest"]).unlink()
    proc = mdl("verify", "--json", target)
    assert proc.returncode == 1
    kinds = {(f["kind"], f["path"]) for f in report(proc)["findings"]}
    assert ("size-mismatch", "$.layers[0]") in kinds
    assert ("blob-missing", f"$.layers[{len(layers) - 1}]") in kinds


def test_remote_forces_the_registry_copy_over_the_local_one(mdl, registry, pushed):
    target, digest = pushed
    assert mdl("pull", target).returncode == 0
    local = report(mdl("verify", "--json", target))
    assert local["layers_hashed"] is True  # the local copy
    remote = report(mdl("verify", "--json", "--remote", target))
    assert remote["layers_hashed"] is False and remote["digest"] == digest


def test_an_unknown_model_is_a_clean_not_found(mdl, registry, unique_repo):
    proc = mdl("verify", f"{registry.host}/{unique_repo}:nope")
    assert_clean_error(proc, 1, "not found")


def test_all_with_deep_is_a_usage_error(mdl):
    assert_clean_error(mdl("verify", "--all", "--deep"), 2, "--all")
