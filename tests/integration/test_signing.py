"""`mdl keygen`, `mdl sign`, `mdl verify --key`, `mdl pull --verify-key` against the real registry (2.8.2).

Each failure is asserted by its own error kind's message and exit code (toolkit/mdl/signing/errors.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mdl.content.descriptor import Descriptor
from mdl.content.digest import sha256_bytes
from mdl.ops.sign import _BytesSource
from mdl.reference import parse_reference
from mdl.registry.open import open_repository
from mdl.registry.referrers import fallback_tag
from mdl.signing.cosign import build_signature_manifest, make_payload, signature_tag
from mdl.signing.keys import load_private_key, sign_payload
from mdl.spec import mediatypes as mt
from tests.conftest import assert_clean_error
from tests.fixtures.models import write_tiny_gguf

PW = "correct horse"


@pytest.fixture
def cli(mdl):
    def run(*args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
        env = mdl.env | {"MDL_KEY_PASSWORD": PW} | (extra_env or {})
        return subprocess.run([sys.executable, "-m", "mdl", *args], capture_output=True, text=True, env=env,
                              cwd=mdl.home.parent, stdin=subprocess.DEVNULL)
    run.home = mdl.home
    return run


def ok(proc) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def keys(cli, tmp_path):
    out = {}
    for name in ("alice", "bob"):
        ok(cli("keygen", "--output-prefix", str(tmp_path / name)))
        out[name] = (str(tmp_path / f"{name}.key"), str(tmp_path / f"{name}.pub"))
    return out


def push_model(cli, registry, repo: str, tag: str = "v1", seed: int = 0) -> tuple[str, str]:
    gguf = write_tiny_gguf(cli.home.parent / f"m{seed}.gguf", seed=seed)[0]
    target = f"{registry.host}/{repo}:{tag}"
    line = ok(cli("package", "--gguf", str(gguf), "--push", target)).stdout.strip().splitlines()[-1]
    return target, line.split("@")[1]


def remote(registry, repo: str):
    return open_repository(parse_reference(f"{registry.host}/{repo}:x"), env={})


def test_keygen_writes_a_private_key_only_the_owner_reads(cli, tmp_path):
    ok(cli("keygen", "--output-prefix", str(tmp_path / "k")))
    assert oct((tmp_path / "k.key").stat().st_mode & 0o777) == "0o600"
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "k.key").read_bytes()
    assert b"BEGIN PUBLIC KEY" in (tmp_path / "k.pub").read_bytes()
    again = cli("keygen", "--output-prefix", str(tmp_path / "k"))
    assert_clean_error(again, 1, "k.key exists")


def test_a_valid_signature_verifies(cli, registry, unique_repo, keys):
    target, digest = push_model(cli, registry, unique_repo)
    sig_digest = ok(cli("sign", target, "--key", keys["alice"][0], "-a", "team=ml")).stdout.strip()
    assert sig_digest.startswith("sha256:")
    got = json.loads(ok(cli("verify", target, "--key", keys["alice"][1], "--json")).stdout)
    assert got["ok"] and got["signature"]["digest"] == digest and got["signature"]["optional"] == {"team": "ml"}
    # the signature manifest: cosign's shape, subject and artifactType of the OCI 1.1 form
    repo = remote(registry, unique_repo)
    raw, _, d = repo.fetch_manifest_bytes(signature_tag(digest))
    doc = json.loads(raw)
    assert d == sig_digest and doc["artifactType"] == mt.COSIGN_SIGNATURE_ARTIFACT_TYPE
    assert doc["subject"]["digest"] == digest and doc["config"]["mediaType"] == mt.OCI_IMAGE_CONFIG
    [layer] = doc["layers"]
    assert layer["mediaType"] == mt.COSIGN_SIMPLESIGNING and mt.ANNOTATION_COSIGN_SIGNATURE in layer["annotations"]
    index = json.loads(repo.fetch_manifest_bytes(fallback_tag(digest))[0])
    assert [m["digest"] for m in index["manifests"]] == [sig_digest]
    assert index["manifests"][0]["artifactType"] == mt.COSIGN_SIGNATURE_ARTIFACT_TYPE
    # signing again with the same key adds nothing
    again = ok(cli("sign", target, "--key", keys["alice"][0]))
    assert again.stdout.strip() == sig_digest and "already signed" in again.stderr


def test_no_signature_is_unsigned(cli, registry, unique_repo, keys):
    target, digest = push_model(cli, registry, unique_repo)
    assert_clean_error(cli("verify", target, "--key", keys["alice"][1]), 10, "has no signature", digest)


def test_a_signature_by_another_key_is_bad(cli, registry, unique_repo, keys):
    target, digest = push_model(cli, registry, unique_repo)
    ok(cli("sign", target, "--key", keys["alice"][0]))
    assert_clean_error(cli("verify", target, "--key", keys["bob"][1]), 11, "verifies with the key",
                       keys["bob"][1])


def test_two_keys_add_two_signatures_and_either_verifies(cli, registry, unique_repo, keys):
    target, digest = push_model(cli, registry, unique_repo)
    ok(cli("sign", target, "--key", keys["alice"][0]))
    ok(cli("sign", target, "--key", keys["bob"][0]))
    ok(cli("sign", target, "--key", keys["alice"][0]))  # no third layer
    raw = remote(registry, unique_repo).fetch_manifest_bytes(signature_tag(digest))[0]
    assert len(json.loads(raw)["layers"]) == 2
    ok(cli("verify", target, "--key", keys["alice"][1]))
    ok(cli("verify", target, "--key", keys["bob"][1]))


def test_a_payload_altered_in_storage_is_a_digest_mismatch(cli, registry, unique_repo, keys):
    target, digest = push_model(cli, registry, unique_repo)
    ok(cli("sign", target, "--key", keys["alice"][0]))
    raw = remote(registry, unique_repo).fetch_manifest_bytes(signature_tag(digest))[0]
    payload_digest = json.loads(raw)["layers"][0]["digest"]
    path = registry.blob_path(payload_digest)
    data = path.read_bytes()
    path.write_bytes(data.replace(b"ml-signature" if b"ml-signature" in data else b"cosign", b"COSIGN", 1))
    assert_clean_error(cli("verify", target, "--key", keys["alice"][1]), 12, "signature payload", payload_digest,
                       "is corrupt")


def test_a_payload_naming_another_digest_is_the_wrong_subject(cli, registry, unique_repo, keys):
    target, digest = push_model(cli, registry, unique_repo)
    _, other = push_model(cli, registry, unique_repo, "other", seed=1)
    repo = remote(registry, unique_repo)
    key = load_private_key(keys["alice"][0], lambda: PW.encode())
    payload = make_payload(repo.name, other)  # signed, but for the other model
    layer = Descriptor(mt.COSIGN_SIMPLESIGNING, sha256_bytes(payload), len(payload),
                       annotations={mt.ANNOTATION_COSIGN_SIGNATURE: sign_payload(key, payload)})
    raw, media_type, _ = repo.fetch_manifest_bytes(digest)
    manifest, config = build_signature_manifest(Descriptor(media_type, digest, len(raw)), [layer])
    source = _BytesSource({layer.digest: payload, manifest.config.digest: config})
    repo.put_blob(layer, source)
    repo.put_blob(manifest.config, source)
    repo.put_manifest_bytes(manifest.raw, mt.OCI_MANIFEST, manifest.digest, [signature_tag(digest)])
    assert_clean_error(cli("verify", target, "--key", keys["alice"][1]), 13, f"it signs {other}", digest)


def test_a_tag_moved_after_signing_fails_for_the_new_manifest(cli, registry, unique_repo, keys):
    target, old = push_model(cli, registry, unique_repo)
    ok(cli("sign", target, "--key", keys["alice"][0]))
    _, new = push_model(cli, registry, unique_repo, "v1", seed=2)  # the tag now names another manifest
    assert new != old
    proc = cli("verify", target, "--key", keys["alice"][1])
    assert_clean_error(proc, 10, f"{target} ({new}) has no signature")
    ok(cli("verify", f"{registry.host}/{unique_repo}@{old}", "--key", keys["alice"][1]))


def test_stale_fallback_entries_are_pruned(cli, registry, unique_repo, keys):
    target, digest = push_model(cli, registry, unique_repo)
    first = ok(cli("sign", target, "--key", keys["alice"][0])).stdout.strip()
    repo = remote(registry, unique_repo)
    repo.delete_manifest(first)
    second = ok(cli("sign", target, "--key", keys["bob"][0], "--json"))
    got = json.loads(second.stdout)
    assert got["pruned"] == [first]
    index = json.loads(repo.fetch_manifest_bytes(fallback_tag(digest))[0])
    assert [m["digest"] for m in index["manifests"]] == [got["signature"]]
    ok(cli("verify", target, "--key", keys["bob"][1]))
    assert_clean_error(cli("verify", target, "--key", keys["alice"][1]), 11)


def test_key_file_problems(cli, registry, unique_repo, keys, tmp_path):
    target, _ = push_model(cli, registry, unique_repo)
    key = keys["alice"][0]
    assert_clean_error(cli("sign", target, "--key", key, extra_env={"MDL_KEY_PASSWORD": "wrong"}), 15,
                       "wrong passphrase", key)
    os.chmod(key, 0o644)
    assert_clean_error(cli("sign", target, "--key", key), 16, "readable by others (mode 0644)", "chmod 600")
    bad = tmp_path / "bad.key"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n")
    os.chmod(bad, 0o600)
    assert_clean_error(cli("sign", target, "--key", str(bad)), 14, "not a valid PEM private key", str(bad))
    badpub = tmp_path / "bad.pub"
    badpub.write_text("hello\n")
    assert_clean_error(cli("verify", target, "--key", str(badpub)), 14, "not a valid PEM public key")


def test_pull_refuses_an_unsigned_model_and_keeps_nothing(cli, registry, unique_repo, keys, tmp_path):
    target, digest = push_model(cli, registry, unique_repo)
    fresh = {"MDL_HOME": str(tmp_path / "fresh")}
    proc = cli("pull", target, "--verify-key", keys["alice"][1], extra_env=fresh)
    assert_clean_error(proc, 10, "has no signature")
    blobs = tmp_path / "fresh" / "blobs" / "sha256"
    assert not blobs.exists() or not list(blobs.iterdir())
    ok(cli("sign", target, "--key", keys["bob"][0]))  # signed, but not by the key the pull trusts
    proc = cli("pull", target, "--verify-key", keys["alice"][1], extra_env=fresh)
    assert_clean_error(proc, 11, "verifies with the key")
    assert not blobs.exists() or not list(blobs.iterdir())
    assert json.loads(ok(cli("list", "--json", extra_env=fresh)).stdout) == []


def test_signed_pull_stores_the_signature_and_verifies_offline_and_travels_in_save(cli, registry, unique_repo,
                                                                                   keys, tmp_path):
    target, digest = push_model(cli, registry, unique_repo)
    sig = ok(cli("sign", target, "--key", keys["alice"][0])).stdout.strip()
    fresh = {"MDL_HOME": str(tmp_path / "fresh")}
    ok(cli("pull", target, "--verify-key", keys["alice"][1], extra_env=fresh))
    index = json.loads((tmp_path / "fresh" / "index.json").read_text())
    names = {m["annotations"][mt.ANNOTATION_REF_NAME]: m["digest"] for m in index["manifests"]}
    assert names[f"{registry.host}/{unique_repo}:{signature_tag(digest)}"] == sig
    listing = json.loads(ok(cli("list", "--json", extra_env=fresh)).stdout)
    assert [m["id"] for m in listing] == [digest]
    registry.process.send_signal(19)  # SIGSTOP: offline from here on
    try:
        got = json.loads(ok(cli("verify", target, "--key", keys["alice"][1], "--json", extra_env=fresh)).stdout)
        assert got["ok"] and got["models"][0]["digest"] == digest
        assert_clean_error(cli("verify", target, "--key", keys["bob"][1], extra_env=fresh), 11)
        out = tmp_path / "saved.tar"
        ok(cli("save", target, "-o", str(out), extra_env=fresh))
        loaded = {"MDL_HOME": str(tmp_path / "loaded")}
        ok(cli("load", str(out), extra_env=loaded))
        ok(cli("verify", target, "--key", keys["alice"][1], extra_env=loaded))
        outdir = tmp_path / "saved-dir"
        ok(cli("save", target, "-o", str(outdir), extra_env=fresh))
        loaded2 = {"MDL_HOME": str(tmp_path / "loaded2")}
        ok(cli("load", str(outdir), extra_env=loaded2))
        ok(cli("verify", target, "--key", keys["alice"][1], extra_env=loaded2))
        assert [m["id"] for m in json.loads(ok(cli("list", "--json", extra_env=loaded2)).stdout)] == [digest]
        # a store holding a signature is a consistent store
        assert json.loads(ok(cli("verify", "--all", "--json", extra_env=loaded2)).stdout)["ok"] is True
    finally:
        registry.process.send_signal(18)  # SIGCONT
    # removing the model drops its signature entry
    ok(cli("rm", target, extra_env=fresh))
    index = json.loads((tmp_path / "fresh" / "index.json").read_text())
    assert index["manifests"] == []


def test_package_push_sign_key_signs_right_after_the_push(cli, registry, unique_repo, keys):
    gguf = write_tiny_gguf(cli.home.parent / "p.gguf", seed=3)[0]
    target = f"{registry.host}/{unique_repo}:v1"
    proc = ok(cli("package", "--gguf", str(gguf), "--push", target, "--sign-key", keys["alice"][0]))
    digest = proc.stdout.strip().splitlines()[-1].split("@")[1]
    assert f"Signed {registry.host}/{unique_repo}@{digest}" in proc.stderr
    fresh = {"MDL_HOME": str(cli.home.parent / "fresh")}
    ok(cli("pull", target, "--verify-key", keys["alice"][1], extra_env=fresh))
    refused = cli("package", "--gguf", str(gguf), target, "--sign-key", keys["alice"][0])
    assert_clean_error(refused, 2, "--sign-key signs what --push pushed")
