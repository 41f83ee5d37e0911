"""Sigstore bundles as cosign v3 and OpenSSF model signing write them, key-based (spec/signing.md §8-§11).

A bundle is JSON: `verificationMaterial` (here a public key's `hint`; keyless bundles carry a
certificate instead, which this module recognizes and refuses) and a DSSE envelope whose payload is an
in-toto statement. The signature is ECDSA over the DSSE pre-authentication encoding (PAE) of the
payload type and the payload's exact bytes. A bundle travels as the single layer of a referrer
manifest (artifactType the bundle media type, the empty config, `subject` the signed manifest).

This module builds and parses those documents; it decides nothing about trust (`policy` does).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .. import artifact_check
from ..content.descriptor import Descriptor, Manifest, canonical_json, load_json_document
from ..content.digest import sha256_bytes
from ..errors import SchemaViolationError
from ..spec import mediatypes as mt
from .keys import sign_payload, signature_valid

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
COSIGN_SIGN_PREDICATE = artifact_check.COSIGN_SIGN_PREDICATE
MODEL_SIGNING_PREDICATE = artifact_check.MODEL_SIGNING_PREDICATE
DSSE_ENVELOPE = "dsse-envelope"  # the value of the bundle-content annotation
EMPTY_CONFIG = b"{}"
MAX_BUNDLE = 4 << 20  # a model-signing bundle lists every file; cosign's are ~1 KiB


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what the signature covers."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def cosign_statement(digest: str, annotations: dict[str, str] | None = None) -> bytes:
    """The statement of a cosign v3 signature of the manifest `digest` (subject annotations: what
    `--annotation` gave, as cosign's `-a`)."""
    algorithm, hexpart = digest.split(":", 1)
    subject: dict = {"digest": {algorithm: hexpart}}
    if annotations:
        subject["annotations"] = dict(sorted(annotations.items()))
    return canonical_json({"_type": STATEMENT_TYPE, "subject": [subject],
                           "predicateType": COSIGN_SIGN_PREDICATE, "predicate": {}})


def sign_bundle(key, statement: bytes, hint: str) -> bytes:
    """A bundle JSON: `statement` in a DSSE envelope signed with `key`, the key named by `hint`."""
    sig = sign_payload(key, pae(mt.IN_TOTO_PAYLOAD, statement))
    return canonical_json({
        "mediaType": mt.SIGSTORE_BUNDLE,
        "verificationMaterial": {"publicKey": {"hint": hint}, "tlogEntries": []},
        "dsseEnvelope": {"payload": base64.b64encode(statement).decode("ascii"),
                         "payloadType": mt.IN_TOTO_PAYLOAD, "signatures": [{"sig": sig, "keyid": ""}]},
    })


def empty_config() -> Descriptor:
    return Descriptor(mt.OCI_EMPTY, sha256_bytes(EMPTY_CONFIG), len(EMPTY_CONFIG))


def build_bundle_manifest(subject: Descriptor, bundle: bytes, predicate_type: str,
                          created: datetime | None = None) -> Manifest:
    """The referrer manifest that carries `bundle` (its blobs: the empty config and the bundle)."""
    when = (created or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    layer = Descriptor(mt.SIGSTORE_BUNDLE, sha256_bytes(bundle), len(bundle))
    return Manifest.build(empty_config(), [layer], artifact_type=mt.SIGSTORE_BUNDLE,
                          subject=Descriptor(subject.media_type, subject.digest, subject.size),
                          annotations={mt.ANNOTATION_BUNDLE_CONTENT: DSSE_ENVELOPE,
                                       mt.ANNOTATION_BUNDLE_PREDICATE_TYPE: predicate_type,
                                       mt.ANNOTATION_CREATED: when})


def is_bundle_manifest(manifest: Manifest) -> bool:
    return artifact_check.is_bundle_manifest(manifest.as_dict())


def bundle_predicate_type(manifest: Manifest) -> str | None:
    """The predicate type the referrer's annotation announces (where to look, never trusted)."""
    return (manifest.annotations or {}).get(mt.ANNOTATION_BUNDLE_PREDICATE_TYPE)


class BundleFormatError(ValueError):
    """Bytes that are not a bundle this module reads; the message says why."""


@dataclass
class Bundle:
    payload_type: str
    payload: bytes  # the statement's exact bytes
    signatures: list[str]  # base64 DER signatures over pae(payload_type, payload)
    hint: str | None  # the public key's hint; None in a keyless bundle
    keyless: bool  # a certificate (chain) instead of a key: not verifiable with a key
    tlog_entries: int = 0
    raw: dict = field(default_factory=dict, repr=False)

    def verifies_with(self, public_key) -> bool:
        data = pae(self.payload_type, self.payload)
        return any(signature_valid(public_key, data, sig) for sig in self.signatures)

    def statement(self) -> dict:
        """The statement the envelope carries (after the signature has been checked)."""
        doc = load_json_document(self.payload, "statement")
        if not isinstance(doc, dict):
            raise SchemaViolationError("statement", [("$", "a statement is a JSON object")])
        return doc


def parse_bundle(raw: bytes) -> Bundle:
    """A bundle from its JSON bytes; BundleFormatError when it is not a v0.3 DSSE bundle."""
    try:
        doc = load_json_document(raw, "bundle")
    except SchemaViolationError as e:
        raise BundleFormatError(e.findings[0][1] if e.findings else "not JSON") from None
    findings = artifact_check.document_findings(mt.SIGSTORE_BUNDLE, doc)
    if findings:
        raise BundleFormatError(f"{findings[0].path}: {findings[0].message}")
    material = doc["verificationMaterial"]
    envelope = doc["dsseEnvelope"]
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
    except (binascii.Error, ValueError):
        raise BundleFormatError("$.dsseEnvelope.payload: not base64") from None
    keyless = "publicKey" not in material
    return Bundle(envelope["payloadType"], payload, [s["sig"] for s in envelope["signatures"]],
                  None if keyless else (material["publicKey"].get("hint") or None), keyless,
                  len(material.get("tlogEntries") or []), doc)


def subject_digests(statement: dict) -> list[str]:
    """`sha256:<hex>` of each subject of `statement` that names a sha256 digest."""
    out = []
    for s in statement.get("subject") or []:
        hexpart = (s.get("digest") or {}).get("sha256") if isinstance(s, dict) else None
        if isinstance(hexpart, str):
            out.append("sha256:" + hexpart)
    return out
