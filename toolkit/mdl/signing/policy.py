"""Which signatures pass: one that verifies with the trusted key and names exactly the model's digest,
in either of cosign's forms (spec/signing.md §7). The same rule for the registry and the local store.

- bundle (cosign v3): a DSSE envelope over an in-toto statement whose predicate type is cosign's
  `sign/v1` and whose subjects include the manifest's digest;
- legacy (`.sig`, simple signing): a payload naming the digest and the repository (Docker Hub's
  `index.docker.io` and `docker.io` are one registry, spec/references.md).

Bundles are tried first, then legacy signatures, as cosign does; any one that passes is enough. When
none does, the failure that came closest to passing is raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..content.descriptor import Descriptor, Manifest, load_json_document
from ..content.digest import sha256_bytes
from ..errors import DigestMismatchError, MdlError, SchemaViolationError
from ..reference import parse_reference
from ..spec import mediatypes as mt
from ..spec import schemas
from .bundle import (COSIGN_SIGN_PREDICATE, BundleFormatError, bundle_predicate_type, is_bundle_manifest,
                     parse_bundle, subject_digests)
from .cosign import PAYLOAD_SCHEMA, PAYLOAD_TYPE
from .errors import (BadSignatureError, KeylessSignatureError, PayloadDigestMismatchError, UnsignedError,
                     WrongSubjectError)
from .keys import signature_valid

BUNDLE, LEGACY = "bundle", "legacy"
# How close a failed signature came to passing: the highest is reported.
_BAD, _KEYLESS, _DAMAGED, _WRONG = 1, 2, 3, 4


@dataclass
class Verified:
    subject: str
    digest: str
    signature_manifest: str  # digest of the manifest holding the signature that verified
    payload: dict  # the legacy payload, or the bundle's statement
    checked: int  # signatures examined
    manifests: list[Manifest] = field(default_factory=list)  # every signature manifest found
    form: str = LEGACY  # which of cosign's forms verified: bundle or legacy
    key: str = ""  # the key that verified it, as named by the caller

    @property
    def annotations(self) -> dict | None:
        """What was signed beside the digest: the payload's `optional`, or the statement subject's
        annotations."""
        if self.form == LEGACY:
            return self.payload.get("optional")
        for s in self.payload.get("subject") or []:
            if isinstance(s, dict) and "sha256:" + str((s.get("digest") or {}).get("sha256")) == self.digest:
                return s.get("annotations") or None
        return None

    def as_dict(self) -> dict:
        return {"ok": True, "subject": self.subject, "digest": self.digest, "form": self.form, "key": self.key,
                "signatureManifest": self.signature_manifest, "checked": self.checked,
                "optional": self.annotations}


def same_repository(a: str, b: str) -> bool:
    """Whether two `registry/repository` names are one repository, as references normalize them
    (`index.docker.io/x/y` is `docker.io/x/y`)."""
    return a == b or _normalized(a) == _normalized(b)


def _normalized(name: str) -> str:
    try:
        return parse_reference(name).name
    except MdlError:
        return name


def is_cosign_bundle_candidate(manifest: Manifest) -> bool:
    """A bundle referrer that may hold a cosign signature: its annotation announces cosign's predicate,
    or nothing (the statement decides). Model-signing bundles are another signature, of the files."""
    return is_bundle_manifest(manifest) and bundle_predicate_type(manifest) in (None, COSIGN_SIGN_PREDICATE)


class _Check:
    """One run of the policy: the failures seen so far and how many signatures were examined."""

    def __init__(self, subject: str, repository: str, digest: str, read: Callable[[Descriptor], bytes],
                 public_key):
        self.subject, self.repository, self.digest = subject, repository, digest
        self.read, self.public_key = read, public_key
        self.checked = 0
        self.failures: list[tuple[int, MdlError]] = []

    def fail(self, rank: int, error: MdlError) -> None:
        self.failures.append((rank, error))

    def wrong(self, problem: str, expected: str | None = None) -> None:
        self.fail(_WRONG, WrongSubjectError(self.subject, self.digest, problem, expected))

    def blob(self, layer: Descriptor) -> bytes | None:
        """The layer's bytes if they hash to its digest; else the failure is recorded."""
        try:
            data = self.read(layer)
        except DigestMismatchError as e:
            self.fail(_DAMAGED, PayloadDigestMismatchError(layer.digest, e.actual))
            return None
        actual = sha256_bytes(data)
        if actual != layer.digest:
            self.fail(_DAMAGED, PayloadDigestMismatchError(layer.digest, actual))
            return None
        return data

    def bundle(self, layer: Descriptor) -> dict | None:
        """The statement of a bundle layer that verifies and names the digest, else None."""
        self.checked += 1
        data = self.blob(layer)
        if data is None:
            return None
        try:
            b = parse_bundle(data)
        except BundleFormatError:
            self.fail(_BAD, BadSignatureError(self.subject, self.digest, "", 0))
            return None
        if b.keyless:
            self.fail(_KEYLESS, KeylessSignatureError(self.subject, self.digest))
            return None
        if not b.verifies_with(self.public_key):
            self.fail(_BAD, BadSignatureError(self.subject, self.digest, "", 0))
            return None
        try:
            statement = b.statement()
        except SchemaViolationError:
            self.wrong("its bundle's payload is not an in-toto statement")
            return None
        predicate = statement.get("predicateType")
        if predicate != COSIGN_SIGN_PREDICATE:
            self.wrong(f"its statement's predicate type is {predicate!r}, not cosign's signature")
            return None
        if schemas.validate(statement, "cosign-sign-statement"):
            self.wrong("its statement is not a cosign signature statement")
            return None
        named = subject_digests(statement)
        if self.digest not in named:
            self.wrong(f"its statement's subject is {', '.join(named) or 'no sha256 digest'}")
            return None
        return statement

    def legacy(self, layer: Descriptor) -> dict | None:
        """The payload of a simple-signing layer that verifies and names the digest and repository."""
        self.checked += 1
        sig = (layer.annotations or {}).get(mt.ANNOTATION_COSIGN_SIGNATURE)
        payload = self.blob(layer)
        if payload is None:
            return None
        if not sig or not signature_valid(self.public_key, payload, sig):
            self.fail(_BAD, BadSignatureError(self.subject, self.digest, "", 0))
            return None
        try:
            doc = load_json_document(payload, "signature payload")
            if schemas.validate(doc, PAYLOAD_SCHEMA):
                raise KeyError("critical")
            critical = doc["critical"]
            named = critical["image"]["docker-manifest-digest"]
            identity = critical["identity"]["docker-reference"]
            kind = critical["type"]
        except (SchemaViolationError, KeyError, TypeError):
            self.wrong("its payload is not a cosign payload")
            return None
        if kind != PAYLOAD_TYPE:
            self.wrong(f"its payload type is {kind!r}")
        elif named != self.digest:
            self.wrong(f"it signs {named}")
        elif not same_repository(identity, self.repository):
            self.wrong(f"it signs {named} in {identity}", f"in {self.repository}")
        else:
            return doc
        return None


def check_signatures(subject: str, repository: str, digest: str, manifests: list[Manifest],
                     read_payload: Callable[[Descriptor], bytes], public_key, key_name: str) -> Verified:
    """Pass if a signature in `manifests` (bundle referrers, then legacy signature manifests) verifies
    with `public_key` and names exactly `digest` (and, for the legacy form, `repository`); else raise
    the error of the signature that came closest (wrong-subject, digest-mismatch, keyless-unsupported,
    bad-signature), or UnsignedError when there is none."""
    run = _Check(subject, repository, digest, read_payload, public_key)
    for m in manifests:
        if not is_cosign_bundle_candidate(m):
            continue
        for layer in m.layers:
            if layer.media_type == mt.SIGSTORE_BUNDLE and (statement := run.bundle(layer)) is not None:
                return Verified(subject, digest, m.digest, statement, run.checked, manifests, BUNDLE, key_name)
    for m in manifests:
        if is_bundle_manifest(m):
            continue
        for layer in m.layers:
            if layer.media_type == mt.COSIGN_SIMPLESIGNING and (payload := run.legacy(layer)) is not None:
                return Verified(subject, digest, m.digest, payload, run.checked, manifests, LEGACY, key_name)
    if not run.failures:
        raise UnsignedError(subject, digest)
    _rank, error = max(run.failures, key=lambda f: f[0])
    if isinstance(error, BadSignatureError):
        error = BadSignatureError(subject, digest, key_name, run.checked)
    raise error
