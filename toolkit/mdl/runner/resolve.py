"""From a reference to the files an engine opens (spec/runtime.md).

`resolve_model` reads the manifest and config of a stored model and picks its files by media type
and annotations only, never by a blob's name:

- Docker (config v0.1/v0.2): the `gguf.v3` layers in layer order are the weights (several: the shards
  of one split model); the `chat.template.jinja` layer overrides the GGUF's template; the `mmproj`
  layer is the projector. `context_size` comes from the config.
- ModelPack: the `weight` layers are GGUF when `config.format` is `gguf` or their filepath ends with
  `.gguf`; a GGUF weight whose header says `general.architecture = clip` is the projector; a
  `weight.config` layer whose filepath ends with `.jinja` is the chat template.

A single GGUF is opened at its blob path. llama.cpp finds the shards of a split model beside the first
one under their shard names, so a split model gets a directory of symbolic links

    <links_dir>/<manifest digest hex>/model-00001-of-0000N.gguf -> <store>/blobs/sha256/<hex>
                                     ...
                                     model-0000N-of-0000N.gguf  -> ...

built under a temporary name and renamed into place (readers never see half a directory), reused while
every link still points at its blob, rebuilt otherwise.

Resolution reads only headers (cheap, per request). `verify_model` hashes the blobs, as the spec asks
before use; the scheduler calls it once per model before loading it.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..content.digest import digest_hex, hash_file
from ..store import LayoutStore
from ..timestamps import unix_time
from ..artifact_check import effective_filepath
from ..errors import DigestMismatchError, FormatError, MdlError, UnsupportedArtifactError
from ..formats.gguf import read_header
from ..model_check import refuse_partial
from ..placement import shard_name
from ..reference import model_id_query, parse_reference
from ..spec import mediatypes as mt

MAX_TEMPLATE_BYTES = 1 << 20
CLIP_ARCHITECTURE = "clip"


class UnsupportedModelFormatError(MdlError):
    """The model is not one the runner can run (only GGUF models are)."""

    kind = "unsupported-format"

    def __init__(self, reference: str, format: str, detail: str | None = None, hint: str | None = None):
        self.reference = reference
        self.format = format
        what = detail or f"{reference} is a {format} model"
        super().__init__(f"{what}; mdl serve runs GGUF models",
                         hint or "package or pull a GGUF version of the model (e.g. a `-GGUF` repository)")


class ModelDamagedError(MdlError):
    """A blob the model needs is missing from the store, unreadable, or not what its digest says."""

    kind = "model-damaged"

    def __init__(self, reference: str, digest: str, problem: str):
        self.reference = reference
        self.digest = digest
        self.problem = problem
        super().__init__(f"model {reference} is damaged: blob {digest} {problem}",
                         f"pull the model again (`mdl pull {reference}`); `mdl verify {reference}` lists what is wrong")


@dataclass(frozen=True)
class ResolvedModel:
    reference: str          # what the request named, normalized, or the manifest digest when named by ID
    digest: str             # manifest digest (the model ID)
    tags: list[str]
    created: int            # unix seconds (0 if the config has no creation time)
    model_path: Path        # what llama.cpp opens (a blob, or the first shard link)
    chat_template: str | None
    mmproj_path: Path | None
    context_size: int | None  # config.context_size (Docker) else None
    embedding: bool         # the GGUF declares `<arch>.pooling_type`
    size: int               # bytes of the weight layers (the projector included)
    # Beyond the agreed interface (defaults keep it constructible with the fields above):
    architecture: str | None = None
    train_context: int | None = None  # the GGUF's `<arch>.context_length`
    blobs: tuple[tuple[str, int], ...] = field(default=(), compare=False)  # (digest, size) the engine reads

    @property
    def id(self) -> str:
        return self.digest


def links_root(store: LayoutStore) -> Path:
    """Where split models get their shard links (see `mdl.runner.links_dir`)."""
    return store.root / "runner" / "links"


# --------------------------------------------------------------------------------------------------


def resolve_model(store: LayoutStore, reference: str, links_dir: Path) -> ResolvedModel:
    """The files and settings of the model `reference` names (a tag, digest reference or model ID)."""
    digest = store.resolve(reference)  # ModelNotFoundError, AmbiguousReferenceError, ReferenceFormatError
    query = model_id_query(reference)
    if query is not None and (digest == query or digest_hex(digest).startswith(query)):
        name = digest
    else:
        name = str(parse_reference(reference))
    shown = reference.strip()
    manifest = _read(store, shown, digest, lambda: store.manifest(digest))
    refuse_partial(store, shown, digest, manifest)  # pulled with --include and lacking its weights
    config_desc = manifest.config
    config = _read(store, shown, config_desc.digest,
                   lambda: json.loads(store.read_blob(config_desc.digest, config_desc.size, what="config")))
    if not isinstance(config, dict):
        raise ModelDamagedError(shown, config_desc.digest, "is not a JSON object")
    if config_desc.media_type in mt.DOCKER_CONFIGS:
        picked = _pick_docker(store, shown, manifest, config)
    elif config_desc.media_type in mt.MODELPACK_CONFIGS:
        picked = _pick_modelpack(store, shown, manifest, config)
    else:
        raise UnsupportedArtifactError(shown, config_desc.media_type)

    weights, template_desc, mmproj_desc, context_size, created = picked
    for d in weights + ([mmproj_desc] if mmproj_desc else []):
        _check_present(store, shown, d)
    header = _header(store, shown, weights[0])
    arch = header.get("general.architecture")
    arch = arch if isinstance(arch, str) else None
    embedding = arch is not None and f"{arch}.pooling_type" in header.kv
    train_ctx = header.get(f"{arch}.context_length") if arch else None
    train_ctx = int(train_ctx) if isinstance(train_ctx, int) and train_ctx > 0 else None

    template = None
    if template_desc is not None:
        raw = _read(store, shown, template_desc.digest,
                    lambda: store.read_blob(template_desc.digest, template_desc.size,
                                            limit=MAX_TEMPLATE_BYTES, what="chat template"))
        try:
            template = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelDamagedError(shown, template_desc.digest, "(the chat template) is not UTF-8 text") from None

    if len(weights) == 1:
        model_path = store.blob_path(weights[0].digest)
    else:
        model_path = _shard_links(store, links_dir, digest, [d.digest for d in weights])
    used = weights + [d for d in (mmproj_desc,) if d is not None]
    return ResolvedModel(
        reference=name,
        digest=digest,
        tags=store.tags_of(digest),
        created=created,
        model_path=model_path,
        chat_template=template,
        mmproj_path=store.blob_path(mmproj_desc.digest) if mmproj_desc else None,
        context_size=context_size,
        embedding=embedding,
        size=sum(d.size for d in used),
        architecture=arch,
        train_context=train_ctx,
        blobs=tuple((d.digest, d.size) for d in used),
    )


def verify_model(store: LayoutStore, resolved: ResolvedModel) -> None:
    """Hash every blob the engine will read (spec/runtime.md §1); ModelDamagedError on a mismatch."""
    for digest, size in resolved.blobs:
        path = store.blob_path(digest)
        try:
            actual, actual_size = hash_file(path)
        except FileNotFoundError:
            raise ModelDamagedError(resolved.reference, digest, "is missing from the local store") from None
        except OSError as e:
            raise ModelDamagedError(resolved.reference, digest, f"cannot be read ({e.strerror})") from None
        if actual != digest or actual_size != size:
            raise ModelDamagedError(resolved.reference, digest,
                                    f"is corrupt (size {actual_size}, expected {size}; content hashes to {actual})")


# --------------------------------------------------------------------------------------------------
# picking the files


def _pick_docker(store, shown, manifest, config):
    c = config.get("config") if isinstance(config.get("config"), dict) else {}
    weights, template, mmproj, other = [], None, None, None
    for d in manifest.layers:
        _check_known(shown, d.media_type)
        if d.media_type == mt.GGUF:
            weights.append(d)
        elif d.media_type == mt.CHAT_TEMPLATE and template is None:
            template = d
        elif d.media_type == mt.MMPROJ and mmproj is None:
            mmproj = d
        elif d.media_type == mt.SAFETENSORS:
            other = other or "safetensors"
        elif d.media_type == mt.DDUF:
            other = other or "dduf"
    if not weights:
        fmt = c.get("format") if isinstance(c.get("format"), str) and c.get("format") else (other or "non-GGUF")
        raise UnsupportedModelFormatError(shown, fmt)
    ctx = c.get("context_size")
    ctx = ctx if isinstance(ctx, int) and not isinstance(ctx, bool) and ctx > 0 else None
    desc = config.get("descriptor") if isinstance(config.get("descriptor"), dict) else {}
    return weights, template, mmproj, ctx, unix_time(desc.get("created"))


def _pick_modelpack(store, shown, manifest, config):
    c = config.get("config") if isinstance(config.get("config"), dict) else {}
    fmt = c.get("format") if isinstance(c.get("format"), str) else ""
    weights, projector, template, others = [], None, None, []
    for d in manifest.layers:
        _check_known(shown, d.media_type)
        kind = mt.modelpack_layer_kind(d.media_type)
        if kind is None:
            continue
        filepath = _filepath(d)
        if kind[0] == "weight":
            suffixed = mt.SUFFIXED_WEIGHT_FORMATS.get(d.media_type)  # Docker's weight.v1.gguf: GGUF by its type
            by_name = fmt.lower() == "gguf" or filepath.lower().endswith(".gguf")
            if suffixed == "gguf" or (suffixed is None and by_name):
                if kind[1] != "raw":
                    raise UnsupportedModelFormatError(
                        shown, "gguf", f"{shown} keeps its GGUF weights in a {kind[1]} layer",
                        f"mdl serve reads GGUF weights from raw layers only: `mdl extract {shown} DIR` "
                        "unpacks the files, and `mdl package --gguf DIR/<file>.gguf` packages them to serve")
                weights.append(d)
            else:
                others.append(d)
        elif kind[0] == "weight.config" and filepath.lower().endswith(".jinja") and template is None:
            if kind[1] == "raw":
                template = d
    if not weights:
        raise UnsupportedModelFormatError(shown, fmt or _guess_format(others))
    # A GGUF weight whose header names the clip architecture is the projector, not a shard.
    shards = []
    for d in weights:
        _check_present(store, shown, d)
        if _header(store, shown, d).get("general.architecture") == CLIP_ARCHITECTURE and projector is None:
            projector = d
        else:
            shards.append(d)
    if not shards:
        raise UnsupportedModelFormatError(shown, "gguf", f"{shown} has a projector but no GGUF weights")
    desc = config.get("descriptor") if isinstance(config.get("descriptor"), dict) else {}
    return shards, template, projector, None, unix_time(desc.get("createdAt"))


def _guess_format(layers) -> str:
    for d in layers:
        p = _filepath(d).lower()
        for ext, name in ((".safetensors", "safetensors"), (".dduf", "dduf"), (".bin", "pytorch"),
                          (".onnx", "onnx")):
            if p.endswith(ext):
                return name
    return "non-GGUF"


def _filepath(d) -> str:
    path = effective_filepath(d.annotations or {})
    return path if isinstance(path, str) else ""


def _check_known(shown: str, media_type: str) -> None:
    """spec/runtime.md §1: refuse unknown and draft media types."""
    e = mt.entry(media_type)
    if e is None or e.status in ("draft", "foreign"):
        state = "unknown" if e is None else e.status
        raise UnsupportedModelFormatError(shown, media_type,
                                          f"{shown} has a layer of {state} media type {media_type}")


def _read(store, shown, digest, fn):
    try:
        return fn()
    except DigestMismatchError as e:
        raise ModelDamagedError(shown, digest, f"is corrupt ({e.message})") from None
    except (ValueError, UnicodeDecodeError):
        raise ModelDamagedError(shown, digest, "is not valid JSON") from None
    except MdlError as e:
        if e.kind in ("blob-missing",):
            raise ModelDamagedError(shown, digest, "is missing from the local store") from None
        if e.kind == "store":
            raise ModelDamagedError(shown, digest, "cannot be read") from None
        raise


def _check_present(store: LayoutStore, shown: str, d) -> None:
    size = store.blob_size(d.digest)
    if size is None:
        raise ModelDamagedError(shown, d.digest, "is missing from the local store")
    if size != d.size:
        raise ModelDamagedError(shown, d.digest, f"is {size} bytes, the manifest says {d.size}")
    if not os.access(store.blob_path(d.digest), os.R_OK):
        raise ModelDamagedError(shown, d.digest, "cannot be read (permission denied)")


def _header(store: LayoutStore, shown: str, d):
    try:
        return _cached_header(str(store.blob_path(d.digest)))
    except FormatError as e:
        raise ModelDamagedError(shown, d.digest, f"is not a valid GGUF file ({e.problem})") from None
    except OSError as e:
        raise ModelDamagedError(shown, d.digest, f"cannot be read ({e.strerror})") from None


@functools.lru_cache(maxsize=64)
def _cached_header(blob_path: str):
    """A blob's GGUF header, read once: blobs are content-addressed and never change, and resolution
    runs on every request."""
    return read_header(blob_path, keep_arrays_up_to=0)


# --------------------------------------------------------------------------------------------------
# shard links

_links_lock = threading.Lock()


def _links_ok(directory: Path, targets: list[Path]) -> bool:
    n = len(targets)
    try:
        names = sorted(p.name for p in directory.iterdir())
    except OSError:
        return False
    if names != sorted(shard_name(i, n) for i in range(1, n + 1)):
        return False
    for i, target in enumerate(targets, 1):
        link = directory / shard_name(i, n)
        try:
            if not link.is_symlink() or Path(os.readlink(link)) != target:
                return False
        except OSError:
            return False
    return True


def _shard_links(store: LayoutStore, links_dir: Path, digest: str, shard_digests: list[str]) -> Path:
    targets = [store.blob_path(d).resolve() for d in shard_digests]
    n = len(targets)
    final = Path(links_dir) / digest_hex(digest)
    first = final / shard_name(1, n)
    if _links_ok(final, targets):
        return first
    with _links_lock:  # threads of one process; other processes are handled by the rename
        if _links_ok(final, targets):
            return first
        Path(links_dir).mkdir(parents=True, exist_ok=True)
        tmp = Path(links_dir) / f".tmp-{digest_hex(digest)[:12]}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            for i, target in enumerate(targets, 1):
                os.symlink(target, tmp / shard_name(i, n))
            if final.exists() or final.is_symlink():
                # stale (the store moved, or a damaged earlier attempt): move it aside, then replace
                stale = Path(links_dir) / f".stale-{uuid.uuid4().hex[:8]}"
                try:
                    os.rename(final, stale)
                    shutil.rmtree(stale, ignore_errors=True)
                except FileNotFoundError:
                    pass
            try:
                os.rename(tmp, final)
            except OSError:
                # another process published it first; use theirs when it is right
                if not _links_ok(final, targets):
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return first
