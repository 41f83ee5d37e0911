"""Pull: a model artifact from a registry into the local store.

The manifest is verified against its digest and checked against the schemas before anything is
fetched; the config is fetched and checked next; then the layers move in parallel, each verified
before it becomes visible. The tag is written last, so a failed pull leaves no model behind (blobs
it added are dropped again; partial downloads stay in ingest/ so the next pull resumes them).
With a key to verify, the signature is checked in the registry before any of that (spec/signing.md).

With `include`/`exclude` path patterns (`placement.select`), only the layers they select are fetched
(modctl's `fetch`): the config always is, the manifest is stored, and the model is marked partial in
the index (`store.index.PARTIAL_ANNOTATION`) until a later pull brings the rest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..artifact_check import check_config, check_manifest
from ..content.copy import copy_model
from ..retry import is_transient
from ..content.descriptor import Descriptor, Manifest
from ..content.transfer import EXISTS, SENT, BlobSource, ModelSource, NoProgress, Progress
from ..placement import check_patterns, no_match_error, place, select
from ..reference import Reference, parse_reference
from ..signing.keys import load_public_key
from ..signing.policy import Verified
from ..store import LayoutStore
from ..store.sides import StoreTarget
from .signatures import store_signatures, verify_signature_in_registry


@dataclass
class PullResult:
    reference: str
    digest: str
    size: int  # bytes of config and layers
    fetched: int  # bytes actually transferred
    outcomes: dict[str, str] = field(default_factory=dict)  # blob digest -> sent | exists | skipped
    signature: Verified | None = None  # the signature that verified, when a key was given
    partial: bool = False  # some layers were left out (include/exclude) and are not in the store
    absent: list[str] = field(default_factory=list)  # the file paths of those layers

SKIPPED = "skipped"  # put_blob's outcome for a layer the patterns left out


class SubsetTarget:
    """A BlobTarget over the store that copies only the blobs in `wanted` (the others are SKIPPED, or
    EXISTS when the store has them), then stores the manifest, marked partial while any layer is
    absent. With `keep_manifest=False` it stores no manifest at all: a scratch store of blobs."""

    def __init__(self, inner: StoreTarget, wanted: set[str], *, keep_manifest: bool = True):
        self.inner, self.wanted, self.keep_manifest = inner, wanted, keep_manifest

    def has_blob(self, desc: Descriptor) -> bool:
        return self.inner.has_blob(desc)

    def put_blob(self, desc: Descriptor, source: BlobSource, progress: Progress) -> str:
        if desc.digest not in self.wanted:
            return EXISTS if self.inner.has_blob(desc) else SKIPPED
        return self.inner.put_blob(desc, source, progress)

    def put_manifest(self, manifest: Manifest, tags: list[str]) -> None:
        if not self.keep_manifest:
            return
        store = self.inner.store
        if all(store.has_blob(d.digest) for d in manifest.blob_descriptors()):
            self.inner.put_manifest(manifest, tags)  # complete after all: a full model
            return
        had = store.has_blob(manifest.digest)
        store.put_manifest(manifest, partial=True)
        if not had:
            self.inner.added.append(manifest.digest)
        for tag in tags:
            store.add_tag(manifest.digest, parse_reference(tag), partial=True)
        if not tags:
            store.add_untagged(manifest.digest, partial=True)


def pull(store: LayoutStore, source: ModelSource, ref: Reference, *, concurrency: int = 4,
         progress: Progress | None = None, verify_key: str | os.PathLike | None = None,
         include: list[str] | tuple[str, ...] = (), exclude: list[str] | tuple[str, ...] = ()) -> PullResult:
    """Pull the model `ref` names from `source` (a registry repository when `verify_key` is given)
    into `store`. With `verify_key`, a public key PEM file: refuse a model it did not sign, before
    anything reaches the store; pull exactly the digest that verified (not whatever the tag names
    by then), and store the signature beside the model. With `include`/`exclude` patterns, only the
    layers they select (the model is stored partial unless that is all of them)."""
    include, exclude = check_patterns(include, "--include"), check_patterns(exclude, "--exclude")
    verified = None
    if verify_key is not None:
        public_key = load_public_key(verify_key)
        verified = verify_signature_in_registry(source, ref, public_key, os.fspath(verify_key))
        ref = Reference(ref.registry, ref.repository, ref.tag, verified.digest)
    result = _copy_into_store(store, source, ref, concurrency, progress or NoProgress(), include, exclude)
    if verified is not None:
        store_signatures(store, source, ref, verified)
        result.signature = verified
    return result


def _copy_into_store(store: LayoutStore, source: ModelSource, ref: Reference, concurrency: int,
                     progress: Progress, include: list[str], exclude: list[str]) -> PullResult:
    reference = str(ref)
    manifest = source.fetch_manifest(ref.digest or ref.tag)
    check_manifest(manifest, reference)
    tags = [str(ref.with_tag(ref.tag))] if ref.tag else []
    target = StoreTarget(store)
    blobs = manifest.blob_descriptors()
    copy_target: StoreTarget | SubsetTarget = target
    placements = []
    if include or exclude:
        placements = place(manifest, reference)
        chosen = select(placements, include, exclude)
        if not chosen:
            raise no_match_error(reference, placements, include, exclude)
        wanted = {manifest.config.digest, *(p.desc.digest for p in chosen)}
        copy_target = SubsetTarget(target, wanted)
        blobs = [d for d in blobs if d.digest in wanted]
    try:
        with store.writing():
            # The config first, quietly (copy_model reports it as present): it must pass its schema
            # before any layer is fetched.
            config_outcome = target.put_blob(manifest.config, source, NoProgress())
            check_config(manifest, store.read_blob(manifest.config.digest, manifest.config.size), reference)
            copied = copy_model(source, copy_target, manifest, tags, concurrency=concurrency, progress=progress)
    except BaseException as e:
        # An interrupted pull keeps what it verified (and its partial files) for the next run, which
        # resumes; a pull refused for its content leaves nothing of the model behind.
        if not (isinstance(e, KeyboardInterrupt) or is_transient(e)):
            store.discard_unreferenced([manifest.digest, *(d.digest for d in blobs)])
        raise
    outcomes = dict(copied.blobs)
    outcomes[manifest.config.digest] = config_outcome
    fetched = copied.sent + (manifest.config.size if config_outcome == SENT else 0)
    absent = [p.path for p in placements if not store.has_blob(p.desc.digest)]
    return PullResult(reference, manifest.digest, sum(d.size for d in blobs), fetched, outcomes,
                      partial=bool(absent), absent=absent)
