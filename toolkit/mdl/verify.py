"""`mdl verify`: check one stored model against every rule of the spec, changing nothing.

Each problem is a `Finding` with a stable `kind` and the JSON path it concerns, so scripts (and the
conformance suite) can tell one failure from another. Blobs are streamed, so memory stays flat.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from .content.layout import LayoutStore
from .errors import DigestMismatchError, MdlError
from .spec import mediatypes as mt
from .spec import schemas

_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class Finding:
    kind: str
    path: str
    message: str


@dataclass
class Report:
    digest: str
    tags: list[str]
    findings: list[Finding] = field(default_factory=list)
    blobs_checked: int = 0
    bytes_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, kind: str, path: str, message: str) -> None:
        self.findings.append(Finding(kind, path, message))

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


class HashCache:
    """The outcome of hashing each blob once, shared by the checks of many models (`mdl verify --all`):
    a layer several models share is read once. Keyed by (digest, declared size); `hashed` is every digest
    whose file was read whole, so a store-wide pass can skip it."""

    def __init__(self) -> None:
        self.results: dict[tuple[str, int | None], tuple[str, str] | None] = {}
        self.hashed: set[str] = set()
        self.corrupt: set[str] = set()  # digests whose file's content does not match the name


def verify_model(store: LayoutStore, digest: str, *, cache: HashCache | None = None) -> Report:
    report = Report(digest, store.tags_of(digest))
    manifest = _check_manifest(store, digest, report, cache)
    if manifest is None:
        return report
    config = _check_config(store, manifest, report, cache)
    _check_layers(store, manifest, report, cache)
    if config is not None:
        _check_diff_ids(manifest, config, report)
        _check_format_consistency(manifest, config, report)
    _check_annotations(manifest, report)
    return report


def _check_manifest(store: LayoutStore, digest: str, report: Report, cache: HashCache | None = None):
    if not store.has_blob(digest):
        report.add("blob-missing", "$", f"manifest blob {digest} is missing from the store")
        return None
    try:
        manifest = store.manifest(digest)
    except DigestMismatchError as e:
        report.add("digest-mismatch", "$", e.message)
        _record(cache, digest, None, ("digest-mismatch", e.message), corrupt=True)
        return None
    except MdlError as e:
        report.add("manifest-invalid", "$", e.message)
        _record(cache, digest, None, None, hashed=False)
        return None
    _record(cache, digest, None, None)
    report.blobs_checked += 1
    report.bytes_checked += len(manifest.raw)
    doc = manifest.as_dict()
    profile = schemas.manifest_schema_for(manifest.config.media_type)
    if profile is None:
        report.add("unknown-config-type", "$.config.mediaType",
                   f"config media type {manifest.config.media_type!r} is not a model config type")
        profile = schemas.OCI_MANIFEST
    for f in schemas.validate(doc, profile):
        report.add("schema", f.path, f"manifest: {f.message}")
    return manifest


def _record(cache: HashCache | None, digest: str, size: int | None, outcome: tuple[str, str] | None, *,
            corrupt: bool = False, hashed: bool = True) -> None:
    if cache is None:
        return
    cache.results[(digest, size)] = outcome
    if hashed:
        cache.hashed.add(digest)
    if corrupt:
        cache.corrupt.add(digest)


def _corrupt(store: LayoutStore, digest: str, e: DigestMismatchError) -> bool:
    """Whether the blob file's content does not match its name (not merely its declared size)."""
    if e.actual.startswith("sha256:"):
        return True
    return not blob_matches_name(store, digest)


def blob_matches_name(store: LayoutStore, digest: str) -> bool:
    """Whether the blob file hashes to its name; True when it is gone or unreadable (not known corrupt)."""
    try:
        with store.open_blob(digest) as f:
            while f.read(_READ_CHUNK):
                pass
    except DigestMismatchError:
        return False
    except MdlError:
        return True  # gone or unreadable: not known to be corrupt
    return True


def _check_config(store: LayoutStore, manifest, report: Report, cache: HashCache | None = None):
    desc = manifest.config
    raw = _read_small_blob(store, desc.digest, desc.size, "$.config", "config", report, cache)
    if raw is None:
        return None
    try:
        config = json.loads(raw)
    except ValueError as e:
        report.add("config-invalid", "$.config", f"config blob is not JSON: {e}")
        return None
    name = schemas.config_schema_for(desc.media_type)
    if name is not None:
        for f in schemas.validate(config, name):
            report.add("schema", f"$.config{f.path[1:]}", f"config: {f.message}")
    return config


def _read_small_blob(store: LayoutStore, digest: str, size: int, path: str, what: str, report: Report,
                     cache: HashCache | None = None):
    if not store.has_blob(digest):
        report.add("blob-missing", path, f"{what} blob {digest} is missing from the store")
        return None
    try:
        data = store.read_blob(digest, size)
    except DigestMismatchError as e:
        report.add("digest-mismatch", path, e.message)
        _record(cache, digest, size, ("digest-mismatch", e.message), corrupt=_corrupt(store, digest, e))
        return None
    except MdlError as e:
        report.add("blob-unreadable", path, e.message)
        _record(cache, digest, size, ("blob-unreadable", e.message), hashed=False)
        return None
    _record(cache, digest, size, None)
    report.blobs_checked += 1
    report.bytes_checked += len(data)
    return data


def _check_layers(store: LayoutStore, manifest, report: Report, cache: HashCache | None = None) -> None:
    for i, layer in enumerate(manifest.layers):
        path = f"$.layers[{i}]"
        if not store.has_blob(layer.digest):
            report.add("blob-missing", path, f"layer blob {layer.digest} is missing from the store")
            continue
        key = (layer.digest, layer.size)
        if cache is not None and key in cache.results:
            outcome = cache.results[key]
            if outcome is not None:
                report.add(outcome[0], path, outcome[1])
                continue
        else:
            try:
                with store.open_blob(layer.digest, layer.size) as f:
                    while f.read(_READ_CHUNK):
                        pass
            except DigestMismatchError as e:
                report.add("digest-mismatch", path, e.message)
                _record(cache, layer.digest, layer.size, ("digest-mismatch", e.message),
                        corrupt=_corrupt(store, layer.digest, e))
                continue
            except (OSError, MdlError) as e:
                msg = f"layer blob {layer.digest}: {getattr(e, 'strerror', None) or e}"
                report.add("blob-unreadable", path, msg)
                _record(cache, layer.digest, layer.size, ("blob-unreadable", msg), hashed=False)
                continue
            _record(cache, layer.digest, layer.size, None)
        report.blobs_checked += 1
        report.bytes_checked += layer.size


def _diff_ids(config: dict, config_media_type: str):
    if config_media_type in mt.DOCKER_CONFIGS:
        return "$.config.rootfs.diff_ids", (config.get("rootfs") or {}).get("diff_ids")
    if config_media_type in mt.MODELPACK_CONFIGS:
        return "$.config.modelfs.diffIds", (config.get("modelfs") or {}).get("diffIds")
    return None, None


def _check_diff_ids(manifest, config: dict, report: Report) -> None:
    path, diff_ids = _diff_ids(config, manifest.config.media_type)
    if path is None or not isinstance(diff_ids, list):
        return  # the schema finding already says it is missing
    layer_digests = [d.digest for d in manifest.layers]
    if diff_ids != layer_digests:
        report.add("diff-ids", path,
                   f"diff_ids ({len(diff_ids)}) do not equal the layer digests ({len(layer_digests)}) in order")


def _check_format_consistency(manifest, config: dict, report: Report) -> None:
    """The weights must be what the config says the model is (spec/docker-format.md, spec/runtime.md)."""
    ctype = manifest.config.media_type
    if ctype in mt.DOCKER_CONFIGS:
        fmt = (config.get("config") or {}).get("format")
        expected = {"gguf": mt.GGUF, "safetensors": mt.SAFETENSORS, "dduf": mt.DDUF, "diffusers": mt.DDUF}.get(fmt)
        if expected is None:
            return
        if not any(d.media_type == expected for d in manifest.layers):
            report.add("format-mismatch", "$.layers", f"config format is {fmt!r} but no layer has type {expected}")
        if fmt == "safetensors" and ctype != mt.DOCKER_CONFIG_V02:
            report.add("format-mismatch", "$.config.mediaType",
                       "safetensors models need the v0.2 config, which places files by path")
    elif ctype in mt.MODELPACK_CONFIGS:
        fmt = ((config.get("config") or {}).get("format") or "").lower()
        weights = [d for d in manifest.layers if (mt.modelpack_layer_kind(d.media_type) or ("",))[0] == "weight"]
        if not weights:
            report.add("format-mismatch", "$.layers", "a ModelPack model needs at least one weight layer")
        elif fmt == "gguf" and not any(_filepath(d).lower().endswith(".gguf") for d in weights):
            report.add("format-mismatch", "$.layers", "config format is 'gguf' but no weight layer is a .gguf file")


def _filepath(desc) -> str:
    ann = desc.annotations or {}
    for key in mt.FILEPATH_KEYS:
        if key in ann:
            return ann[key]
    return ""


def _check_annotations(manifest, report: Report) -> None:
    seen: dict[str, int] = {}
    for i, layer in enumerate(manifest.layers):
        ann = layer.annotations or {}
        for key in mt.FILEPATH_KEYS:
            if key not in ann:
                continue
            path = f"$.layers[{i}].annotations.{key}"
            problem = path_problem(ann[key])
            if problem:
                report.add("annotation-path", path, f"file path {ann[key]!r} {problem}")
            elif ann[key] in seen:
                report.add("annotation-path", path, f"file path {ann[key]!r} is also used by layer {seen[ann[key]]}")
            else:
                seen[ann[key]] = i
        for key in mt.FILE_METADATA_KEYS:
            if key not in ann:
                continue
            path = f"$.layers[{i}].annotations.{key}"
            try:
                value = json.loads(ann[key])
            except ValueError:
                report.add("file-metadata", path, "file metadata annotation is not JSON")
                continue
            for f in schemas.validate(value, schemas.FILE_METADATA):
                report.add("file-metadata", path, f"file metadata {f.path}: {f.message}")


def path_problem(filepath: str) -> str | None:
    """Why a layer's file path could escape or confuse the directory it is unpacked into, or None."""
    if not filepath:
        return "is empty"
    if "\x00" in filepath:
        return "contains a NUL byte"
    if "\\" in filepath:
        return "contains a backslash"
    if filepath.startswith("/"):
        return "is absolute"
    if any(segment in ("..", ".", "") for segment in filepath.split("/")):
        return "has a '.', '..' or empty segment"
    return None
