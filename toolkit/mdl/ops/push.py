"""Push: a model from the local store to a registry.

What fails the schemas is never pushed. Blobs the registry has are skipped (HEAD), blobs held by
another repository of the same registry are mounted, the rest are streamed from the store and
hashed on the way; the manifest goes last, under the target's tag.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..artifact_check import check_config, check_manifest
from ..content.copy import copy_model
from ..content.transfer import BlobTarget, NoProgress, Progress
from ..errors import UsageError
from ..model_check import refuse_partial
from ..reference import Reference, parse_reference
from ..store import LayoutStore
from ..store.sides import StoreSource


@dataclass
class PushResult:
    reference: str  # TARGET@sha256:...
    digest: str
    size: int
    sent: int
    outcomes: dict[str, str] = field(default_factory=dict)  # blob digest -> sent | exists | mounted


def push(store: LayoutStore, target_repo: BlobTarget, source: str, target: Reference, *,
         concurrency: int = 4, progress: Progress | None = None) -> PushResult:
    """Push the model `source` (a reference or ID in `store`) to `target_repo` as `target`. A registry
    repository is offered the repositories it may mount this model's blobs from, for this push only."""
    progress = progress or NoProgress()
    digest = store.resolve(source)
    mounts = hasattr(target_repo, "mount_from")  # a registry repository can link blobs from another one
    if mounts:
        mount_from = target_repo.mount_from
        target_repo.mount_from = mount_candidates(store, digest, target)
    try:
        if target.digest and target.digest != digest:
            raise UsageError(f"{target} names digest {target.digest}, but {source} is {digest}",
                             "push to a tag, or to the model's own digest")
        manifest = store.manifest(digest)
        refuse_partial(store, source, digest, manifest, "to push it", roles=None)  # a registry gets whole models
        check_manifest(manifest, source)
        check_config(manifest, store.read_blob(manifest.config.digest, manifest.config.size), source)
        tags = [target.tag] if target.tag else []
        copied = copy_model(StoreSource(store), target_repo, manifest, tags, concurrency=concurrency,
                            progress=progress)
    finally:
        if mounts:
            target_repo.mount_from = mount_from
    blobs = manifest.blob_descriptors()
    return PushResult(f"{target.name}@{digest}", digest, sum(d.size for d in blobs), copied.sent, dict(copied.blobs))


def mount_candidates(store: LayoutStore, digest: str, target: Reference) -> list[str]:
    """Repositories of the target's registry that the store knows hold blobs of this model: the
    registry can link those blobs (cross-repository mount) instead of receiving them again."""
    mine = {d.digest for d in store.manifest(digest).blob_descriptors()}
    repos: list[str] = []
    for model in store.models():
        shared = model.digest == digest or mine & {d.digest for d in store.manifest(model.digest).blob_descriptors()}
        if not shared:
            continue
        for tag in model.tags:
            ref = parse_reference(tag)
            if ref.registry == target.registry and ref.repository != target.repository and ref.repository not in repos:
                repos.append(ref.repository)
    return repos
