"""Keys, payloads and the signature checks of `mdl.signing`, without a registry."""

from __future__ import annotations

import json
import os

import pytest

from mdl.content.descriptor import Descriptor, Manifest
from mdl.content.digest import sha256_bytes
from mdl.errors import ConflictError
from mdl.registry.referrers import fallback_tag
from mdl.signing.cosign import build_signature_manifest, is_signature_manifest, make_payload, signature_tag
from mdl.signing.errors import (BadPassphraseError, BadSignatureError, KeyFormatError, KeyPermissionsError,
                                PayloadDigestMismatchError, UnsignedError, WrongSubjectError)
from mdl.signing.keys import load_private_key, load_public_key, sign_payload, signature_valid, write_keypair
from mdl.signing.policy import check_signatures
from mdl.spec import mediatypes as mt
from mdl.spec import schemas

REPO = "registry.example.com/ai/model"
DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


@pytest.fixture(scope="module")
def keypair():
    from cryptography.hazmat.primitives.asymmetric import ec
    k = ec.generate_private_key(ec.SECP256R1())
    return k, k.public_key()


def signed_manifest(key, payload: bytes, signature: str | None = None):
    layer = Descriptor(mt.COSIGN_SIMPLESIGNING, sha256_bytes(payload), len(payload),
                       annotations={mt.ANNOTATION_COSIGN_SIGNATURE: signature or sign_payload(key, payload)})
    manifest, _ = build_signature_manifest(Descriptor(mt.OCI_MANIFEST, DIGEST, 100), [layer])
    return manifest


def check(manifests, blobs, public):
    return check_signatures("m:v1", REPO, DIGEST, manifests, lambda d: blobs[d.digest], public, "k.pub")


def test_payload_is_cosign_simple_signing_and_passes_its_schema():
    p = make_payload(REPO, DIGEST, {"b": "2", "a": "1"})
    doc = json.loads(p)
    assert doc == {"critical": {"identity": {"docker-reference": REPO}, "image": {"docker-manifest-digest": DIGEST},
                                "type": "cosign container image signature"}, "optional": {"a": "1", "b": "2"}}
    assert schemas.validate(doc, "cosign-payload") == []
    assert json.loads(make_payload(REPO, DIGEST))["optional"] is None


def test_signature_manifest_shape(keypair):
    m = signed_manifest(keypair[0], make_payload(REPO, DIGEST))
    doc = m.as_dict()
    assert doc["artifactType"] == mt.COSIGN_SIGNATURE_ARTIFACT_TYPE and doc["subject"]["digest"] == DIGEST
    assert doc["config"]["mediaType"] == mt.OCI_IMAGE_CONFIG
    assert is_signature_manifest(Manifest.parse(m.raw))
    assert signature_tag(DIGEST) == "sha256-" + "ab" * 32 + ".sig"
    assert fallback_tag(DIGEST) == "sha256-" + "ab" * 32


def test_check_passes_with_the_right_key(keypair):
    p = make_payload(REPO, DIGEST)
    m = signed_manifest(keypair[0], p)
    v = check([m], {sha256_bytes(p): p}, keypair[1])
    assert v.digest == DIGEST and v.signature_manifest == m.digest


def test_check_errors_are_specific(keypair):
    from cryptography.hazmat.primitives.asymmetric import ec
    other_key = ec.generate_private_key(ec.SECP256R1())
    p = make_payload(REPO, DIGEST)
    with pytest.raises(UnsignedError):
        check([], {}, keypair[1])
    with pytest.raises(BadSignatureError) as e:
        check([signed_manifest(other_key, p)], {sha256_bytes(p): p}, keypair[1])
    assert e.value.exit_code == 11 and "k.pub" in e.value.message
    with pytest.raises(PayloadDigestMismatchError) as e:
        check([signed_manifest(keypair[0], p)], {sha256_bytes(p): p.replace(b"cosign", b"COSIGN")}, keypair[1])
    assert e.value.kind == "digest-mismatch" and e.value.exit_code == 12
    wrong = make_payload(REPO, OTHER)
    with pytest.raises(WrongSubjectError) as e:
        check([signed_manifest(keypair[0], wrong)], {sha256_bytes(wrong): wrong}, keypair[1])
    assert OTHER in e.value.message
    elsewhere = make_payload("registry.example.com/evil/model", DIGEST)
    with pytest.raises(WrongSubjectError) as e:
        check([signed_manifest(keypair[0], elsewhere)], {sha256_bytes(elsewhere): elsewhere}, keypair[1])
    assert e.value.message.endswith(f"it signs {DIGEST} in registry.example.com/evil/model, not in {REPO}")
    # any valid signature wins over failing ones
    good = signed_manifest(keypair[0], p)
    bad = signed_manifest(other_key, wrong)
    assert check([bad, good], {sha256_bytes(p): p, sha256_bytes(wrong): wrong}, keypair[1]).signature_manifest == \
        good.digest


def test_keys_round_trip_and_refuse_problems(tmp_path):
    key_path, pub_path = write_keypair(tmp_path / "k", b"pw")
    assert (key_path.stat().st_mode & 0o777) == 0o600
    key = load_private_key(key_path, lambda: b"pw")
    pub = load_public_key(pub_path)
    p = b"payload"
    assert signature_valid(pub, p, sign_payload(key, p))
    assert not signature_valid(pub, b"other", sign_payload(key, p))
    with pytest.raises(ConflictError):
        write_keypair(tmp_path / "k", None)
    with pytest.raises(BadPassphraseError):
        load_private_key(key_path, lambda: b"nope")
    with pytest.raises(BadPassphraseError):
        load_private_key(key_path, lambda: None)
    os.chmod(key_path, 0o640)
    with pytest.raises(KeyPermissionsError) as e:
        load_private_key(key_path, lambda: b"pw")
    assert "0640" in e.value.message
    with pytest.raises(KeyFormatError):
        load_public_key(key_path)  # a private key is not a public key
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(KeyFormatError):
        load_public_key(junk)


def test_non_p256_keys_are_refused(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    k = ec.generate_private_key(ec.SECP384R1())
    path = tmp_path / "p384.key"
    path.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    os.chmod(path, 0o600)
    with pytest.raises(KeyFormatError, match="P-256"):
        load_private_key(path, lambda: None)
