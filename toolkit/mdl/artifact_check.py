"""The rules of the spec over documents: manifests, configs, indexes, signature payloads, references.

Every rule returns `Finding`s, each with a stable `kind` and the JSON path (in the document it
concerns) where the document breaks the rule, so `mdl verify`, `mdl conformance` and the admission
checks of pull and push tell one failure from another the same way. Rules that need two documents
(diff IDs against layers, the config's format against the weight layers) take the other one as
`companion` and report in the document named in the rule.

Admission (`check_manifest`, `check_config`): what fails is never stored: the manifest's config
type must be a model config type, the manifest must pass its format's profile and the config its
schema (spec/docker-format.md, spec/modelpack.md).
"""

from __future__ import annotations

import json
import posixpath
import unicodedata
from dataclasses import dataclass

from .content.descriptor import Manifest
from .errors import MdlError, SchemaViolationError, UnsupportedArtifactError
from .spec import mediatypes as mt
from .spec import schemas

COSIGN_SIGNATURE_MANIFEST = "cosign-signature-manifest"  # schemas/cosign-signature-manifest.schema.json
COSIGN_PAYLOAD = "cosign-payload"


@dataclass(frozen=True)
class Finding:
    kind: str  # schema, diff-ids, format-mismatch, annotation-path, file-metadata, unknown-config-type, ...
    path: str  # JSON path in `document` ("$" for its root)
    message: str
    document: str = "manifest"  # manifest, config (the artifact's config blob), or the document checked alone


# ---------------------------------------------------------------------------------------------
# manifests


def manifest_findings(doc, config: dict | None = None, *, written: bool = False) -> list[Finding]:
    """A manifest against its profile: a model manifest (by config type), or a cosign signature
    manifest (by artifactType); with its `config`, also the format-consistency rule; `written` adds
    the rules only writers must follow."""
    if not isinstance(doc, dict):
        return [Finding("schema", "$", "a manifest is a JSON object")]
    if doc.get("artifactType") == mt.COSIGN_SIGNATURE_ARTIFACT_TYPE:
        return _schema("manifest", doc, COSIGN_SIGNATURE_MANIFEST)
    config_type = (doc.get("config") or {}).get("mediaType") if isinstance(doc.get("config"), dict) else None
    out = []
    profile = schemas.manifest_schema_for(config_type) if isinstance(config_type, str) else None
    if profile is None:
        out.append(Finding("unknown-config-type", "$.config.mediaType",
                           f"config media type {config_type!r} is not a model config type"))
        profile = schemas.OCI_MANIFEST
    out += _schema("manifest", doc, profile)
    out += _annotation_findings(doc, written)
    if config is not None and isinstance(config_type, str) and not out:
        out += _format_findings(doc, config_type, config)
    return out


def _schema(what: str, doc, name: str) -> list[Finding]:
    return [Finding("schema", f.path, f"{what}: {f.message}") for f in schemas.validate(doc, name)]


def effective_filepath(annotations: dict) -> str | None:
    """The layer's file path: `org.cncf.model.filepath`, else the legacy `org.cnai` spelling (spec/annotations.md §1)."""
    for key in mt.FILEPATH_KEYS:
        if key in annotations:
            return annotations[key]
    return None


def _annotation_findings(doc: dict, written: bool = False) -> list[Finding]:
    """Rules the schema cannot state: unique file paths (compared as the directory they land in would
    see them), segments only writers must avoid, and the file metadata (JSON inside a string) against
    its schema and the layer size (spec/annotations.md)."""
    out = []
    layers = doc.get("layers")
    if not isinstance(layers, list):
        return out
    seen: dict[str, int] = {}
    for i, layer in enumerate(layers):
        ann = layer.get("annotations") if isinstance(layer, dict) else None
        if not isinstance(ann, dict):
            continue
        key = next((k for k in mt.FILEPATH_KEYS if k in ann), None)
        filepath = ann.get(key) if key else None
        if isinstance(filepath, str):
            path = f"$.layers[{i}].annotations.{key}"
            problem = path_problem(filepath, written=written)
            placed = posixpath.normpath(filepath) if not problem else None
            if problem:
                out.append(Finding("annotation-path", path, f"file path {filepath!r} {problem}"))
            elif placed in seen:
                out.append(Finding("annotation-path", path,
                                   f"file path {filepath!r} lands where layer {seen[placed]}'s does"))
            else:
                seen[placed] = i
        key = next((k for k in mt.FILE_METADATA_KEYS if k in ann), None)
        if key and isinstance(ann[key], str):
            size = None if _archive(layer.get("mediaType")) else layer.get("size")  # a tar's size is not the file's
            out += _file_metadata_findings(ann[key], size, f"$.layers[{i}].annotations.{key}")
    return out


def _file_metadata_findings(text: str, layer_size, path: str) -> list[Finding]:
    try:
        value = json.loads(text)
    except ValueError:
        return [Finding("file-metadata", path, "file metadata annotation is not JSON")]
    found = [Finding("file-metadata", path, f"file metadata {f.path}: {f.message}")
             for f in schemas.validate(value, schemas.FILE_METADATA)]
    if not found and isinstance(layer_size, int) and value["size"] != layer_size:
        found.append(Finding("file-metadata", path,
                             f"file metadata size {value['size']} differs from the layer size {layer_size}"))
    return found


def path_problem(filepath: str, *, written: bool = False) -> str | None:
    """Why a layer's file path could escape or confuse the directory it is unpacked into, or None;
    `written` adds what only writers must avoid (spec/annotations.md §2)."""
    if not filepath:
        return "is empty"
    if "\x00" in filepath:
        return "contains a NUL byte"
    if any(ord(c) < 0x20 for c in filepath):
        return "contains a control character"
    if "\\" in filepath:
        return "contains a backslash"
    if filepath.startswith("/"):
        return "is absolute"
    if ".." in filepath.split("/"):
        return "has a '..' segment"
    if written:
        if any(segment in (".", "") for segment in filepath.split("/")):
            return "has a '.' or empty segment, or a trailing '/'"
        if unicodedata.normalize("NFC", filepath) != filepath:
            return "is not in Unicode NFC"
    return None


_DOCKER_FORMAT_LAYER = {"gguf": mt.GGUF, "safetensors": mt.SAFETENSORS, "dduf": mt.DDUF, "diffusers": mt.DDUF}


def _format_findings(manifest: dict, config_type: str, config: dict) -> list[Finding]:
    """The weights must be what the config says the model is (spec/docker-format.md §2, spec/modelpack.md §3)."""
    inner = config.get("config") if isinstance(config.get("config"), dict) else {}
    layers = manifest["layers"]
    out = []
    if config_type in mt.DOCKER_CONFIGS:
        fmt = inner.get("format")
        expected = _DOCKER_FORMAT_LAYER.get(fmt)
        if expected is not None and not any(d.get("mediaType") == expected for d in layers):
            out.append(Finding("format-mismatch", "$.layers", f"config format is {fmt!r} but no layer has type {expected}"))
        # v0.1 with safetensors is legacy, not wrong: readers accept it (spec/docker-format.md §3.2).
    elif config_type in mt.MODELPACK_CONFIGS:
        fmt = str(inner.get("format") or "").lower()
        weights = [d for d in layers if (mt.modelpack_layer_kind(d.get("mediaType", "")) or ("",))[0] == "weight"]
        if not weights:
            out.append(Finding("format-mismatch", "$.layers", "a ModelPack model needs at least one weight layer"))
        elif fmt == "gguf" and not any((effective_filepath(d.get("annotations") or {}) or "").lower().endswith(".gguf")
                                       for d in weights):
            out.append(Finding("format-mismatch", "$.layers", "config format is 'gguf' but no weight layer is a .gguf file"))
    return out


# ---------------------------------------------------------------------------------------------
# configs


def config_findings(doc, media_type: str, *, written: bool = False, manifest: dict | None = None) -> list[Finding]:
    """A config blob against its schema (reader or `written` profile); with its `manifest`, the diff IDs."""
    name = schemas.config_schema_for(media_type, written=written)
    if name is None:
        return [Finding("unknown-config-type", "$", f"{media_type!r} is not a model config type", "config")]
    out = _schema("config", doc, name)
    if manifest is not None and not out:
        out += _diff_id_findings(doc, media_type, manifest)
    return [Finding(f.kind, f.path, f.message, "config") for f in out]


def _diff_id_findings(config: dict, media_type: str, manifest: dict) -> list[Finding]:
    """One diff ID per layer, in layer order; a diff ID is the digest of the layer uncompressed, so it
    equals the layer digest except for compressed ModelPack layers (spec/docker-format.md §4.1,
    spec/modelpack.md §4), whose uncompressed digest only unpacking could tell."""
    modelfs = config.get("modelfs") or {}
    if media_type in mt.DOCKER_CONFIGS:
        path, diff_ids = "$.rootfs.diff_ids", (config.get("rootfs") or {}).get("diff_ids")
    elif "diffIds" in modelfs:
        path, diff_ids = "$.modelfs.diffIds", modelfs["diffIds"]
    else:
        path, diff_ids = "$.modelfs.diff_ids", modelfs.get("diff_ids")  # the legacy spelling
    layers = [d for d in manifest.get("layers") or [] if isinstance(d, dict)]
    if not isinstance(diff_ids, list):
        return []
    if len(diff_ids) != len(layers):
        return [Finding("diff-ids", path, f"{len(diff_ids)} diff IDs for {len(layers)} layers")]
    for i, (diff_id, layer) in enumerate(zip(diff_ids, layers)):
        if diff_id != layer.get("digest") and not _compressed(layer.get("mediaType")):
            return [Finding("diff-ids", path, f"diff ID {i} is not the digest of layer {i}: the order or a digest differs")]
    return []


def _archive(media_type) -> bool:
    if media_type in (mt.VLLM_CONFIG_TAR, mt.DIR_TAR):
        return True
    kind = mt.modelpack_layer_kind(media_type) if isinstance(media_type, str) else None
    return kind is not None and kind[1].startswith("tar")


def _compressed(media_type) -> bool:
    kind = mt.modelpack_layer_kind(media_type) if isinstance(media_type, str) else None
    return kind is not None and kind[1] not in ("raw", "tar")


# ---------------------------------------------------------------------------------------------
# any document, by media type (what the conformance suite drives)


def document_findings(media_type: str, doc, *, written: bool = False, companion: dict | None = None) -> list[Finding]:
    """Every rule of the spec that applies to a document of `media_type`; `companion` is the other
    document of the artifact (the config of a manifest, or the manifest of a config)."""
    if media_type == mt.OCI_MANIFEST:
        return manifest_findings(doc, companion, written=written)
    if media_type in mt.MODEL_CONFIGS:
        return config_findings(doc, media_type, written=written, manifest=companion)
    if media_type == mt.OCI_INDEX:
        return _schema("index", doc, schemas.OCI_INDEX)
    if media_type == mt.COSIGN_SIMPLESIGNING:
        return _schema("signature payload", doc, COSIGN_PAYLOAD)
    return [Finding("unsupported-media-type", "$", f"no rules for documents of type {media_type!r}")]


def reference_findings(text: str) -> list[Finding]:
    from .reference import parse_reference

    try:
        parse_reference(text)
    except MdlError as e:
        return [Finding(e.kind, "$", e.message)]
    return []


# ---------------------------------------------------------------------------------------------
# admission


def check_manifest(manifest: Manifest, reference: str) -> None:
    config_type = manifest.config.media_type if manifest.config else None
    if config_type not in mt.MODEL_CONFIGS:
        raise UnsupportedArtifactError(reference, config_type)
    schemas.check(manifest.as_dict(), schemas.manifest_schema_for(config_type), f"the manifest of {reference}")


def check_config(manifest: Manifest, config_bytes: bytes, reference: str) -> dict:
    try:
        config = json.loads(config_bytes)
    except ValueError:
        raise SchemaViolationError(f"the config of {reference}", [("$", "not JSON")]) from None
    schemas.check(config, schemas.config_schema_for(manifest.config.media_type), f"the config of {reference}")
    return config
