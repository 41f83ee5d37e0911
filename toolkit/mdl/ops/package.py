"""Package: inputs -> layers -> config -> manifest, in the local store; then, if asked, push and sign.

Three phases, so bad input never leaves anything behind:
1. plan: check every input and read every header (no store writes);
2. ingest: one read pass per file into the store (hard link or copy, hashing on the way);
3. publish: build the config and manifest, check them against the schemas, store them, tag.
A failure in phase 2 removes the blobs this run added; phase 3 cannot fail on user input.
A signing key is loaded before phase 1, so a bad key fails before any work.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .. import artifact
from ..artifact import FileFacts, LayerFile, ModelFacts
from ..content.descriptor import Manifest
from ..content.digest import hash_workers, spare_core
from ..content.transfer import Progress
from ..errors import InputPathError, UsageError
from ..formats.classify import FileKind, classify
from ..inputs import input_dir, input_file, walk_model_dir
from ..reference import Reference
from ..spec import mediatypes as mt
from ..spec import schemas
from ..store import LayoutStore

if TYPE_CHECKING:
    from ..registry.repository import RemoteRepository
    from .push import PushResult
    from .sign import SignResult

MAX_CONTEXT_SIZE = 2**31 - 1  # the config stores it as int32
MAX_CHAT_TEMPLATE_BYTES = 1 << 20

_KIND_MEDIA_TYPE = {
    FileKind.GGUF: mt.GGUF,
    FileKind.SAFETENSORS: mt.SAFETENSORS,
    FileKind.DDUF: mt.DDUF,
    FileKind.CHAT_TEMPLATE: mt.CHAT_TEMPLATE,
    FileKind.LICENSE: mt.LICENSE,
    FileKind.OTHER: mt.MODEL_FILE,
}


@dataclass
class PackageRequest:
    gguf: str | None = None
    safetensors_dir: str | None = None
    dduf: str | None = None
    from_ref: str | None = None
    licenses: list[str] = field(default_factory=list)
    chat_template: str | None = None
    mmproj: str | None = None
    context_size: int | None = None
    format: str = "docker"  # docker | cncf
    created: datetime | None = None  # set: a reproducible build (normalized file metadata)


@dataclass
class PackageResult:
    reference: str
    digest: str
    manifest: Manifest
    previous: str | None  # the model the tag pointed at before, if it moved
    pushed: PushResult | None = None
    signed: SignResult | None = None

    @property
    def size(self) -> int:
        return sum(d.size for d in self.manifest.layers)


@dataclass
class _PlannedFile:
    source: Path  # what to read
    media_type: str  # Docker layer type
    filepath: str  # the layer's path annotation


@dataclass
class _Carried:
    """A layer taken over unchanged from the model named by --from."""

    layer: LayerFile


@dataclass
class _Plan:
    facts: ModelFacts
    items: list  # _PlannedFile | _Carried, in layer order


def package(store: LayoutStore, request: PackageRequest, target: Reference, *,
            push_to: RemoteRepository | None = None, sign_key: str | os.PathLike | None = None,
            key_password: Callable[[], bytes | None] | None = None, concurrency: int = 4,
            progress: Progress | None = None) -> PackageResult:
    """Package `request` into `store`, tagged `target`. With `push_to` (the registry repository of
    `target`), push it there (`concurrency`, `progress`); with `sign_key` (a private key PEM file;
    `key_password()` is asked only when it is encrypted), sign what was pushed."""
    if sign_key is not None and push_to is None:
        raise UsageError("--sign-key signs what --push pushed", "add --push, or sign later with `mdl sign`")
    key = None
    if sign_key is not None:
        from ..signing.keys import load_private_key  # signing and the registry client load only when used

        key = load_private_key(sign_key, key_password or (lambda: None))
    result = _build(store, request, target)
    if push_to is not None:
        from .push import push

        result.pushed = push(store, push_to, result.digest, target, concurrency=concurrency, progress=progress)
    if key is not None:
        from .sign import sign_with_key

        result.signed = sign_with_key(push_to, result.digest, key)
    return result


def _build(store: LayoutStore, request: PackageRequest, target: Reference) -> PackageResult:
    _check_request(request)
    added: list[str] = []  # blobs this run published: dropped again if it fails before tagging
    try:
        with ExitStack() as held:
            if request.from_ref:
                # `--from` reuses a stored model's layers: hold the store for writing from the moment
                # they are read, so a concurrent `rm` of that model cannot delete them before this
                # package refers to them (its collection waits for `prune`).
                held.enter_context(store.writing())
            plan = _plan(store, request)
            created = request.created or datetime.now(timezone.utc)
            if not request.from_ref:
                held.enter_context(store.writing())
            layers = _ingest(store, plan.items, request.created, added)
            config_bytes, _, manifest = artifact.build(plan.facts, layers, created, request.format)
            added.append(store.write_blob(config_bytes, expected_digest=manifest.config.digest)[0])
            store.put_manifest(manifest)
            added.append(manifest.digest)
            previous = store.add_tag(manifest.digest, target)
    except BaseException:
        store.discard_unreferenced(added)
        raise
    return PackageResult(str(target), manifest.digest, manifest, previous if previous != manifest.digest else None)


def _check_request(r: PackageRequest) -> None:
    sources = [s for s in (r.gguf, r.safetensors_dir, r.dduf, r.from_ref) if s]
    if len(sources) != 1:
        raise UsageError("give exactly one of --gguf, --safetensors-dir, --dduf or --from",
                         "e.g. mdl package --gguf model.gguf ai/mymodel:latest")
    if r.format not in ("docker", "cncf"):
        raise UsageError(f"unknown --format {r.format!r}", "use --format docker or --format cncf")
    if r.context_size is not None and not 0 < r.context_size <= MAX_CONTEXT_SIZE:
        raise UsageError(f"--context-size {r.context_size} is out of range",
                         f"give a positive number of tokens up to {MAX_CONTEXT_SIZE}")


def _plan(store: LayoutStore, r: PackageRequest) -> _Plan:
    if r.from_ref:
        facts, items = _plan_from_model(store, r.from_ref, replace_template=bool(r.chat_template),
                                        replace_mmproj=bool(r.mmproj))
    elif r.gguf:  # each format's reader loads only when packaging that format
        from ..formats.gguf_docker import describe_gguf

        info = describe_gguf(input_file(r.gguf, "GGUF file"))
        items = [_PlannedFile(p, mt.GGUF, p.name) for p in info.files]
        facts = ModelFacts("gguf", info.docker_config(), info.precision)
    elif r.dduf:
        from ..formats.dduf import describe_dduf

        info = describe_dduf(input_file(r.dduf, "DDUF file"))
        items = [_PlannedFile(p, mt.DDUF, p.name) for p in info.files]
        facts = ModelFacts("dduf", info.docker_config(), info.precision)
    else:
        facts, items = _plan_directory(input_dir(r.safetensors_dir, "safetensors directory"),
                                       has_template=bool(r.chat_template))

    for lic in r.licenses:
        p = input_file(lic, "license file")
        items.append(_PlannedFile(p, mt.LICENSE, p.name))
    if r.chat_template:
        p = input_file(r.chat_template, "chat template")
        _check_template(p)
        items.append(_PlannedFile(p, mt.CHAT_TEMPLATE, p.name))
    if r.mmproj:
        p = input_file(r.mmproj, "multimodal projector")
        items.append(_PlannedFile(p, mt.MMPROJ, p.name))
    _check_unique_paths(items)

    if r.context_size is not None:
        facts.docker_config["context_size"] = r.context_size
    return _Plan(facts, items)


def _plan_directory(model_dir: Path, has_template: bool) -> tuple[ModelFacts, list]:
    files = walk_model_dir(model_dir)
    kinds = [classify(f.relpath.rsplit("/", 1)[-1]) for f in files]
    template = None if has_template else _chosen_template(files, kinds)
    items: list = []
    weights: list[Path] = []
    for f, kind in zip(files, kinds):
        if kind is FileKind.CHAT_TEMPLATE and f is not template:
            kind = FileKind.OTHER  # at most one chat template layer (spec/docker-format.md)
        if kind is FileKind.SAFETENSORS:
            weights.append(f.path)
        items.append(_PlannedFile(f.path, _KIND_MEDIA_TYPE[kind], f.relpath))
    if not weights:
        raise InputPathError(model_dir, "no .safetensors files in the directory",
                             "give the directory that holds the model's *.safetensors files")
    config_json = next((f.path for f in files if f.relpath == "config.json"), None)
    from ..formats.safetensors import describe_safetensors

    info = describe_safetensors(weights, config_json)
    return ModelFacts("safetensors", info.docker_config(), info.precision), items


def _chosen_template(files: list, kinds: list):
    """The directory's chat template: the first `.jinja` file, else the first template-like name."""
    candidates = [f for f, k in zip(files, kinds) if k is FileKind.CHAT_TEMPLATE]
    return next((f for f in candidates if f.relpath.lower().endswith(".jinja")), candidates[0] if candidates else None)


def _plan_from_model(store: LayoutStore, ref: str, *, replace_template: bool, replace_mmproj: bool):
    digest = store.resolve(ref)
    manifest = store.manifest(digest)
    if manifest.config.media_type not in mt.DOCKER_CONFIGS:
        raise UsageError(f"--from {ref}: repackaging is supported for Docker-format models only",
                         "package the original files with --gguf or --safetensors-dir instead")
    config = json.loads(store.read_blob(manifest.config.digest, manifest.config.size))
    facts = ModelFacts(config["config"].get("format", "gguf"), dict(config["config"]), None)
    items: list = []
    for d in manifest.layers:
        if (replace_template and d.media_type == mt.CHAT_TEMPLATE) or (replace_mmproj and d.media_type == mt.MMPROJ):
            continue
        filepath = (d.annotations or {}).get(mt.ANNOTATION_FILEPATH, "")
        items.append(_Carried(LayerFile(d.media_type, d.digest, d.size, filepath, None, d.annotations or {})))
    return facts, items


def _check_template(path: Path) -> None:
    if path.stat().st_size > MAX_CHAT_TEMPLATE_BYTES:
        raise InputPathError(path, "chat template is larger than 1 MiB", "give a Jinja template file")
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise InputPathError(path, "chat template is not UTF-8 text", "give a Jinja template file") from None


def _check_unique_paths(items: list) -> None:
    seen: set[str] = set()
    for it in items:
        fp = it.filepath if isinstance(it, _PlannedFile) else it.layer.filepath
        if fp and fp in seen:
            source = it.source if isinstance(it, _PlannedFile) else fp
            raise InputPathError(source, f"two files of the model would both be stored as {fp!r}",
                                 "rename one of them")
        seen.add(fp)


def _ingest(store: LayoutStore, items: list, created: datetime | None, added: list[str]) -> list[LayerFile]:
    """Import every planned file, one read pass each, several files at once (one per core: hashlib and
    file reads release the GIL), recording each blob in `added` (also when another file fails)."""
    files = [it for it in items if not isinstance(it, _Carried)]
    workers = hash_workers(len(files))
    futures: list = []
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mdl-hash") as pool:
            futures = [pool.submit(_import_one, store, it, created, spare_core(workers)) for it in files]
            try:
                schemas.warm_up(*schemas.WRITER_PROFILES)  # loads the validator while the files hash (other cores)
                wait(futures)
            except BaseException:  # e.g. Ctrl-C: drop the files not started (a running import still finishes)
                for future in futures:
                    future.cancel()
                raise
    finally:  # record every blob published, whatever happened, so that a failure removes them again
        done = [(it, f) for it, f in zip(files, futures) if not f.cancelled() and f.exception() is None]
        added.extend(f.result().digest for _, f in done)
    for future in futures:  # the first failure, in input order
        if future.exception() is not None:
            raise future.exception()
    imported = {id(it): f.result() for it, f in done}
    return [it.layer if isinstance(it, _Carried) else imported[id(it)] for it in items]


def _import_one(store: LayoutStore, it: _PlannedFile, created: datetime | None, ahead: bool) -> LayerFile:
    st = os.stat(it.source)
    digest, size = store.import_file(it.source, ahead=ahead)
    if size != st.st_size:
        raise InputPathError(it.source, "the file changed while it was being packaged",
                             "package it again once nothing is writing to it")
    facts = FileFacts(it.filepath.rsplit("/", 1)[-1], st.st_mode & 0o7777, st.st_uid, st.st_gid, size,
                      datetime.fromtimestamp(st.st_mtime, timezone.utc))
    if created is not None:
        facts = facts.normalized(created)
    return LayerFile(it.media_type, digest, size, it.filepath, facts)
