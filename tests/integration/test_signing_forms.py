"""cosign's two forms against the real registry (2.8.2): `mdl sign --format`, verification of each form
and of each way a bundle fails, the fallback index's artifactTypes, and the referrers API path.

Each failure is asserted by its error kind's exit code and message (toolkit/mdl/signing/errors.py).
"""

from __future__ import annotations

import base64
import json

from mdl.content.descriptor import Descriptor, canonical_json
from mdl.content.digest import sha256_bytes
from mdl.ops.sign import _BytesSource
from mdl.registry.referrers import fallback_tag, fetch_manifest_if_present, register_referrer
from mdl.signing.bundle import (COSIGN_SIGN_PREDICATE, EMPTY_CONFIG, build_bundle_manifest, cosign_statement,
                                sign_bundle)
from mdl.signing.cosign import signature_tag
from mdl.signing.keys import load_private_key, public_key_hint
from mdl.spec import mediatypes as mt
from tests.conftest import assert_clean_error
from tests.integration.faultproxy import Fault, FaultProxy
from tests.integration.signing_fixtures import PW, cli, keys, ok, push_model, remote  # noqa: F401 (fixtures)


def push_bundle(repo, digest: str, bundle: bytes, predicate: str = COSIGN_SIGN_PREDICATE) -> str:
    """Push `bundle` as a referrer of `digest` (as a signer would), listed in the fallback index."""
    raw, media_type, _ = repo.fetch_manifest_bytes(digest)
    manifest = build_bundle_manifest(Descriptor(media_type, digest, len(raw)), bundle, predicate)
    source = _BytesSource({manifest.layers[0].digest: bundle, manifest.config.digest: EMPTY_CONFIG})
    for d in manifest.blob_descriptors():
        repo.put_blob(d, source)
    repo.put_manifest_bytes(manifest.raw, mt.OCI_MANIFEST, manifest.digest, [])
    register_referrer(repo, digest, manifest.descriptor())
    return manifest.digest


def alice(keys):
    return load_private_key(keys["alice"][0], lambda: PW.encode())


def test_each_format_writes_its_form_and_verifies(cli, registry, unique_repo, keys):
    repo = remote(registry, unique_repo)
    target, digest = push_model(cli, registry, unique_repo)
    got = json.loads(ok(cli("sign", target, "--key", keys["alice"][0], "--format", "bundle", "--json")).stdout)
    assert list(got["signatures"]) == ["bundle"] and got["signature"] == got["signatures"]["bundle"]
    assert fetch_manifest_if_present(repo, signature_tag(digest)) is None  # no .sig tag
    out = ok(cli("verify", target, "--key", keys["alice"][1])).stdout
    assert f"verifies with {keys['alice'][1]} (bundle form" in out

    target, digest = push_model(cli, registry, unique_repo, "v2", seed=1)
    got = json.loads(ok(cli("sign", target, "--key", keys["alice"][0], "--format", "legacy", "--json")).stdout)
    assert list(got["signatures"]) == ["legacy"]
    index = json.loads(repo.fetch_manifest_bytes(fallback_tag(digest))[0])
    assert [m["artifactType"] for m in index["manifests"]] == [mt.COSIGN_SIGNATURE_ARTIFACT_TYPE]
    out = ok(cli("verify", target, "--key", keys["alice"][1])).stdout
    assert "(legacy form" in out
    assert_clean_error(cli("verify", target, "--key", keys["bob"][1]), 11, "verifies with the key")

    refused = cli("sign", target, "--key", keys["alice"][0], "--format", "legacy", "--model-signing")
    assert_clean_error(refused, 2, "--format legacy", "cosign v3")
    assert_clean_error(cli("sign", target, "--key", keys["alice"][0], "--format", "json"), 2, "--format 'json'")


def test_a_bundle_by_another_key_is_bad(cli, registry, unique_repo, keys):
    target, digest = push_model(cli, registry, unique_repo)
    ok(cli("sign", target, "--key", keys["bob"][0], "--format", "bundle"))
    assert_clean_error(cli("verify", target, "--key", keys["alice"][1]), 11, "none of the 1 signature(s)",
                       keys["alice"][1])


def test_a_bundle_naming_another_digest_is_the_wrong_subject(cli, registry, unique_repo, keys):
    repo = remote(registry, unique_repo)
    target, digest = push_model(cli, registry, unique_repo)
    _, other = push_model(cli, registry, unique_repo, "other", seed=1)
    key = alice(keys)
    push_bundle(repo, digest, sign_bundle(key, cosign_statement(other), public_key_hint(key.public_key())))
    assert_clean_error(cli("verify", target, "--key", keys["alice"][1]), 13,
                       f"its statement's subject is {other}", digest)
    fresh = {"MDL_HOME": str(cli.home.parent / "fresh")}
    assert_clean_error(cli("pull", target, "--verify-key", keys["alice"][1], extra_env=fresh), 13)


def test_a_bundle_altered_in_storage_is_a_digest_mismatch(cli, registry, unique_repo, keys):
    repo = remote(registry, unique_repo)
    target, digest = push_model(cli, registry, unique_repo)
    got = json.loads(ok(cli("sign", target, "--key", keys["alice"][0], "--format", "bundle", "--json")).stdout)
    layer = json.loads(repo.fetch_manifest_bytes(got["signature"])[0])["layers"][0]["digest"]
    path = registry.blob_path(layer)
    path.write_bytes(path.read_bytes().replace(b"dsseEnvelope", b"dsseENVELOPE"))
    assert_clean_error(cli("verify", target, "--key", keys["alice"][1]), 12, layer, "is corrupt")


def test_a_keyless_bundle_is_refused_as_keyless(cli, registry, unique_repo, keys):
    repo = remote(registry, unique_repo)
    target, digest = push_model(cli, registry, unique_repo)
    key = alice(keys)
    doc = json.loads(sign_bundle(key, cosign_statement(digest), "unused"))
    doc["verificationMaterial"] = {"certificate": {"rawBytes": base64.b64encode(b"a Fulcio certificate").decode()},
                                   "tlogEntries": []}
    push_bundle(repo, digest, canonical_json(doc))
    assert_clean_error(cli("verify", target, "--key", keys["alice"][1]), 17, "signed keyless",
                       "not supported: key-based only", "certificate-identity")
    ok(cli("sign", target, "--key", keys["alice"][0]))  # a key-based signature beside it passes
    assert json.loads(ok(cli("verify", target, "--key", keys["alice"][1], "--json")).stdout)["signature"]["form"] \
        == "bundle"


def test_fallback_entries_typed_empty_get_their_real_artifact_type(cli, registry, unique_repo, keys):
    """cosign 3 lists its bundles in the fallback index as the empty config's type; Kyverno, filtering
    by type, then skips them. The next signer writes the real type."""
    repo = remote(registry, unique_repo)
    target, digest = push_model(cli, registry, unique_repo)
    key = alice(keys)
    theirs = push_bundle(repo, digest, sign_bundle(key, cosign_statement(digest), public_key_hint(key.public_key())))
    raw, _, _ = repo.fetch_manifest_bytes(theirs)
    entry = {"mediaType": mt.OCI_MANIFEST, "artifactType": mt.OCI_EMPTY, "digest": theirs, "size": len(raw)}
    index = canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [entry]})
    repo.put_manifest_bytes(index, mt.OCI_INDEX, sha256_bytes(index), [fallback_tag(digest)])
    # read as it is: the entry is still found
    assert json.loads(ok(cli("verify", target, "--key", keys["alice"][1], "--json")).stdout)["signature"][
        "signatureManifest"] == theirs
    got = json.loads(ok(cli("sign", target, "--key", keys["bob"][0], "--json")).stdout)
    index = json.loads(repo.fetch_manifest_bytes(fallback_tag(digest))[0])
    types = {m["digest"]: m["artifactType"] for m in index["manifests"]}
    assert types == {theirs: mt.SIGSTORE_BUNDLE, got["signatures"]["bundle"]: mt.SIGSTORE_BUNDLE,
                     got["signatures"]["legacy"]: mt.COSIGN_SIGNATURE_ARTIFACT_TYPE}


def test_signatures_are_found_through_the_referrers_api_where_there_is_one(cli, registry, unique_repo, keys):
    """A registry with the referrers API (the proxy answers it in front of 2.8.2): the signer leaves the
    fallback tag alone, and the verifier finds the bundle through the API."""
    repo = remote(registry, unique_repo)
    host, port = registry.host.split(":")
    with FaultProxy(host, int(port)) as proxy:
        empty = canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []})
        api = {"Content-Type": mt.OCI_INDEX}
        proxy.add(Fault("GET", r"/referrers/", times=100, status=200, headers=api, body=empty))
        target, digest = push_model(cli, registry, unique_repo)
        via = target.replace(registry.host, proxy.host)
        got = json.loads(ok(cli("sign", via, "--key", keys["alice"][0], "--format", "bundle", "--json")).stdout)
        assert fetch_manifest_if_present(repo, fallback_tag(digest)) is None
        proxy.clear()
        raw, _, _ = repo.fetch_manifest_bytes(got["signature"])
        listed = canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [
            {"mediaType": mt.OCI_MANIFEST, "artifactType": mt.SIGSTORE_BUNDLE, "digest": got["signature"],
             "size": len(raw)}]})
        proxy.add(Fault("GET", r"/referrers/", times=100, status=200, headers=api, body=listed))
        seen = len(proxy.requests)
        out = json.loads(ok(cli("verify", via, "--key", keys["alice"][1], "--json")).stdout)
        assert out["signature"]["form"] == "bundle" and out["signature"]["signatureManifest"] == got["signature"]
        asked = [t for _, t in proxy.requests[seen:]]
        assert any(f"/referrers/{digest}" in t for t in asked)
        assert not any(t.endswith("/manifests/" + fallback_tag(digest)) for t in asked)
