"""Sign a model in its registry: add a signature layer to the model's `sha256-<hex>.sig` manifest and
register that manifest as a referrer of the model (spec/signing.md)."""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from typing import Callable

from ..content.descriptor import Descriptor, Manifest
from ..content.digest import sha256_bytes
from ..errors import MdlError
from ..registry.referrers import fetch_manifest_if_present, register_referrer
from ..signing.cosign import build_signature_manifest, make_payload, signature_tag
from ..signing.keys import load_private_key, sign_payload, signature_valid
from ..spec import mediatypes as mt
from .signatures import read_signature_blob


@dataclass
class SignResult:
    reference: str
    digest: str  # the model's manifest digest
    signature_manifest: str
    added: bool  # False: this key had signed this digest already
    pruned: list[str]  # dead entries dropped from the referrers fallback index


class _BytesSource:
    """The blobs of a new signature manifest, held in memory, as a source for `put_blob`."""

    def __init__(self, blobs: dict[str, bytes]):
        self.blobs = blobs

    def open_blob(self, desc: Descriptor, offset: int = 0):
        return io.BytesIO(self.blobs[desc.digest]), 0


def sign(repo, reference: str, key_path: str | os.PathLike, *, password: Callable[[], bytes | None],
         annotations: dict[str, str] | None = None) -> SignResult:
    """Sign the manifest `reference` (tag or digest) names in `repo` with the private key in `key_path`
    (loaded first, so a bad key fails before any network traffic; `password()` is asked only when the
    key is encrypted). `annotations` go in the payload's `optional`."""
    key = load_private_key(key_path, password)
    return sign_with_key(repo, reference, key, annotations)


def sign_with_key(repo, reference: str, key, annotations: dict[str, str] | None = None) -> SignResult:
    """Sign the manifest `reference` names in `repo` with the loaded private `key`: add a signature layer
    to its `sha256-<hex>.sig` manifest (unless this key signed it already) and register that manifest as
    a referrer."""
    raw, media_type, digest = repo.fetch_manifest_bytes(reference)
    subject = Descriptor(media_type, digest, len(raw))
    layers: list[Descriptor] = []
    existing = fetch_manifest_if_present(repo, signature_tag(digest))
    if existing is not None:
        old = Manifest.parse(existing[0], existing[2])
        layers = [d for d in old.layers if d.media_type == mt.COSIGN_SIMPLESIGNING]
        public = key.public_key()
        if any(_signs(repo, layer, public, digest) for layer in layers):  # nothing to add
            pruned = register_referrer(repo, digest, old.descriptor())
            return SignResult(f"{repo.name}@{digest}", digest, old.digest, False, pruned)
    payload = make_payload(repo.name, digest, annotations)
    layer = Descriptor(mt.COSIGN_SIMPLESIGNING, sha256_bytes(payload), len(payload),
                       annotations={mt.ANNOTATION_COSIGN_SIGNATURE: sign_payload(key, payload)})
    manifest, config = build_signature_manifest(subject, [*layers, layer])
    source = _BytesSource({layer.digest: payload, manifest.config.digest: config})
    for d in (layer, manifest.config):
        repo.put_blob(d, source)
    repo.put_manifest_bytes(manifest.raw, mt.OCI_MANIFEST, manifest.digest, [signature_tag(digest)])
    pruned = register_referrer(repo, digest, manifest.descriptor())
    return SignResult(f"{repo.name}@{digest}", digest, manifest.digest, True, pruned)


def _signs(repo, layer: Descriptor, public_key, digest: str) -> bool:
    """Whether signature `layer` is one by `public_key` over a payload naming `digest` (unreadable or
    damaged layers are not)."""
    sig = (layer.annotations or {}).get(mt.ANNOTATION_COSIGN_SIGNATURE)
    try:
        payload = read_signature_blob(repo, layer)
    except MdlError:
        return False
    if sha256_bytes(payload) != layer.digest or not sig or not signature_valid(public_key, payload, sig):
        return False
    try:
        return json.loads(payload)["critical"]["image"]["docker-manifest-digest"] == digest
    except (ValueError, KeyError, TypeError):
        return False
