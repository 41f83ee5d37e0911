"""The documents of a model artifact: layer annotations, the config blob, the manifest.

Both formats are built from the same facts (`LayerFile`s and a format-neutral config section), so
Docker's and ModelPack's artifacts of one model differ only where the specs differ
(spec/docker-format.md, spec/modelpack.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from .content.descriptor import Descriptor, Manifest
from .content.digest import sha256_bytes
from .errors import InternalError, SchemaViolationError
from .spec import mediatypes as mt
from .spec import schemas

# Docker layer media types mapped to ModelPack kinds (spec/modelpack.md).
_MODELPACK_KIND = {
    mt.GGUF: "weight",
    mt.SAFETENSORS: "weight",
    mt.DDUF: "weight",
    mt.MMPROJ: "weight",
    mt.CHAT_TEMPLATE: "weight-config",
    mt.MODEL_FILE: "weight-config",
    mt.LICENSE: "doc",
}
TAR_TYPEFLAG_REGULAR = ord("0")  # 48, as in a tar header
DETERMINISTIC_MODE = 0o644


def rfc3339(t: datetime) -> str:
    """UTC, 'Z', fractional seconds only when present (as Go's RFC3339Nano prints them)."""
    t = t.astimezone(timezone.utc)
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        text += f".{t.microsecond:06d}".rstrip("0")
    return text + "Z"


def to_json_bytes(doc) -> bytes:
    """Compact JSON, keys in the order given: the same document always gives the same bytes."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class FileFacts:
    """What the file-metadata annotation records about a source file."""

    name: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime: datetime

    def normalized(self, created: datetime) -> "FileFacts":
        """The same file as a reproducible build records it: no owner, fixed mode, mtime = created."""
        return FileFacts(self.name, DETERMINISTIC_MODE, 0, 0, self.size, created)

    def annotation_value(self) -> str:
        return to_json_bytes({
            "name": self.name, "mode": self.mode, "uid": self.uid, "gid": self.gid,
            "size": self.size, "mtime": rfc3339(self.mtime), "typeflag": TAR_TYPEFLAG_REGULAR,
        }).decode()


@dataclass(frozen=True)
class LayerFile:
    """One file of the model as it is stored: its blob, its Docker media type and where it goes."""

    media_type: str  # always the Docker layer type; mapped for ModelPack in `layer_descriptor`
    digest: str
    size: int
    filepath: str
    facts: FileFacts | None  # None for layers carried over from an older artifact without annotations
    annotations: dict[str, str] | None = None  # carried over as they were (`--from`)


def layer_descriptor(layer: LayerFile, fmt: str) -> Descriptor:
    if layer.annotations is not None and layer.facts is None:
        annotations = dict(layer.annotations)
    else:
        annotations = {mt.ANNOTATION_FILEPATH: layer.filepath}
        if layer.facts is not None:
            annotations[mt.ANNOTATION_FILE_METADATA] = layer.facts.annotation_value()
        annotations[mt.ANNOTATION_MEDIATYPE_UNTESTED] = "false"
    if mt.ANNOTATION_FILEPATH in annotations:
        # The name oras and CRI-O image volumes give the file (spec/annotations.md §1).
        annotations.setdefault(mt.ANNOTATION_TITLE, annotations[mt.ANNOTATION_FILEPATH])
    media_type = layer.media_type
    if fmt == "cncf":
        media_type = modelpack_layer_type(layer.media_type, layer.filepath)
    return Descriptor(media_type, layer.digest, layer.size, annotations)


def modelpack_layer_type(docker_media_type: str, filepath: str) -> str:
    kind = _MODELPACK_KIND.get(docker_media_type, "weight-config")
    if kind == "weight-config" and filepath.lower().endswith(".md"):
        kind = "doc"
    return mt.mt(f"cncf-{kind}-raw")


@dataclass(frozen=True)
class ModelFacts:
    """The format-neutral description of a model that both config formats are written from."""

    format: str  # gguf | safetensors | dduf
    docker_config: dict  # the Docker config's "config" object (formats.WeightsInfo.docker_config())
    precision: str | None  # safetensors dtype, for ModelPack


def docker_config_media_type(fmt: str) -> str:
    # v0.2 places files by their filepath annotation, which a safetensors directory needs.
    return mt.DOCKER_CONFIG_V02 if fmt == "safetensors" else mt.DOCKER_CONFIG_V01


def config_document(facts: ModelFacts, layers: list[Descriptor], created: datetime, fmt: str) -> dict:
    diff_ids = [d.digest for d in layers]
    if fmt == "docker":
        return {
            "config": facts.docker_config,
            "descriptor": {"created": rfc3339(created)},
            "rootfs": {"type": "rootfs", "diff_ids": diff_ids},
        }
    dc = facts.docker_config
    descriptor = {"createdAt": rfc3339(created)}
    if dc.get("architecture"):
        descriptor["family"] = dc["architecture"]
    config = {k: v for k, v in (
        ("architecture", dc.get("architecture")),
        ("format", facts.format),
        ("paramSize", dc.get("parameters")),
        ("precision", facts.precision if facts.precision not in ("mixed", "unknown") else None),
        ("quantization", dc.get("quantization")),
    ) if v}
    return {"descriptor": descriptor, "config": config, "modelfs": {"type": "layers", "diffIds": diff_ids}}


def build(facts: ModelFacts, layer_files: list[LayerFile], created: datetime, fmt: str) -> tuple[bytes, str, Manifest]:
    """(config bytes, config media type, manifest), each checked against the written profiles.

    A failure here means mdl built something its own spec forbids: a bug, reported as one.
    """
    layers = [layer_descriptor(lf, fmt) for lf in layer_files]
    config_doc = config_document(facts, layers, created, fmt)
    config_type = docker_config_media_type(facts.format) if fmt == "docker" else mt.CNCF_CONFIG
    config_bytes = to_json_bytes(config_doc)
    config_desc = Descriptor(config_type, sha256_bytes(config_bytes), len(config_bytes))
    manifest = Manifest.build(config_desc, layers,
                              artifact_type=mt.CNCF_ARTIFACT_TYPE if fmt == "cncf" else None)
    try:
        schemas.check(config_doc, schemas.config_schema_for(config_type, written=True), "the model config")
        schemas.check(manifest.as_dict(), schemas.manifest_schema_for(config_type), "the manifest")
    except SchemaViolationError as e:
        raise InternalError(f"{e.message}") from e
    return config_bytes, config_type, manifest

