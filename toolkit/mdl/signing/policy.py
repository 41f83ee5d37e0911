"""Which signatures pass: one that verifies with the trusted key over a cosign payload naming exactly the
model's digest and repository. The same rule for the registry and the local store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..content.descriptor import Descriptor, Manifest, load_json_document
from ..content.digest import sha256_bytes
from ..errors import DigestMismatchError, MdlError, SchemaViolationError
from ..spec import mediatypes as mt
from ..spec import schemas
from .cosign import PAYLOAD_SCHEMA, PAYLOAD_TYPE
from .errors import BadSignatureError, PayloadDigestMismatchError, UnsignedError, WrongSubjectError
from .keys import signature_valid


@dataclass
class Verified:
    subject: str
    digest: str
    signature_manifest: str  # digest of the manifest holding the signature that verified
    payload: dict
    checked: int  # signature layers examined
    manifests: list[Manifest] = field(default_factory=list)  # every signature manifest found

    def as_dict(self) -> dict:
        return {"ok": True, "subject": self.subject, "digest": self.digest,
                "signatureManifest": self.signature_manifest, "checked": self.checked,
                "optional": self.payload.get("optional")}


def check_signatures(subject: str, repository: str, digest: str, manifests: list[Manifest],
                     read_payload: Callable[[Descriptor], bytes], public_key, key_name: str) -> Verified:
    """Pass if any signature layer verifies with `public_key` over a payload naming exactly `digest` and
    `repository`; else raise the error of the signature that came closest (wrong-subject, then
    digest-mismatch, then bad-signature), or UnsignedError when there is none."""
    checked = 0
    failures: list[tuple[int, MdlError]] = []
    for m in manifests:
        for layer in m.layers:
            if layer.media_type != mt.COSIGN_SIMPLESIGNING:
                continue
            checked += 1
            sig = (layer.annotations or {}).get(mt.ANNOTATION_COSIGN_SIGNATURE)
            try:
                payload = read_payload(layer)
            except DigestMismatchError as e:
                failures.append((2, PayloadDigestMismatchError(layer.digest, e.actual)))
                continue
            actual = sha256_bytes(payload)
            if actual != layer.digest:
                failures.append((2, PayloadDigestMismatchError(layer.digest, actual)))
                continue
            if not sig or not signature_valid(public_key, payload, sig):
                failures.append((1, BadSignatureError(subject, digest, key_name, 0)))
                continue
            try:
                doc = load_json_document(payload, "signature payload")
                if schemas.validate(doc, PAYLOAD_SCHEMA):
                    raise KeyError("critical")
                critical = doc["critical"]
                named = critical["image"]["docker-manifest-digest"]
                identity = critical["identity"]["docker-reference"]
                kind = critical["type"]
            except (SchemaViolationError, KeyError, TypeError):
                failures.append((3, WrongSubjectError(subject, digest, "its payload is not a cosign payload")))
                continue
            if kind != PAYLOAD_TYPE:
                failures.append((3, WrongSubjectError(subject, digest, f"its payload type is {kind!r}")))
            elif named != digest:
                failures.append((3, WrongSubjectError(subject, digest, f"it signs {named}")))
            elif identity != repository:
                failures.append((3, WrongSubjectError(subject, digest,
                                                      f"it signs {named} in {identity}, not in {repository}")))
            else:
                return Verified(subject, digest, m.digest, doc, checked, manifests)
    if not failures:
        raise UnsignedError(subject, digest)
    rank, error = max(failures, key=lambda f: f[0])
    if isinstance(error, BadSignatureError):
        error = BadSignatureError(subject, digest, key_name, checked)
    raise error
