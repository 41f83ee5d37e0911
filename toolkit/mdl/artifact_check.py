"""The rules of the spec over documents: manifests, configs, indexes, signatures (payloads, bundles,
statements), references.

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
from .reference import parse_reference
from .spec import mediatypes as mt
from .spec import schemas

COSIGN_SIGNATURE_MANIFEST = "cosign-signature-manifest"  # schemas/cosign-signature-manifest.schema.json
COSIGN_SIGNATURE_MANIFEST_WRITTEN = "cosign-signature-manifest-written"
COSIGN_PAYLOAD = "cosign-payload"
SIGSTORE_BUNDLE = "sigstore-bundle"  # schemas/sigstore-bundle.schema.json (+ -written)
BUNDLE_MANIFEST = "sigstore-bundle-manifest"  # schemas/sigstore-bundle-manifest.schema.json (+ -written)
# in-toto statements by predicateType (spec/signing.md §9, §11); any other predicate is checked against
# cosign's, which then names the predicateType it refuses
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
MODEL_SIGNING_PREDICATE = "https://model_signing/signature/v1.0"
STATEMENT_SCHEMAS = {COSIGN_SIGN_PREDICATE: "cosign-sign-statement", MODEL_SIGNING_PREDICATE: "model-signing-statement"}
REFERRERS_INDEX = "referrers-index"


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
    manifest; with its `config`, also the format-consistency rule; `written` adds the rules only
    writers must follow."""
    if not isinstance(doc, dict):
        return [Finding("schema", "$", "a manifest is a JSON object")]
    if is_signature_manifest(doc):
        return _schema("manifest", doc, COSIGN_SIGNATURE_MANIFEST_WRITTEN if written else COSIGN_SIGNATURE_MANIFEST)
    if is_bundle_manifest(doc):
        return _schema("manifest", doc, BUNDLE_MANIFEST + "-written" if written else BUNDLE_MANIFEST)
    config_type = (doc.get("config") or {}).get("mediaType") if isinstance(doc.get("config"), dict) else None
    out = []
    profile = schemas.manifest_schema_for(config_type) if isinstance(config_type, str) else None
    if profile is None:
        out.append(Finding("unknown-config-type", "$.config.mediaType",
                           f"config media type {config_type!r} is not a model config type"))
        profile = schemas.OCI_MANIFEST
    out += _schema("manifest", doc, profile)
    out += _annotation_findings(doc, config_type in mt.MODELPACK_CONFIGS, written)
    if config is not None and isinstance(config_type, str) and not out:
        out += _format_findings(doc, config_type, config)
    if written and isinstance(config_type, str) and config_type in mt.MODEL_CONFIGS:
        out += written_manifest_findings(doc, config_type, config)
    return out


def is_signature_manifest(doc: dict) -> bool:
    """A cosign signature manifest: its artifactType says so, or, as cosign's own `.sig` manifests have
    none, every layer is a simple signing payload (spec/signing.md §4)."""
    if doc.get("artifactType") == mt.COSIGN_SIGNATURE_ARTIFACT_TYPE:
        return True
    layers = doc.get("layers")
    return "artifactType" not in doc and isinstance(layers, list) and bool(layers) and all(
        isinstance(d, dict) and d.get("mediaType") == mt.COSIGN_SIMPLESIGNING for d in layers)


def is_bundle_manifest(doc: dict) -> bool:
    """A Sigstore bundle referrer manifest (cosign v3, OpenSSF model signing): its artifactType says so,
    or, without one, its one layer is a bundle (spec/signing.md §10)."""
    if doc.get("artifactType") == mt.SIGSTORE_BUNDLE:
        return True
    layers = doc.get("layers")
    return "artifactType" not in doc and isinstance(layers, list) and len(layers) == 1 and \
        isinstance(layers[0], dict) and layers[0].get("mediaType") == mt.SIGSTORE_BUNDLE


def statement_findings(doc) -> list[Finding]:
    """An in-toto statement a bundle signs, against the schema of its predicate type."""
    predicate = doc.get("predicateType") if isinstance(doc, dict) else None
    return _schema("statement", doc, STATEMENT_SCHEMAS.get(predicate, STATEMENT_SCHEMAS[COSIGN_SIGN_PREDICATE]))


def _schema(what: str, doc, name: str) -> list[Finding]:
    return [Finding("schema", f.path, f"{what}: {f.message}") for f in schemas.validate(doc, name)]


def effective_filepath(annotations: dict, *, modelpack: bool = True) -> str | None:
    """A layer's file path: `org.cncf.model.filepath`, else, in a ModelPack artifact, the legacy
    `org.cnai` spelling (spec/annotations.md §1: Docker's reader reads no `org.cnai` key)."""
    for key in mt.FILEPATH_KEYS if modelpack else mt.FILEPATH_KEYS[:1]:
        if key in annotations:
            return annotations[key]
    return None


def _annotation_findings(doc: dict, modelpack: bool, written: bool = False) -> list[Finding]:
    """Rules the schema cannot state: unique file paths (compared as the directory they land in would
    see them), segments only writers must avoid, and the file metadata (JSON inside a string) against
    its schema and the layer size (spec/annotations.md). Only ModelPack reads the legacy `org.cnai` keys."""
    out = []
    layers = doc.get("layers")
    if not isinstance(layers, list):
        return out
    path_keys = mt.FILEPATH_KEYS if modelpack else mt.FILEPATH_KEYS[:1]
    metadata_keys = mt.FILE_METADATA_KEYS if modelpack else mt.FILE_METADATA_KEYS[:1]
    seen: dict[str, int] = {}
    for i, layer in enumerate(layers):
        ann = layer.get("annotations") if isinstance(layer, dict) else None
        if not isinstance(ann, dict):
            continue
        key = next((k for k in path_keys if k in ann), None)
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
        key = next((k for k in metadata_keys if k in ann), None)
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
        elif fmt == "gguf" and not any(_is_gguf_weight(d) for d in weights):
            out.append(Finding("format-mismatch", "$.layers", "config format is 'gguf' but no weight layer is a .gguf file"))
    return out


def _is_gguf_weight(d: dict) -> bool:
    """A ModelPack weight layer is GGUF by Docker's suffixed type, else by its file name."""
    suffixed = mt.SUFFIXED_WEIGHT_FORMATS.get(d.get("mediaType"))
    if suffixed is not None:
        return suffixed == "gguf"
    annotations = d.get("annotations") if isinstance(d.get("annotations"), dict) else {}
    filepath = effective_filepath(annotations)
    return isinstance(filepath, str) and filepath.lower().endswith(".gguf")


# ---------------------------------------------------------------------------------------------
# the written profile of model manifests: what mdl's packager produces, beyond the reader profile


def written_manifest_findings(doc: dict, config_type: str, config: dict | None = None) -> list[Finding]:
    """Media types writers may write, the four annotations on every layer, and the layer order
    (spec/docker-format.md §3.3-3.4, spec/modelpack.md §3, spec/annotations.md §1); `config` tells a
    ModelPack artifact of one weight file from one of a directory."""
    layers = doc.get("layers") if isinstance(doc.get("layers"), list) else []
    layers = [d if isinstance(d, dict) else {} for d in layers]
    return (_written_type_findings(doc, layers, config_type) + _written_annotation_findings(layers)
            + _order_findings(layers, config_type, config))


def _written_type_findings(doc: dict, layers: list[dict], config_type: str) -> list[Finding]:
    """Writers write neither legacy types nor ModelPack layers other than raw (spec/media-types.md §1)."""
    out = []
    if config_type in mt.MODELPACK_CONFIGS:
        if "mediaType" not in doc:
            out.append(Finding("written-media-type", "$", "a writer writes the manifest's mediaType"))
        if config_type != mt.CNCF_CONFIG:
            out.append(Finding("written-media-type", "$.config.mediaType", f"{config_type} is a legacy spelling"))
        if doc.get("artifactType") not in (None, mt.CNCF_ARTIFACT_TYPE):
            out.append(Finding("written-media-type", "$.artifactType", f"{doc['artifactType']} is a legacy spelling"))
    for i, d in enumerate(layers):
        media_type = d.get("mediaType")
        entry = mt.entry(media_type) if isinstance(media_type, str) else None
        if entry is None:
            continue  # unknown types are the reader profile's finding
        kind = mt.modelpack_layer_kind(media_type)
        if entry.status != "current":
            problem = "is read, never written"
        elif kind is not None and kind[1] != "raw":
            problem = "is not raw: a writer writes one file per layer, uncompressed"
        elif config_type == mt.DOCKER_CONFIG_V01 and media_type == mt.SAFETENSORS:
            problem = "under v0.1 is the layout of Docker's packager before v0.2; safetensors go in v0.2"
        else:
            continue
        out.append(Finding("written-media-type", f"$.layers[{i}].mediaType", f"{media_type} {problem}"))
    return out


_WRITTEN_KEYS = (mt.ANNOTATION_FILEPATH, mt.ANNOTATION_FILE_METADATA, mt.ANNOTATION_MEDIATYPE_UNTESTED,
                 mt.ANNOTATION_TITLE)


def _written_annotation_findings(layers: list[dict]) -> list[Finding]:
    """Every layer carries the three file annotations, `mediatype.untested` "false", the title equal to
    the file path, and no legacy key (spec/annotations.md §1)."""
    out = []
    for i, d in enumerate(layers):
        ann = d.get("annotations") if isinstance(d.get("annotations"), dict) else {}
        at = f"$.layers[{i}].annotations"
        out += [Finding("layer-annotations", at, f"layer {i} has no {key}") for key in _WRITTEN_KEYS if key not in ann]
        untested = ann.get(mt.ANNOTATION_MEDIATYPE_UNTESTED)
        if untested not in (None, "false"):
            out.append(Finding("layer-annotations", f"{at}.{mt.ANNOTATION_MEDIATYPE_UNTESTED}",
                               f"a writer tests every media type it writes: {untested!r}, not 'false'"))
        title, filepath = ann.get(mt.ANNOTATION_TITLE), ann.get(mt.ANNOTATION_FILEPATH)
        if title is not None and filepath is not None and title != filepath:
            out.append(Finding("layer-annotations", f"{at}.{mt.ANNOTATION_TITLE}",
                               f"the title {title!r} is not the file path {filepath!r}"))
        out += [Finding("layer-annotations", f"{at}.{key}", f"{key} is a legacy key, never written")
                for key in (mt.ANNOTATION_CNAI_FILEPATH, mt.ANNOTATION_CNAI_FILE_METADATA) if key in ann]
    return out


# Ranks of what comes after the weights (file inputs) or the directory's files (directory inputs):
# licenses, then the chat template, then the projector (spec/docker-format.md §3.3).
_DOCKER_RANK = {mt.LICENSE: 1, mt.CHAT_TEMPLATE: 2, mt.MMPROJ: 3}
_MODELPACK_RANK = {"doc": 1, "weight.config": 2, "weight": 3}  # the mapping of spec/modelpack.md §3.1


_ORDER_FILE = "layers are not the weights, then the licenses, then the chat template, then the projector"
_ORDER_DIRECTORY = ("layers are not the directory's files in walk order, then the licenses, the chat template "
                    "and the projector given on the command line")


def _order_findings(layers: list[dict], config_type: str, config: dict | None) -> list[Finding]:
    modelpack = config_type in mt.MODELPACK_CONFIGS
    if modelpack:
        ranks = [_MODELPACK_RANK.get((mt.modelpack_layer_kind(str(d.get("mediaType"))) or ("",))[0]) for d in layers]
        inner = config.get("config") if isinstance(config, dict) and isinstance(config.get("config"), dict) else {}
        one_file = str(inner.get("format") or "").lower() in ("gguf", "dduf")  # else unknown: a directory's rule
    else:
        ranks = [_DOCKER_RANK.get(d.get("mediaType")) for d in layers]
        one_file = config_type == mt.DOCKER_CONFIG_V01
    if one_file:
        weights = 0  # the leading weight layers: GGUF shards (in shard order: their names sort so) or the DDUF file
        while weights < len(layers) and ranks[weights] == (3 if modelpack else None):
            weights += 1
        if not weights:
            return [Finding("layer-order", "$.layers[0]", _ORDER_FILE)] if layers else []
        # A ModelPack projector is a weight too, so its leading weights may end with it: only Docker's are sorted.
        i = (None if modelpack else _first_unsorted(layers[:weights])) or _first_decrease(ranks[weights:], weights)
        return [Finding("layer-order", f"$.layers[{i}]", _ORDER_FILE)] if i else []
    tail = len(layers)  # the shortest prefix whose rest is licenses, template, projector in that order
    while tail > 0 and ranks[tail - 1] is not None and (tail == len(layers) or ranks[tail - 1] <= ranks[tail]):
        tail -= 1
    # No Docker directory file is a projector (spec/docker-format.md §6.2): one before the tail is out of place.
    i = None if modelpack else next((i for i in range(tail) if ranks[i] == 3), None)
    i = i if i is not None else _first_unsorted(layers[:tail])
    return [Finding("layer-order", f"$.layers[{i}]", _ORDER_DIRECTORY)] if i is not None else []


def _first_unsorted(layers: list[dict]) -> int | None:
    """The first layer whose file path comes before the previous one's in walk order (depth first,
    names in byte order: the order of the paths' segment lists), or None."""
    keys = [_walk_key(d) for d in layers]
    return next((i for i in range(1, len(keys)) if None not in (keys[i], keys[i - 1]) and keys[i] < keys[i - 1]),
                None)


def _walk_key(d: dict) -> tuple[bytes, ...] | None:
    ann = d.get("annotations") if isinstance(d.get("annotations"), dict) else {}
    filepath = ann.get(mt.ANNOTATION_FILEPATH)
    return tuple(s.encode() for s in filepath.split("/")) if isinstance(filepath, str) else None


def _first_decrease(ranks: list, offset: int) -> int | None:
    """The index (plus `offset`) of the first rank below the one before it; an unranked layer counts as
    a weight after its place."""
    values = [0 if r is None else r for r in ranks]
    return next((i + offset for i in range(1, len(values)) if values[i] < values[i - 1]), None)


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


def document_findings(media_type: str, doc, *, written: bool = False, companion: dict | None = None,
                      format: str | None = None) -> list[Finding]:
    """Every rule of the spec that applies to a document of `media_type`; `companion` is the other
    document of the artifact (the config of a manifest, or the manifest of a config); an index of
    `format` `cosign` is a referrers list."""
    if media_type == mt.OCI_MANIFEST:
        return manifest_findings(doc, companion, written=written)
    if media_type in mt.MODEL_CONFIGS:
        return config_findings(doc, media_type, written=written, manifest=companion)
    if media_type == mt.OCI_INDEX:
        return referrers_findings(doc) if format == "cosign" else _schema("index", doc, schemas.OCI_INDEX)
    if media_type == mt.COSIGN_SIMPLESIGNING:
        return _schema("signature payload", doc, COSIGN_PAYLOAD)
    if media_type == mt.SIGSTORE_BUNDLE:
        return _schema("bundle", doc, SIGSTORE_BUNDLE + "-written" if written else SIGSTORE_BUNDLE)
    if media_type == mt.IN_TOTO_PAYLOAD:
        return statement_findings(doc)
    return [Finding("unsupported-media-type", "$", f"no rules for documents of type {media_type!r}")]


def referrers_findings(doc) -> list[Finding]:
    """A referrers list, or its fallback tag's index: each entry with its artifactType, none twice
    (spec/signing.md §5)."""
    out = _schema("index", doc, REFERRERS_INDEX)
    if out:
        return out
    seen: set[str] = set()
    for i, entry in enumerate(doc["manifests"]):
        if entry["digest"] in seen:
            out.append(Finding("duplicate-referrer", f"$.manifests[{i}].digest",
                               f"{entry['digest']} is listed twice"))
        seen.add(entry["digest"])
    return out


def reference_findings(text: str) -> list[Finding]:

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
