"""Signatures checked where they are, with the policy of `mdl.signing.policy`: in a registry (nothing
pulled) or in the local store (offline); and a verified signature copied into the store beside its model,
as `<repo>:sha256-<hex>.sig` (a legacy signature manifest or a bundle referrer, whichever verified), so
the model can be verified again offline (spec/signing.md)."""

from __future__ import annotations

from ..content.copy import copy_model
from ..content.descriptor import Descriptor, Manifest
from ..errors import DigestMismatchError, MdlError, SchemaViolationError
from ..reference import Reference
from ..registry.referrers import fetch_manifest_if_present, list_referrers
from ..content.digest import sha256_bytes
from ..signing.bundle import (MAX_BUNDLE, MODEL_SIGNING_PREDICATE, BundleFormatError, bundle_predicate_type,
                              is_bundle_manifest, parse_bundle)
from ..signing.cosign import MAX_PAYLOAD, is_signature_manifest, local_signature_names, signature_tag
from ..signing.errors import PayloadDigestMismatchError, SignatureError, UnsignedError
from ..signing.policy import Verified, check_signatures
from ..spec import mediatypes as mt
from ..store.sides import StoreTarget


def _read_bounded(repo, desc: Descriptor, limit: int, what: str) -> bytes:
    """A small signature blob from `repo`, refused when its descriptor says it is over `limit` bytes,
    and never read past `limit` + 1 bytes whatever the registry sends."""
    if desc.size > limit:
        raise PayloadDigestMismatchError(desc.digest, f"(a {desc.size}-byte {what}, over the limit)")
    stream, _ = repo.open_blob(desc)
    try:
        return stream.read(limit + 1)
    finally:
        stream.close()


def read_signature_blob(repo, desc: Descriptor) -> bytes:
    """A blob of a signature manifest (payload or config) from `repo`, refused over MAX_PAYLOAD bytes."""
    return _read_bounded(repo, desc, MAX_PAYLOAD, "payload")


# Referrer types that may be a signature manifest: cosign's legacy and bundle forms, none (an entry
# without a type), and the empty config's type cosign 3's fallback entries carry.
_SIGNATURE_TYPES = frozenset({None, mt.COSIGN_SIGNATURE_ARTIFACT_TYPE, mt.SIGSTORE_BUNDLE, mt.OCI_EMPTY})


def find_registry_signatures(repo, digest: str) -> list[Manifest]:
    """Signature manifests of `digest`, both forms: its referrers (the referrers API, else the fallback
    index), then the `.sig` tag; each fetched by digest (so verified), duplicates dropped."""
    found: dict[str, Manifest] = {}
    for d in list_referrers(repo, digest):
        if d.artifact_type not in _SIGNATURE_TYPES or d.digest in found:
            continue
        got = fetch_manifest_if_present(repo, d.digest)
        if got is None:
            continue
        try:
            m = Manifest.parse(got[0], d.digest)
        except SchemaViolationError:
            continue
        if is_signature_manifest(m):
            found[m.digest] = m
    got = fetch_manifest_if_present(repo, signature_tag(digest))
    if got is not None:
        try:
            m = Manifest.parse(got[0], got[2])
            if m.digest not in found:
                found[m.digest] = m
        except SchemaViolationError:
            pass
    return list(found.values())


def model_signing_referrers(manifests: list[Manifest]) -> list[Manifest]:
    """The OpenSSF model-signing bundle referrers among `manifests`, newest first (by their created
    annotation; where to look only: the bundle's signature is what is trusted)."""
    found = [m for m in manifests if is_bundle_manifest(m) and len(m.layers) == 1
             and bundle_predicate_type(m) == MODEL_SIGNING_PREDICATE]
    return sorted(found, key=lambda m: (m.annotations or {}).get(mt.ANNOTATION_CREATED, ""), reverse=True)


def read_bundle_blob(repo, manifest: Manifest) -> bytes:
    """The one layer of a bundle referrer (a model-signing bundle lists every file: up to MAX_BUNDLE
    bytes), its digest checked."""
    layer = manifest.layers[0]
    data = _read_bounded(repo, layer, MAX_BUNDLE, "bundle")
    actual = sha256_bytes(data)
    if actual != layer.digest:
        raise PayloadDigestMismatchError(layer.digest, actual)
    return data


def fetch_model_signature(repo, digest: str, files: list[tuple[str, str]], where: str) -> bytes:
    """The bytes of a model-signing bundle (`model.sig`) of the manifest `digest` whose statement lists
    exactly `files` ((path, sha256 hex), `signing.modelsig.resources`), the newest first; UnsignedError
    when there is none. Which key signed it is for the verifier (`model_signing verify key`) to check."""
    want = sorted(files)
    for m in model_signing_referrers(find_registry_signatures(repo, digest)):
        try:
            data = read_bundle_blob(repo, m)
            listed = parse_bundle(data).statement()["predicate"]["resources"]
            if sorted((r["name"], r["digest"]) for r in listed) == want:
                return data
        except (MdlError, BundleFormatError, KeyError, TypeError):
            continue
    raise UnsignedError(where, digest, "model signature (OpenSSF model signing) of its files",
                        "sign it with `mdl sign REF --key KEY --model-signing`")


def verify_signature_in_registry(repo, ref: Reference, public_key, key_name: str) -> Verified:
    """Verify the manifest `ref` names in `repo` with the signatures the registry holds for it."""
    _raw, _media_type, digest = repo.fetch_manifest_bytes(ref.digest or ref.tag)
    manifests = find_registry_signatures(repo, digest)
    return check_signatures(str(ref), repo.name, digest, manifests,
                            lambda d: read_signature_blob(repo, d), public_key, key_name)


def verify_signature_in_store(store, text: str, digest: str, public_key, key_name: str) -> Verified:
    """Verify `digest` with the signatures stored beside it (see `store_signatures`); `text` names the
    model in messages."""
    last: MdlError | None = None
    for name, sig_digest in local_signature_names(store, digest):
        repository = name[: -len(":" + signature_tag(digest))]
        manifest = store.manifest(sig_digest)
        try:
            return check_signatures(text, repository, digest, [manifest],
                                    lambda d: store.read_blob(d.digest, d.size, MAX_PAYLOAD, what="signature payload"),
                                    public_key, key_name)
        except (SignatureError, DigestMismatchError) as e:
            last = e
    if last is not None:
        raise last
    raise UnsignedError(text, digest)


def store_signatures(store, repo, ref: Reference, verified: Verified) -> str | None:
    """Copy the signature manifest that verified (config, payloads, manifest) from `repo` into the local
    store, through the one copy engine, and name it `<repo>:sha256-<hex>.sig`. Returns its digest."""
    manifest = next((m for m in verified.manifests if m.digest == verified.signature_manifest), None)
    if manifest is None:
        return None
    for d in manifest.blob_descriptors():  # a signature's blobs are small: refuse one that is not
        if d.size > MAX_PAYLOAD:
            raise PayloadDigestMismatchError(d.digest, f"(a {d.size}-byte blob, over the limit)")
    tag = str(Reference(ref.registry, ref.repository, signature_tag(verified.digest), None))
    with store.writing():
        copy_model(repo, StoreTarget(store), manifest, [tag], concurrency=1)
    return manifest.digest
