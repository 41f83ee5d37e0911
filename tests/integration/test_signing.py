"""`mdl keygen`, `mdl sign`, `mdl verify --key`, `mdl pull --verify-key` against the real registry (2.8.2).

Each failure is asserted by its own error kind's message and exit code (toolkit/mdl/signing/errors.py).
"""

from __future__ import annotations

import json
import os

from mdl.content.descriptor import Descriptor
from mdl.content.digest import sha256_bytes
from mdl.ops.sign import _BytesSource
from mdl.registry.referrers import fallback_tag
from mdl.signing.cosign import build_signature_manifest, make_payload, signature_tag
from mdl.signing.keys import load_private_key, sign_payload
from mdl.spec import mediatypes as mt
from tests.conftest import assert_clean_error
from tests.fixtures.models import write_tiny_gguf
from tests.integration.signing_fixtures import PW, cli, keys, ok, push_model, remote  # noqa: F401 (fixtures)


def test_keygen_writes_a_private_key_only_the_owner_reads(cli, tmp_path):
    ok(cli("keygen", "--output-prefix", str(tmp_path / "k")))
    assert oct((tmp_path / "k.key").stat().st_mode & 0o777) == "0o600"
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "k.key").read_bytes()
    assert b"BEGIN PUBLIC KEY" in (tmp_path / "k.pub").read_bytes()
    again = cli("keygen", "--output-prefix", str(tmp_path / "k"))
    assert_clean_error(again, 1, "k.key exists")


def test_a_valid_signature_verifies(cli, registry, unique_repo, keys):
    target, digest = push_model(cli, registry, unique_repo)
    signed = json.loads(ok(cli("sign", target, "--key", keys["alice"][0], "-a", "team=ml", "--json")).stdout)
    sig_digest, bundle_digest = signed["signatures"]["legacy"], signed["signatures"]["bundle"]
    assert signed["signature"] == sig_digest and signed["added"] == ["bundle", "legacy"]
    got = json.loads(ok(cli("verify", target, "--key", keys["alice"][1], "--json")).stdout)
    assert got["ok"] and got["signature"]["digest"] == digest and got["signature"]["optional"] == {"team": "ml"}
    assert got["signature"]["form"] == "bundle" and got["signature"]["signatureManifest"] == bundle_digest
    assert got["signature"]["key"] == keys["alice"][1]
    # the signature manifest: cosign's shape, subject and artifactType of the OCI 1.1 form
    repo = remote(registry, unique_repo)
    raw, _, d = repo.fetch_manifest_bytes(signature_tag(digest))
    doc = json.loads(raw)
    assert d == sig_digest and doc["artifactType"] == mt.COSIGN_SIGNATURE_ARTIFACT_TYPE
    assert doc["subject"]["digest"] == digest and doc["config"]["mediaType"] == mt.OCI_IMAGE_CONFIG
    [layer] = doc["layers"]
    assert layer["mediaType"] == mt.COSIGN_SIMPLESIGNING and mt.ANNOTATION_COSIGN_SIGNATURE in layer["annotations"]
    # both referrers, each with its real artifactType
    index = json.loads(repo.fetch_manifest_bytes(fallback_tag(digest))[0])
    assert {m["digest"]: m["artifactType"] for m in index["manifests"]} == {
        sig_digest: mt.COSIGN_SIGNATURE_ARTIFACT_TYPE, bundle_digest: mt.SIGSTORE_BUNDLE}
    # signing again with the same key adds nothing
    again = ok(cli("sign", target, "--key", keys["alice"][0]))
    assert again.stdout.strip() == sig_digest and "bundle already signed" in again.stderr \
        and "legacy already signed" in again.stderr
    assert len(json.loads(repo.fetch_manifest_bytes(fallback_tag(digest))[0])["manifests"]) == 2


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
    ok(cli("sign", target, "--key", keys["alice"][0], "--format", "legacy"))
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
    first = json.loads(ok(cli("sign", target, "--key", keys["alice"][0], "--json")).stdout)["signatures"]
    repo = remote(registry, unique_repo)
    for d in first.values():
        repo.delete_manifest(d)
    second = ok(cli("sign", target, "--key", keys["bob"][0], "--json"))
    got = json.loads(second.stdout)
    assert sorted(got["pruned"]) == sorted(first.values())
    index = json.loads(repo.fetch_manifest_bytes(fallback_tag(digest))[0])
    assert sorted(m["digest"] for m in index["manifests"]) == sorted(got["signatures"].values())
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
    sig = json.loads(ok(cli("sign", target, "--key", keys["alice"][0], "--json")).stdout)["signatures"]["bundle"]
    fresh = {"MDL_HOME": str(tmp_path / "fresh")}
    pulled = json.loads(ok(cli("pull", target, "--verify-key", keys["alice"][1], "--json",
                               extra_env=fresh)).stdout.strip().splitlines()[-1])
    assert pulled["signature"]["form"] == "bundle" and pulled["signature"]["key"] == keys["alice"][1]
    index = json.loads((tmp_path / "fresh" / "index.json").read_text())
    names = {m["annotations"][mt.ANNOTATION_REF_NAME]: m["digest"] for m in index["manifests"]}
    assert names[f"{registry.host}/{unique_repo}:{signature_tag(digest)}"] == sig
    listing = json.loads(ok(cli("list", "--json", extra_env=fresh)).stdout)
    assert [m["id"] for m in listing] == [digest]
    registry.process.send_signal(19)  # SIGSTOP: offline from here on
    try:
        got = json.loads(ok(cli("verify", target, "--key", keys["alice"][1], "--json", extra_env=fresh)).stdout)
        assert got["ok"] and got["models"][0]["digest"] == digest and got["signature"]["form"] == "bundle"
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
