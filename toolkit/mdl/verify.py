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


def verify_model(store: LayoutStore, digest: str) -> Report:
    report = Report(digest, store.tags_of(digest))
    manifest = _check_manifest(store, digest, report)
    if manifest is None:
        return report
    config = _check_config(store, manifest, report)
    _check_layers(store, manifest, report)
    if config is not None:
        _check_diff_ids(manifest, config, report)
        _check_format_consistency(manifest, config, report)
    _check_annotations(manifest, report)
    return report


def _check_manifest(store: LayoutStore, digest: str, report: Report):
    if not store.has_blob(digest):
        report.add("blob-missing", "$", f"manifest blob {digest} is missing from the store")
        return None
    try:
        manifest = store.manifest(digest)
    except DigestMismatchError as e:
        report.add("digest-mismatch", "$", e.message)
        return None
    except MdlError as e:
        report.add("manifest-invalid", "$", e.message)
        return None
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


def _check_config(store: LayoutStore, manifest, report: Report):
    desc = manifest.config
    raw = _read_small_blob(store, desc.digest, desc.size, "$.config", "config", report)
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


def _read_small_blob(store: LayoutStore, digest: str, size: int, path: str, what: str, report: Report):
    if not store.has_blob(digest):
        report.add("blob-missing", path, f"{what} blob {digest} is missing from the store")
        return None
    try:
        data = store.read_blob(digest, size)
    except DigestMismatchError as e:
        report.add("digest-mismatch", path, e.message)
        return None
    except MdlError as e:
        report.add("blob-unreadable", path, e.message)
        return None
    report.blobs_checked += 1
    report.bytes_checked += len(data)
    return data


def _check_layers(store: LayoutStore, manifest, report: Report) -> None:
    for i, layer in enumerate(manifest.layers):
        path = f"$.layers[{i}]"
        if not store.has_blob(layer.digest):
            report.add("blob-missing", path, f"layer blob {layer.digest} is missing from the store")
            continue
        try:
            with store.open_blob(layer.digest, layer.size) as f:
                while f.read(_READ_CHUNK):
                    pass
        except DigestMismatchError as e:
            report.add("digest-mismatch", path, e.message)
            continue
        except OSError as e:
            report.add("blob-unreadable", path, f"layer blob {layer.digest}: {e.strerror}")
            continue
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
