"""Pull: a model artifact from a registry into the local store.

The manifest is verified against its digest and checked against the schemas before anything is
fetched; the config is fetched and checked next; then the layers move in parallel, each verified
before it becomes visible. The tag is written last, so a failed pull leaves no model behind (blobs
it added are dropped again; partial downloads stay in ingest/ so the next pull resumes them).
With a key to verify, the signature is checked in the registry before any of that (spec/signing.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..artifact_check import check_config, check_manifest
from ..content.copy import copy_model
from ..retry import is_transient
from ..content.transfer import SENT, ModelSource, NoProgress, Progress
from ..reference import Reference
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
    outcomes: dict[str, str] = field(default_factory=dict)  # blob digest -> sent | exists
    signature: Verified | None = None  # the signature that verified, when a key was given


def pull(store: LayoutStore, source: ModelSource, ref: Reference, *, concurrency: int = 4,
         progress: Progress | None = None, verify_key: str | os.PathLike | None = None) -> PullResult:
    """Pull the model `ref` names from `source` (a registry repository when `verify_key` is given)
    into `store`. With `verify_key`, a public key PEM file: refuse a model it did not sign, before
    anything reaches the store; pull exactly the digest that verified (not whatever the tag names
    by then), and store the signature beside the model."""
    verified = None
    if verify_key is not None:
        public_key = load_public_key(verify_key)
        verified = verify_signature_in_registry(source, ref, public_key, os.fspath(verify_key))
        ref = Reference(ref.registry, ref.repository, ref.tag, verified.digest)
    result = _copy_into_store(store, source, ref, concurrency, progress or NoProgress())
    if verified is not None:
        store_signatures(store, source, ref, verified)
        result.signature = verified
    return result


def _copy_into_store(store: LayoutStore, source: ModelSource, ref: Reference, concurrency: int,
                     progress: Progress) -> PullResult:
    reference = str(ref)
    manifest = source.fetch_manifest(ref.digest or ref.tag)
    check_manifest(manifest, reference)
    tags = [str(ref.with_tag(ref.tag))] if ref.tag else []
    target = StoreTarget(store)
    blobs = manifest.blob_descriptors()
    try:
        with store.writing():
            # The config first, quietly (copy_model reports it as present): it must pass its schema
            # before any layer is fetched.
            config_outcome = target.put_blob(manifest.config, source, NoProgress())
            check_config(manifest, store.read_blob(manifest.config.digest, manifest.config.size), reference)
            copied = copy_model(source, target, manifest, tags, concurrency=concurrency, progress=progress)
    except BaseException as e:
        # An interrupted pull keeps what it verified (and its partial files) for the next run, which
        # resumes; a pull refused for its content leaves nothing of the model behind.
        if not (isinstance(e, KeyboardInterrupt) or is_transient(e)):
            store.discard_unreferenced([manifest.digest, *(d.digest for d in blobs)])
        raise
    outcomes = dict(copied.blobs)
    outcomes[manifest.config.digest] = config_outcome
    fetched = copied.sent + (manifest.config.size if config_outcome == SENT else 0)
    return PullResult(reference, manifest.digest, sum(d.size for d in blobs), fetched, outcomes)
