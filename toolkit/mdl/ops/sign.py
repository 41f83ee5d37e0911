"""Sign a model in its registry (spec/signing.md), in the forms `format` names:

- `bundle`: a cosign v3 bundle in a referrer manifest pushed by digest (`subject` the model);
- `legacy`: a layer added to the model's `sha256-<hex>.sig` manifest (cosign's simple signing);
- `both` (the default), so verifiers that read only one form all find one;

and, with `model_signing`, an OpenSSF model-signing bundle over the model's files, a referrer too.
Every referrer is also listed in the `sha256-<hex>` fallback index where the registry has no referrers
API. A form this key has already signed for this digest is not added again. `mdl sign` and
`mdl package --push --sign-key` both come here.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import Callable

from ..content.descriptor import Descriptor, Manifest
from ..content.digest import sha256_bytes
from ..errors import DigestMismatchError, MdlError, UsageError
from ..reference import parse_reference
from ..registry.referrers import fetch_manifest_if_present, register_referrer
from ..signing.bundle import (COSIGN_SIGN_PREDICATE, EMPTY_CONFIG, MODEL_SIGNING_PREDICATE, BundleFormatError,
                              build_bundle_manifest, cosign_statement, parse_bundle, sign_bundle)
from ..signing.cosign import build_signature_manifest, make_payload, signature_tag
from ..signing.errors import SignatureError
from ..signing.keys import load_private_key, public_key_hint, sign_payload
from ..signing.modelsig import resources, sign_model_files, signs_files
from ..signing.policy import BUNDLE, LEGACY, check_signatures, is_cosign_bundle_candidate
from ..spec import mediatypes as mt
from .signatures import find_registry_signatures, model_signing_referrers, read_bundle_blob, read_signature_blob

FORMATS = (BUNDLE, LEGACY, "both")
MODEL_SIGNING = "model-signing"


@dataclass
class SignResult:
    reference: str
    digest: str  # the model's manifest digest
    signatures: dict[str, str] = field(default_factory=dict)  # form (bundle, legacy, model-signing) -> manifest
    added: list[str] = field(default_factory=list)  # the forms this run added (others: this key had signed)
    pruned: list[str] = field(default_factory=list)  # dead entries dropped from the referrers fallback index

    @property
    def signature_manifest(self) -> str:
        """The legacy signature manifest, else the bundle's (what `mdl sign` prints)."""
        return self.signatures.get(LEGACY) or self.signatures.get(BUNDLE) or self.signatures[MODEL_SIGNING]

    def as_dict(self) -> dict:
        return {"reference": self.reference, "digest": self.digest, "signature": self.signature_manifest,
                "signatures": self.signatures, "added": self.added, "pruned": self.pruned}


class _BytesSource:
    """The blobs of a new signature manifest, held in memory, as a source for `put_blob`."""

    def __init__(self, blobs: dict[str, bytes]):
        self.blobs = blobs

    def open_blob(self, desc: Descriptor, offset: int = 0):
        return io.BytesIO(self.blobs[desc.digest]), 0


def check_format(format: str, model_signing: bool) -> None:
    """Refuse a combination before anything is loaded or sent."""
    if format not in FORMATS:
        raise UsageError(f"--format {format!r} is not one of {', '.join(FORMATS)}", "e.g. --format both")
    if model_signing and format == LEGACY:
        raise UsageError("--model-signing with --format legacy: cosign v3 would find the model-signing bundle, "
                         "use only bundles, and never reach the .sig signature",
                         "use --format both (the default) or --format bundle with --model-signing")


def sign(repo, reference: str, key_path: str | os.PathLike, *, password: Callable[[], bytes | None],
         annotations: dict[str, str] | None = None, format: str = "both", model_signing: bool = False) -> SignResult:
    """Sign the manifest `reference` (tag or digest) names in `repo` with the private key in `key_path`
    (loaded first, so a bad key fails before any network traffic; `password()` is asked only when the
    key is encrypted). `annotations` are signed with the digest (the legacy payload's `optional`, the
    bundle statement's subject annotations)."""
    check_format(format, model_signing)
    key = load_private_key(key_path, password)
    return sign_with_key(repo, reference, key, annotations, format=format, model_signing=model_signing)


def sign_with_key(repo, reference: str, key, annotations: dict[str, str] | None = None, *,
                  format: str = "both", model_signing: bool = False) -> SignResult:
    """Sign the manifest `reference` names in `repo` with the loaded private `key` (see the module)."""
    check_format(format, model_signing)
    raw, media_type, digest = repo.fetch_manifest_bytes(reference)
    subject = Descriptor(media_type, digest, len(raw))
    result = SignResult(f"{repo.name}@{digest}", digest)
    existing = find_registry_signatures(repo, digest)
    if format in (BUNDLE, "both"):
        _sign_bundle(repo, subject, key, annotations, existing, result)
    if format in (LEGACY, "both"):
        _sign_legacy(repo, subject, key, annotations, result)
    if model_signing:
        _sign_model(repo, subject, Manifest.parse(raw, digest), key, existing, result)
    return result


def _verifies(repo, manifest: Manifest, public_key, digest: str) -> bool:
    """Whether `manifest` holds a signature of `digest` by `public_key` (the policy's rule)."""
    try:
        check_signatures(repo.name, repo.name, digest, [manifest], lambda d: read_signature_blob(repo, d),
                         public_key, "")
        return True
    except (SignatureError, DigestMismatchError):
        return False


def _push_referrer(repo, manifest: Manifest, blobs: dict[str, bytes], tags: list[str], result: SignResult) -> None:
    source = _BytesSource(blobs)
    for d in manifest.blob_descriptors():
        repo.put_blob(d, source)
    repo.put_manifest_bytes(manifest.raw, mt.OCI_MANIFEST, manifest.digest, tags)
    _register(repo, manifest, result)


def _register(repo, manifest: Manifest, result: SignResult) -> None:
    for d in register_referrer(repo, result.digest, manifest.descriptor()):
        if d not in result.pruned:
            result.pruned.append(d)


def _sign_bundle(repo, subject: Descriptor, key, annotations, existing: list[Manifest], result: SignResult) -> None:
    public = key.public_key()
    for m in existing:
        if is_cosign_bundle_candidate(m) and _verifies(repo, m, public, subject.digest):
            result.signatures[BUNDLE] = m.digest
            _register(repo, m, result)  # listed again if the fallback index lost it
            return
    bundle = sign_bundle(key, cosign_statement(subject.digest, annotations), public_key_hint(public))
    manifest = build_bundle_manifest(subject, bundle, COSIGN_SIGN_PREDICATE)
    _push_referrer(repo, manifest, {manifest.layers[0].digest: bundle, manifest.config.digest: EMPTY_CONFIG},
                   [], result)
    result.signatures[BUNDLE] = manifest.digest
    result.added.append(BUNDLE)


def _sign_legacy(repo, subject: Descriptor, key, annotations, result: SignResult) -> None:
    digest = subject.digest
    layers: list[Descriptor] = []
    got = fetch_manifest_if_present(repo, signature_tag(digest))
    if got is not None:
        old = Manifest.parse(got[0], got[2])
        layers = [d for d in old.layers if d.media_type == mt.COSIGN_SIMPLESIGNING]
        if _verifies(repo, old, key.public_key(), digest):  # this key signed it already
            result.signatures[LEGACY] = old.digest
            _register(repo, old, result)
            return
    payload = make_payload(repo.name, digest, annotations)
    layer = Descriptor(mt.COSIGN_SIMPLESIGNING, sha256_bytes(payload), len(payload),
                       annotations={mt.ANNOTATION_COSIGN_SIGNATURE: sign_payload(key, payload)})
    manifest, config = build_signature_manifest(subject, [*layers, layer])
    _push_referrer(repo, manifest, {layer.digest: payload, manifest.config.digest: config},
                   [signature_tag(digest)], result)
    result.signatures[LEGACY] = manifest.digest
    result.added.append(LEGACY)


def _sign_model(repo, subject: Descriptor, model: Manifest, key, existing: list[Manifest], result: SignResult) -> None:
    files = resources(model, result.reference)
    public = key.public_key()
    for m in model_signing_referrers(existing):
        try:
            bundle = parse_bundle(read_bundle_blob(repo, m))
        except (BundleFormatError, MdlError):
            continue
        if signs_files(bundle, public, files):
            result.signatures[MODEL_SIGNING] = m.digest
            _register(repo, m, result)
            return
    name = parse_reference(result.reference).repository.rsplit("/", 1)[-1]
    bundle = sign_model_files(key, name, files)
    manifest = build_bundle_manifest(subject, bundle, MODEL_SIGNING_PREDICATE)
    _push_referrer(repo, manifest, {manifest.layers[0].digest: bundle, manifest.config.digest: EMPTY_CONFIG},
                   [], result)
    result.signatures[MODEL_SIGNING] = manifest.digest
    result.added.append(MODEL_SIGNING)

