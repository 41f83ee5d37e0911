"""Extract: a model's files into a plain directory, each at its packaged path (`placement`), verified.

Where the bytes come from:

- a model in the local store is extracted from it: each file is hard-linked to its blob when the
  directory is on the store's file system (no copy; `verify` hashes the linked file once), else, or
  with `copy`, copied and hashed on the way;
- a model not in the store (or the layers a partial one lacks) comes from its registry: the layers are
  pulled (`copy_model`, resumable, each hashed on the way) into a scratch store inside the directory,
  `.mdl-extract/`, linked into place and the scratch store removed; nothing reaches the local store
  unless `keep` (`--store`), which pulls into it (partially, with patterns) and extracts from there.
  An interrupted extract leaves the scratch store, so the next one resumes the download.

Every file is written under a temp name beside its final one and renamed when verified (`ModelDir`),
archive layers are unpacked safely (`layout.unpack`), and nothing is written outside the directory.

With `model_signature`, the model's OpenSSF model signature (a referrer `mdl sign --model-signing`
wrote) is fetched from its registry first and written as `model.sig` beside the files, so
`model_signing verify key DIR --signature DIR/model.sig` checks them (spec/signing.md §11).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..artifact_check import check_config, check_manifest
from ..content.copy import COPY_BUFSIZE, copy_model, read_small_blob
from ..content.descriptor import Manifest
from ..content.transfer import NoProgress, Progress
from ..errors import DigestMismatchError, ModelNotFoundError, UsageError
from ..layout.modeldir import ModelDir
from ..layout.unpack import default_limit, unpack
from ..model_check import PartialModelError
from ..placement import Placement, UnsafePathError, check_patterns, no_match_error, place, select
from ..reference import Reference, model_id_query, parse_reference
from ..retry import is_transient
from ..signing.modelsig import SIGNATURE_FILE, resources
from ..store import LayoutStore
from ..store.sides import StoreTarget
from .pull import SubsetTarget, pull
from .signatures import fetch_model_signature

if TYPE_CHECKING:
    from ..registry.repository import RemoteRepository

SCRATCH = ".mdl-extract"  # the scratch store of a download, inside the target directory

OpenRepository = Callable[[Reference], "RemoteRepository"]  # a type alias is evaluated: keep it quoted


@dataclass
class ExtractedFile:
    path: str  # relative to the directory
    layer: int
    digest: str  # the layer's
    size: int
    how: str  # linked, copied or unpacked


@dataclass
class ExtractResult:
    reference: str
    digest: str
    directory: str
    source: str  # store, registry, or store+registry (a partial model completed from its registry)
    files: list[ExtractedFile] = field(default_factory=list)
    fetched: int = 0  # bytes downloaded
    hashed: bool = True  # every byte placed was hashed in this run (False: links to the store, unverified)
    signature: str | None = None  # model.sig, when the model signature was written

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass
class _Plan:
    reference: str
    manifest: Manifest
    chosen: list[Placement]
    local: bool  # the model is in the local store


def extract(store: LayoutStore, reference: str, directory: str | os.PathLike, *, open_repository: OpenRepository,
            include: list[str] | tuple[str, ...] = (), exclude: list[str] | tuple[str, ...] = (),
            force: bool = False, copy: bool = False, verify: bool = False, keep: bool = False,
            max_unpacked: int | None = None, concurrency: int = 4, progress: Progress | None = None,
            model_signature: bool = False) -> ExtractResult:
    """Place the files of the model `reference` names under `directory` (see the module docstring).
    `include`/`exclude` select layers by path; `force` replaces existing files; `copy` never links;
    `verify` hashes linked files too; `keep` stores what is downloaded; `max_unpacked` bounds what one
    archive layer may unpack to (default: `layout.unpack.default_limit`); `model_signature` also writes
    the model's model-signing signature as model.sig."""
    include, exclude = check_patterns(include, "--include"), check_patterns(exclude, "--exclude")
    if model_signature and (include or exclude):
        raise UsageError("--model-signature covers every file of the model; --include/--exclude leave some out",
                         "extract the whole model to write its model.sig")
    _check_outside_store(store, directory)
    progress = progress if progress is not None else NoProgress()
    fetched = 0
    if keep and _needs_download(store, reference, include, exclude):
        ref = _registry_reference(reference)
        fetched = pull(store, open_repository(ref), ref, concurrency=concurrency, progress=progress,
                       include=include, exclude=exclude).fetched
    plan, repo = _plan(store, reference, include, exclude, open_repository)
    signature = _model_signature(store, reference, plan, repo, open_repository) if model_signature else None
    missing = [p for p in plan.chosen if not store.has_blob(p.desc.digest)]
    source = "store" if not missing else "registry" if not plan.local else "store+registry"
    with ModelDir(directory, force=force, reserved=SCRATCH) as target:
        for p in plan.chosen:  # refuse before anything moves: a path outside, or a file in the way
            if not p.archive:
                target.claim(p.path, p.describe())
                target.check_free(p.path)
        if signature is not None:
            target.claim(SIGNATURE_FILE, "the model signature")
            target.check_free(SIGNATURE_FILE)
        scratch = _Scratch(target) if missing else None
        try:
            if scratch is not None:
                _fetch(repo, plan, missing, scratch, concurrency, progress)
            result = ExtractResult(plan.reference, plan.manifest.digest, str(target.root), source,
                                   fetched=fetched + (scratch.sent if scratch else 0))
            for p in plan.chosen:
                local = store.has_blob(p.desc.digest)
                owner = store if local else scratch.store  # type: ignore[union-attr]
                _place(owner, p, target, result, plan.reference, progress, copy=copy and local,
                       verify=verify and local, fresh=not local, limit=max_unpacked)
            if signature is not None:
                _write_signature(target, signature)
                result.signature = SIGNATURE_FILE
            target.sync()
        except BaseException as e:
            if scratch is not None and not (isinstance(e, KeyboardInterrupt) or is_transient(e)):
                scratch.remove()
            raise
        if scratch is not None:
            scratch.remove()
    return result


def _model_signature(store: LayoutStore, reference: str, plan: _Plan, repo: "RemoteRepository | None",
                     open_repository: OpenRepository) -> bytes:
    """The model-signing bundle over the model's files, from its registry (before any file moves)."""
    files = resources(plan.manifest, plan.reference)
    if repo is None:
        if plan.local and store.match_id(reference, [plan.manifest.digest]) == plan.manifest.digest:
            raise UsageError(f"{reference} names a stored model by ID: its model signature is in its registry",
                             "name it by its reference (registry/org/model:tag) with --model-signature")
        repo = open_repository(parse_reference(reference))
    return fetch_model_signature(repo, plan.manifest.digest, files, plan.reference)


def _write_signature(target: ModelDir, data: bytes) -> None:
    pending = target.new_file(SIGNATURE_FILE)
    try:
        pending.write(memoryview(data))
        pending.commit()
    except BaseException:
        pending.abort()
        raise


def _needs_download(store: LayoutStore, reference: str, include: list[str], exclude: list[str]) -> bool:
    digest = _local_digest(store, reference)
    if digest is None:
        return True
    manifest = store.manifest(digest)
    chosen = select(place(manifest, reference), include, exclude)
    return any(not store.has_blob(p.desc.digest) for p in chosen)


def _check_outside_store(store: LayoutStore, directory: str | os.PathLike) -> None:
    """A model's files never go into the store itself (a file named index.json would replace its index)."""
    root, target = os.path.realpath(store.root), os.path.realpath(directory)
    if target == root or target.startswith(root + os.sep):
        raise UsageError(f"{directory} is inside the local store ({store.root})",
                         "extract into a directory of its own")


def _registry_reference(reference: str) -> Reference:
    """The reference to fetch a model not in the store by; a full model ID is only ever a stored model."""
    query = model_id_query(reference)
    if query is not None and (query.startswith("sha256:") or len(query) == 64):
        raise ModelNotFoundError(reference)
    return parse_reference(reference)


def _local_digest(store: LayoutStore, reference: str) -> str | None:
    try:
        return store.resolve(reference)
    except ModelNotFoundError:
        return None


def _plan(store: LayoutStore, reference: str, include: list[str], exclude: list[str],
          open_repository: OpenRepository) -> tuple[_Plan, "RemoteRepository | None"]:
    """The manifest (from the store, else the registry, verified and checked) and the layers chosen."""
    digest = _local_digest(store, reference)
    repo = None
    if digest is not None:
        manifest = store.manifest(digest)
        shown = reference
    else:
        ref = _registry_reference(reference)
        repo = open_repository(ref)
        shown = str(ref)
        manifest = repo.fetch_manifest(ref.digest or ref.tag)
        check_manifest(manifest, shown)
        check_config(manifest, read_small_blob(repo, manifest.config), shown)
    placements = place(manifest, shown)
    chosen = select(placements, include, exclude)
    if not chosen:
        raise no_match_error(shown, placements, include, exclude)
    plan = _Plan(shown, manifest, chosen, digest is not None)
    if digest is not None and any(not store.has_blob(p.desc.digest) for p in chosen):
        if store.match_id(reference, [digest]) == digest:  # named by ID: no registry to ask
            missing = [p.path for p in chosen if not store.has_blob(p.desc.digest)]
            raise PartialModelError(reference, missing, "to extract it", "name it by its reference (registry/org/"
                                    "model:tag), which mdl fetches the missing files from, or pull it whole")
        repo = open_repository(parse_reference(reference))
    return plan, repo


class _Scratch:
    """The scratch store of a download inside the target directory (never the user's store)."""

    def __init__(self, target: ModelDir):
        path = target.root / SCRATCH
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            raise UnsafePathError(str(target.root), SCRATCH, f"{path} exists and is not a directory mdl made")
        self.store = LayoutStore(path)
        self.sent = 0

    def remove(self) -> None:
        shutil.rmtree(self.store.root, ignore_errors=True)


def _fetch(repo: "RemoteRepository | None", plan: _Plan, missing: list[Placement], scratch: _Scratch,
           concurrency: int, progress: Progress) -> None:
    """The layers `missing` downloaded into the scratch store, each verified as it arrives."""
    assert repo is not None
    scratch.store.ensure_layout()
    scratch.store.check_space(sum(p.desc.size for p in missing if not scratch.store.has_blob(p.desc.digest)))
    sub = SubsetTarget(StoreTarget(scratch.store), {p.desc.digest for p in missing}, keep_manifest=False)
    with scratch.store.writing():
        scratch.sent = copy_model(repo, sub, plan.manifest, [], concurrency=concurrency, progress=progress).sent


def _place(owner: LayoutStore, p: Placement, target: ModelDir, result: ExtractResult, shown: str,
           progress: Progress, *, copy: bool, verify: bool, fresh: bool, limit: int | None) -> None:
    """One layer into place from `owner` (a store holding its blob; `fresh`: hashed by this run)."""
    desc = p.desc
    progress.start(desc, "layer")
    if p.archive:
        where = f"{shown} {p.describe()}"
        with owner.open_blob(desc.digest, desc.size) as stream:
            unpacked = unpack(stream, p.compression, target, layer=where,
                              limit=limit or default_limit(p.compression, desc.size))
        unpacked.commit()
        result.files += [ExtractedFile(f.path, p.index, desc.digest, f.size, "unpacked") for f in unpacked.pending]
        progress.done(desc, "unpacked")
        return
    pending = None if copy else target.link_file(owner.blob_path(desc.digest), p.path)
    if pending is not None:
        if pending.size != desc.size:
            pending.abort()
            raise DigestMismatchError(f"{owner.root}: blob", desc.digest, "(not hashed)", desc.size, pending.size)
        if verify:
            pending.verify(desc.digest, desc.size)
        elif not fresh:
            result.hashed = False  # a link to a blob verified when it was stored, not now
        pending.commit()
        how = "linked"
    else:
        target.ensure_space(desc.size)
        pending = target.new_file(p.path)
        try:
            with owner.open_blob(desc.digest, desc.size) as stream:  # hashed on the way
                buf = bytearray(COPY_BUFSIZE)
                view = memoryview(buf)
                while n := stream.readinto(buf):
                    pending.write(view[:n])
                    progress.advance(desc, n)
            pending.commit()
        except BaseException:
            pending.abort()
            raise
        how = "copied"
    result.files.append(ExtractedFile(p.path, p.index, desc.digest, desc.size, how))
    progress.done(desc, how)
