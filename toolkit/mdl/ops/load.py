"""`mdl load`: every model of an OCI layout (directory or tar) copied into the store, tagged by its
ref.names.

A directory and a tar are both sources of the one copy (`layout.dir`, `layout.tar`). Every manifest
is checked against the project's schemas (its profile chosen by its config media type), and so is
its config, before any blob is copied; manifests are stored and tagged only once every model's blobs
are in, and on any failure the blobs this load added are deleted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..content.copy import copy_model
from ..content.descriptor import INDEX_TYPES, MANIFEST_TYPES, Descriptor, Index, Manifest, load_json_document
from ..content.transfer import BlobSource, NoProgress, Progress
from ..errors import DigestMismatchError, ReferenceFormatError, UsageError
from ..layout.common import LayoutError
from ..layout.dir import LayoutDir
from ..layout.tar import TarSource
from ..reference import Reference, parse_reference
from ..signing.bundle import is_bundle_manifest
from ..signing.cosign import is_signature_manifest, signature_tag
from ..signing.policy import is_cosign_bundle_candidate
from ..spec import schemas
from ..store import LayoutStore
from ..store.index import ref_name
from ..store.sides import StoreTarget


# the referrers fallback tag of a manifest (spec/signing.md §5), bare as oras backup names it, or in a reference
_FALLBACK_TAG = re.compile(r"(?:^|:)sha256-[0-9a-f]{64}$")
_BARE_SIG_TAG = re.compile(r"^sha256-([0-9a-f]{64})\.sig$")


@dataclass
class LoadedModel:
    digest: str
    tags: list[str]  # normalized references it is tagged with now (empty: kept untagged)
    ignored_names: list[str] = field(default_factory=list)  # ref.names that are not references ("latest")


@dataclass
class LoadResult:
    source: str
    models: list[LoadedModel]
    added: list[str]  # blobs the store did not have before


def load_layout(store: LayoutStore, path: str | os.PathLike, *, tag: str | None = None,
                progress: Progress | None = None, concurrency: int = 4) -> LoadResult:
    """Copy every model of an OCI layout (directory or tar) into the store, tagged by its ref.names.

    `tag` also tags the loaded model (the layout must hold exactly one): for layouts whose ref.name is
    not a reference (skopeo's plain `latest`). Nothing stays in the store when it fails.
    """
    progress = progress if progress is not None else NoProgress()
    path = Path(path)
    extra = parse_reference(tag) if tag else None
    if extra is not None and extra.digest is not None:
        raise UsageError(f"--tag {tag} names a digest", "give a name and tag, e.g. org/model:v1")
    if not path.exists():
        raise LayoutError(f"{path}: no such file or directory", "name an OCI layout directory or tar")
    target = StoreTarget(store)
    try:
        with store.writing():
            if path.is_dir():
                src = LayoutDir(path)
                src.check_layout()
                models = _load(src, str(path), src.read_index(), target, progress, concurrency, extra)
            else:
                with TarSource(path) as tar:
                    # a tar is read where its members lie: one transfer at a time keeps that one pass
                    models = _load(tar, str(path), tar.entries, target, progress, 1, extra)
    except BaseException:
        store.discard_unreferenced(target.added)
        raise
    return LoadResult(str(path), models, list(target.added))


@dataclass
class _Plan:
    manifest: Manifest
    tags: list[str]
    ignored: list[str]
    signature: bool = False  # a cosign signature manifest that travels with its model (spec/signing.md)


def _load(src: LayoutDir | TarSource, where: str, entries: list[dict], target: StoreTarget, progress: Progress,
          concurrency: int, extra: Reference | None) -> list[LoadedModel]:
    plans = _plan(where, entries, src.read_blob, extra)
    hold = _HoldManifests(target)
    try:
        for p in plans:
            copy_model(src, hold, p.manifest, p.tags, concurrency=concurrency, progress=progress)
    except DigestMismatchError as e:
        if isinstance(src, TarSource):  # say which member of the archive is wrong
            raise DigestMismatchError(src.describe(e.expected), e.expected, e.actual, e.expected_size,
                                      e.actual_size) from None
        raise
    for p in sorted(plans, key=lambda p: p.signature):  # models first, then their signatures
        target.put_manifest(p.manifest, p.tags)
    return [LoadedModel(p.manifest.digest, p.tags, p.ignored) for p in plans if not p.signature]


def _plan(where: str, entries: list[dict], read: Callable[[Descriptor, str], bytes],
          extra: Reference | None) -> list[_Plan]:
    """Each manifest of index.json checked against its schemas, with the tags its ref.names give.
    `read(desc, what)` returns a small blob's verified bytes."""
    plans: dict[str, _Plan] = {}
    referrers: list[Descriptor] = []  # the manifests that referrers fallback indexes list
    for i, d in enumerate(entries):
        desc = Descriptor.from_dict(d, what=f"{where} index.json", path=f"$.manifests[{i}]")
        if desc.media_type in INDEX_TYPES:
            if not _FALLBACK_TAG.search(ref_name(d) or ""):
                raise LayoutError(f"{where}: entry {i} of index.json is an image index ({desc.digest})",
                                  "mdl loads model manifests; copy the model out of the index first")
            # a referrers list under its fallback tag (`oras backup` of a repository): not loaded, but
            # the signatures it lists are (spec/signing.md §6)
            index = Index.parse(read(desc, "referrers index"), desc.digest)
            referrers += [r for r in index.manifests if r.media_type in MANIFEST_TYPES]
            continue
        if desc.media_type not in MANIFEST_TYPES:
            raise LayoutError(f"{where}: entry {i} of index.json has media type {desc.media_type!r}, "
                              "not an image manifest", "the layout is not a model layout")
        if desc.digest not in plans:
            manifest = Manifest.parse(read(desc, "manifest"), desc.digest)
            signature = is_signature_manifest(manifest)
            if not signature:
                _check_model(where, manifest, read)
            plans[desc.digest] = _Plan(manifest, [], [], signature)
        plan = plans[desc.digest]
        name = ref_name(d)
        if name is None:
            continue
        ref = _name_reference(name)
        if ref is None or ref.digest is not None or ref.tag is None:
            plan.ignored.append(name)
        elif str(ref) not in plan.tags:
            plan.tags.append(str(ref))
    for r in referrers:
        if r.digest not in plans:
            manifest = Manifest.parse(read(r, "manifest"), r.digest)
            if is_signature_manifest(manifest):  # other referrers (an SBOM, ...) stay behind
                plans[r.digest] = _Plan(manifest, [], [], True)
    models = [p for p in plans.values() if not p.signature]
    if not models:
        raise LayoutError(f"{where} holds no model (index.json lists no manifest)", "save a model into it first")
    if extra is not None:
        if len(models) != 1:
            raise UsageError(f"--tag names one model, but {where} holds {len(models)}",
                             "load without --tag, then tag the models with `mdl tag`")
        [plan] = models
        if str(extra) not in plan.tags:
            plan.tags.append(str(extra))
    return _name_signatures(plans)


def _name_signatures(plans: dict[str, _Plan]) -> list[_Plan]:
    """The plans, with each signature manifest the layout lists without a name (as `oras backup
    --include-referrers` lists referrers) named `<repository>:sha256-<hex>.sig` beside the model its
    `subject` names, for each repository the model is tagged in and no signature holds yet: cosign
    bundles first (they name no repository), then legacy signature manifests. An unnamed one that
    gets no name (a model-signing bundle, a second signature, a model with no tag) is not loaded: the
    store keeps signatures by name only (spec/signing.md §6)."""
    taken = {t for p in plans.values() if p.signature for t in p.tags}
    unnamed = [p for p in plans.values() if p.signature and not p.tags]
    unnamed.sort(key=lambda p: not is_cosign_bundle_candidate(p.manifest))
    for p in unnamed:
        if is_bundle_manifest(p.manifest) and not is_cosign_bundle_candidate(p.manifest):
            continue
        model = plans.get(_signed_digest(p) or "")
        if model is None or model.signature:
            continue
        for tag in model.tags:
            ref = parse_reference(tag)
            name = str(Reference(ref.registry, ref.repository, signature_tag(model.manifest.digest), None))
            if name not in taken:
                taken.add(name)
                p.tags.append(name)
    return [p for p in plans.values() if not p.signature or p.tags]


def _signed_digest(p: _Plan) -> str | None:
    """The manifest a signature manifest signs, as it says: its `subject`, else (cosign's legacy form
    has none) its bare `.sig` tag, `sha256-<hex>.sig`, as oras backup names it."""
    if p.manifest.subject is not None:
        return p.manifest.subject.digest
    for name in p.ignored:
        if (m := _BARE_SIG_TAG.match(name)) is not None:
            return "sha256:" + m.group(1)
    return None


def _name_reference(name: str) -> Reference | None:
    """The reference a ref.name gives, or None. A bare word is an OCI layout's tag-only name (skopeo's
    `latest`), not a model name: `docker.io/ai/latest:latest` is surely not what was meant."""
    if not any(c in name for c in "/:@"):
        return None
    try:
        return parse_reference(name)
    except ReferenceFormatError:
        return None


def _check_model(where: str, manifest: Manifest, read: Callable[[Descriptor, str], bytes]) -> None:
    cmt = manifest.config.media_type
    mschema = schemas.manifest_schema_for(cmt)
    cschema = schemas.config_schema_for(cmt)
    if mschema is None or cschema is None:
        raise LayoutError(f"{where}: manifest {manifest.digest} has config media type {cmt!r}, "
                          "which is not a model config",
                          "mdl loads Docker model artifacts and CNCF ModelPack models")
    schemas.check(manifest.as_dict(), mschema, f"{where}: manifest {manifest.digest}")
    config = load_json_document(read(manifest.config, "config"), f"{where}: config {manifest.config.digest}")
    schemas.check(config, cschema, f"{where}: config {manifest.config.digest}")


class _HoldManifests:
    """A BlobTarget that passes blobs through and keeps manifests back until every model is copied."""

    def __init__(self, inner: StoreTarget):
        self.inner = inner

    def has_blob(self, desc: Descriptor) -> bool:
        return self.inner.has_blob(desc)

    def put_blob(self, desc: Descriptor, source: BlobSource, progress: Progress) -> str:
        return self.inner.put_blob(desc, source, progress)

    def put_manifest(self, manifest: Manifest, tags: list[str]) -> None:
        pass  # stored by _load once every model's blobs are in
