"""Bundles (cosign v3), both forms through the policy, cosign's key files and Hub names, without a registry.

tests/fixtures/cosign/ holds what cosign v3.1.3 wrote (`cosign generate-key-pair` with COSIGN_PASSWORD
"mdl-test", then `cosign sign --key` of one model in both forms, with `-a team=ml` on the bundle), so
mdl's reading of cosign's own output is checked here without the cosign binary.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pytest

from mdl.artifact_check import document_findings
from mdl.content.descriptor import Descriptor, Manifest
from mdl.content.digest import sha256_bytes
from mdl.signing.bundle import (COSIGN_SIGN_PREDICATE, build_bundle_manifest, cosign_statement, pae, parse_bundle,
                                sign_bundle)
from mdl.signing.cosign import build_signature_manifest, is_signature_manifest, make_payload
from mdl.signing.errors import (BadPassphraseError, BadSignatureError, KeylessSignatureError,
                                PayloadDigestMismatchError, UnsignedError, WrongSubjectError)
from mdl.signing.keys import load_private_key, load_public_key, public_key_hint, sign_payload
from mdl.signing.policy import BUNDLE, LEGACY, check_signatures, same_repository
from mdl.spec import mediatypes as mt

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "cosign"
REPO = "registry.example.com/ai/model"
DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
SUBJECT = Descriptor(mt.OCI_MANIFEST, DIGEST, 100)


@pytest.fixture(scope="module")
def keys():
    from cryptography.hazmat.primitives.asymmetric import ec
    a, b = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    return a, b


def bundle_referrer(key, statement: bytes, *, hint: str | None = None, subject: Descriptor = SUBJECT):
    bundle = sign_bundle(key, statement, hint or public_key_hint(key.public_key()))
    return build_bundle_manifest(subject, bundle, COSIGN_SIGN_PREDICATE), bundle


def legacy(key, payload: bytes):
    layer = Descriptor(mt.COSIGN_SIMPLESIGNING, sha256_bytes(payload), len(payload),
                       annotations={mt.ANNOTATION_COSIGN_SIGNATURE: sign_payload(key, payload)})
    return build_signature_manifest(SUBJECT, [layer])[0]


def check(manifests, blobs, public, repository=REPO, digest=DIGEST):
    return check_signatures("m:v1", repository, digest, manifests, lambda d: blobs[d.digest], public, "k.pub")


def blobs_of(*pairs):
    return {sha256_bytes(b): b for b in pairs}


def test_bundle_shape_matches_cosign_v3(keys):
    key = keys[0]
    statement = cosign_statement(DIGEST, {"team": "ml"})
    manifest, bundle = bundle_referrer(key, statement)
    doc = json.loads(bundle)
    assert doc["mediaType"] == mt.SIGSTORE_BUNDLE
    assert doc["verificationMaterial"]["publicKey"]["hint"] == public_key_hint(key.public_key())
    assert doc["verificationMaterial"]["tlogEntries"] == []
    env = doc["dsseEnvelope"]
    assert env["payloadType"] == mt.IN_TOTO_PAYLOAD and base64.b64decode(env["payload"]) == statement
    st = json.loads(statement)
    assert st == {"_type": "https://in-toto.io/Statement/v1",
                  "subject": [{"digest": {"sha256": "ab" * 32}, "annotations": {"team": "ml"}}],
                  "predicateType": "https://sigstore.dev/cosign/sign/v1", "predicate": {}}
    m = manifest.as_dict()
    assert m["artifactType"] == mt.SIGSTORE_BUNDLE and m["subject"]["digest"] == DIGEST
    assert m["config"] == {"mediaType": mt.OCI_EMPTY, "digest": sha256_bytes(b"{}"), "size": 2}
    assert [x["mediaType"] for x in m["layers"]] == [mt.SIGSTORE_BUNDLE]
    assert m["annotations"][mt.ANNOTATION_BUNDLE_CONTENT] == "dsse-envelope"
    assert m["annotations"][mt.ANNOTATION_BUNDLE_PREDICATE_TYPE] == COSIGN_SIGN_PREDICATE
    # written profiles of the spec's schemas
    assert document_findings(mt.OCI_MANIFEST, m, written=True) == []
    assert document_findings(mt.SIGSTORE_BUNDLE, doc, written=True) == []
    assert document_findings(mt.IN_TOTO_PAYLOAD, st) == []
    assert is_signature_manifest(manifest)


def test_pae_is_dsse_v1():
    assert pae("application/x", b"hello") == b"DSSEv1 13 application/x 5 hello"


def test_a_bundle_verifies_first_and_says_so(keys):
    key, public = keys[0], keys[0].public_key()
    manifest, bundle = bundle_referrer(key, cosign_statement(DIGEST))
    payload = make_payload(REPO, DIGEST)
    sig = legacy(key, payload)
    v = check([sig, manifest], blobs_of(bundle, payload), public)
    assert (v.form, v.signature_manifest, v.key) == (BUNDLE, manifest.digest, "k.pub")
    assert v.as_dict()["form"] == "bundle"
    v = check([sig], blobs_of(payload), public)
    assert (v.form, v.signature_manifest) == (LEGACY, sig.digest)


def test_a_failing_bundle_falls_back_to_a_valid_legacy_signature(keys):
    key, other = keys
    manifest, bundle = bundle_referrer(other, cosign_statement(DIGEST))
    payload = make_payload(REPO, DIGEST)
    v = check([manifest, legacy(key, payload)], blobs_of(bundle, payload), key.public_key())
    assert v.form == LEGACY and v.checked == 2


def test_bundle_failures_keep_their_kinds(keys):
    key, other = keys
    public = key.public_key()
    manifest, bundle = bundle_referrer(other, cosign_statement(DIGEST))
    with pytest.raises(BadSignatureError) as e:
        check([manifest], blobs_of(bundle), public)
    assert e.value.exit_code == 11 and "k.pub" in e.value.message
    manifest, bundle = bundle_referrer(key, cosign_statement(OTHER))
    with pytest.raises(WrongSubjectError) as e:
        check([manifest], blobs_of(bundle), public)
    assert e.value.kind == "wrong-subject" and e.value.exit_code == 13 and OTHER in e.value.message
    # a subject naming the digest under another predicate is not a cosign signature of it
    st = json.loads(cosign_statement(DIGEST))
    st["predicateType"] = "https://slsa.dev/provenance/v1"
    manifest, bundle = bundle_referrer(key, json.dumps(st).encode())
    with pytest.raises(WrongSubjectError, match="predicate type"):
        check([manifest], blobs_of(bundle), public)
    # bytes altered in storage
    manifest, bundle = bundle_referrer(key, cosign_statement(DIGEST))
    with pytest.raises(PayloadDigestMismatchError) as e:
        check([manifest], {sha256_bytes(bundle): bundle.replace(b"dsse", b"DSSE")}, public)
    assert e.value.exit_code == 12
    # an envelope whose payload was swapped after signing
    doc = json.loads(bundle)
    doc["dsseEnvelope"]["payload"] = base64.b64encode(cosign_statement(DIGEST, {"x": "y"})).decode()
    swapped = json.dumps(doc).encode()
    manifest = build_bundle_manifest(SUBJECT, swapped, COSIGN_SIGN_PREDICATE)
    with pytest.raises(BadSignatureError):
        check([manifest], blobs_of(swapped), public)


def test_a_keyless_bundle_is_reported_as_such(keys):
    _, bundle = bundle_referrer(keys[0], cosign_statement(DIGEST))
    doc = json.loads(bundle)
    doc["verificationMaterial"] = {"certificate": {"rawBytes": base64.b64encode(b"not really a cert").decode()},
                                   "tlogEntries": [{"logIndex": "1"}]}
    keyless = json.dumps(doc).encode()
    assert parse_bundle(keyless).keyless
    manifest = build_bundle_manifest(SUBJECT, keyless, COSIGN_SIGN_PREDICATE)
    with pytest.raises(KeylessSignatureError) as e:
        check([manifest], blobs_of(keyless), keys[0].public_key())
    assert e.value.kind == "keyless-unsupported" and e.value.exit_code == 17
    assert "not supported: key-based only" in e.value.message
    # a key-based signature beside it still passes
    good, good_bundle = bundle_referrer(keys[0], cosign_statement(DIGEST))
    assert check([manifest, good], blobs_of(keyless, good_bundle), keys[0].public_key()).form == BUNDLE


def test_model_signing_referrers_are_not_cosign_signatures(keys):
    bundle = sign_bundle(keys[0], cosign_statement(DIGEST), "x")
    manifest = build_bundle_manifest(SUBJECT, bundle, "https://model_signing/signature/v1.0")
    with pytest.raises(UnsignedError):
        check([manifest], blobs_of(bundle), keys[0].public_key())


def test_docker_hub_names_are_one_repository(keys):
    assert same_repository("index.docker.io/ai/smollm2", "docker.io/ai/smollm2")
    assert same_repository("docker.io/ai/smollm2", "index.docker.io/ai/smollm2")
    assert not same_repository("index.docker.io/ai/smollm2", "docker.io/ai/other")
    assert not same_repository("ghcr.io/ai/smollm2", "docker.io/ai/smollm2")
    key = keys[0]
    payload = make_payload("index.docker.io/ai/smollm2", DIGEST)  # as cosign writes it for Docker Hub
    v = check([legacy(key, payload)], blobs_of(payload), key.public_key(), repository="docker.io/ai/smollm2")
    assert v.form == LEGACY


def test_mdl_reads_what_cosign_wrote():
    model = (FIX / "signed-manifest.json").read_bytes()
    digest = sha256_bytes(model)
    public = load_public_key(FIX / "cosign.pub")
    referrer = Manifest.parse((FIX / "bundle-manifest.json").read_bytes())
    sig = Manifest.parse((FIX / "sig-manifest.json").read_bytes())
    blobs = blobs_of((FIX / "bundle.json").read_bytes(), (FIX / "payload.json").read_bytes())
    repository = json.loads(blobs[sig.layers[0].digest])["critical"]["identity"]["docker-reference"]
    v = check([referrer, sig], blobs, public, repository, digest)
    assert v.form == BUNDLE and v.annotations == {"team": "ml"}
    v = check([sig], blobs, public, repository, digest)
    assert v.form == LEGACY
    assert document_findings(mt.OCI_MANIFEST, referrer.as_dict()) == []
    assert document_findings(mt.SIGSTORE_BUNDLE, json.loads(blobs[referrer.layers[0].digest])) == []
    # cosign names the key as mdl does
    assert json.loads(blobs[referrer.layers[0].digest])["verificationMaterial"]["publicKey"]["hint"] == \
        public_key_hint(public)


def test_cosign_encrypted_private_key_is_read(tmp_path):
    key_path = tmp_path / "cosign.key"
    shutil.copy(FIX / "cosign.key", key_path)
    os.chmod(key_path, 0o600)
    key = load_private_key(key_path, lambda: b"mdl-test")
    assert public_key_hint(key.public_key()) == public_key_hint(load_public_key(FIX / "cosign.pub"))
    with pytest.raises(BadPassphraseError) as e:
        load_private_key(key_path, lambda: b"wrong")
    assert e.value.exit_code == 15
    with pytest.raises(BadPassphraseError):
        load_private_key(key_path, lambda: None)
