"""Descriptors, image manifests and image indexes (OCI image-spec v1.1: `descriptor.md`, `manifest.md`,
`image-index.md`).

A `Manifest` or `Index` keeps the exact bytes it was parsed from: its digest is the sha256 of those
bytes, and they are what gets stored and pushed, never a re-serialization. `Manifest.build` writes canonical
bytes (fixed key order, compact separators, sorted annotation keys, no trailing newline), so the
same inputs always give the same digest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import DigestMismatchError, SchemaViolationError
from ..spec import mediatypes as mt
from .digest import InvalidDigestError, sha256_bytes, validate_digest

MAX_MANIFEST_SIZE = 4 << 20  # distribution caps manifest bodies at 4 MiB
# Manifest media types with the image-manifest shape (config + layers).
MANIFEST_TYPES = frozenset({mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_V2})
INDEX_TYPES = frozenset({mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST})


def _is_str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _descriptor_findings(d: Any, path: str) -> list[tuple[str, str]]:
    """What is wrong with `d` as an OCI descriptor (descriptor.md, "Properties")."""
    if not isinstance(d, dict):
        return [(path, "a descriptor must be a JSON object")]
    out: list[tuple[str, str]] = []
    media_type = d.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        out.append((f"{path}.mediaType", "required, a non-empty string"))
    digest = d.get("digest")
    try:
        validate_digest(digest)
    except InvalidDigestError as e:
        out.append((f"{path}.digest", e.problem if "digest" in d else "required"))
    size = d.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        out.append((f"{path}.size", "required, a non-negative integer"))
    if "annotations" in d and not _is_str_map(d["annotations"]):
        out.append((f"{path}.annotations", "must map strings to strings"))
    if "artifactType" in d and not isinstance(d["artifactType"], str):
        out.append((f"{path}.artifactType", "must be a string"))
    return out


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] | None = field(default=None, hash=False)
    artifact_type: str | None = None

    def __post_init__(self) -> None:
        findings = _descriptor_findings(self.to_dict(), "$")
        if findings:
            raise SchemaViolationError("descriptor", findings)

    def to_dict(self) -> dict:
        """OCI key order: mediaType, artifactType, digest, size, annotations (absent ones omitted)."""
        d: dict[str, Any] = {"mediaType": self.media_type}
        if self.artifact_type is not None:
            d["artifactType"] = self.artifact_type
        d["digest"] = self.digest
        d["size"] = self.size
        if self.annotations:
            d["annotations"] = dict(sorted(self.annotations.items())) if _is_str_map(self.annotations) \
                else self.annotations
        return d

    @classmethod
    def from_dict(cls, d: Any, *, what: str = "descriptor", path: str = "$") -> Descriptor:
        """A descriptor from its JSON object; SchemaViolationError names the JSON path that is wrong.
        Fields this model does not carry (urls, platform, data) are ignored."""
        findings = _descriptor_findings(d, path)
        if findings:
            raise SchemaViolationError(what, findings)
        return cls(d["mediaType"], d["digest"], d["size"],
                   dict(d["annotations"]) if d.get("annotations") else None, d.get("artifactType"))


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    d: dict = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def load_json_document(raw: bytes, what: str) -> Any:
    """JSON from bytes, refusing duplicate keys (two readers could see two different documents)."""
    try:
        return json.loads(raw, object_pairs_hook=_reject_duplicates)
    except (ValueError, UnicodeDecodeError) as e:
        raise SchemaViolationError(what, [("$", f"not valid JSON: {e}")]) from None
    except RecursionError:
        raise SchemaViolationError(what, [("$", "not valid JSON: nested too deeply")]) from None


def canonical_json(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class Manifest:
    """An OCI image manifest that keeps the exact bytes it was parsed from (the digest is over bytes)."""

    __slots__ = ("raw", "digest", "media_type", "artifact_type", "config", "layers", "annotations", "subject")

    raw: bytes
    digest: str
    media_type: str | None
    artifact_type: str | None
    config: Descriptor
    layers: list[Descriptor]
    annotations: dict | None
    subject: Descriptor | None

    def __init__(self, raw: bytes, digest: str, doc: dict):
        # Use Manifest.parse or Manifest.build; this assumes `doc` was checked.
        self.raw = raw
        self.digest = digest
        self.media_type = doc.get("mediaType")
        self.artifact_type = doc.get("artifactType")
        self.config = Descriptor.from_dict(doc["config"])
        self.layers = [Descriptor.from_dict(x) for x in doc["layers"]]
        self.annotations = dict(doc["annotations"]) if doc.get("annotations") else None
        self.subject = Descriptor.from_dict(doc["subject"]) if doc.get("subject") is not None else None

    @classmethod
    def parse(cls, raw: bytes, expected_digest: str | None = None) -> Manifest:
        """Parse manifest bytes; with `expected_digest`, refuse bytes that do not hash to it."""
        raw = bytes(raw)
        if expected_digest is not None:
            validate_digest(expected_digest)
        digest = sha256_bytes(raw)
        what = f"manifest {expected_digest or digest}"
        if len(raw) > MAX_MANIFEST_SIZE:
            raise SchemaViolationError(
                what, [("$", f"{len(raw)} bytes, over the {MAX_MANIFEST_SIZE}-byte limit for a manifest")])
        if expected_digest is not None and digest != expected_digest:
            raise DigestMismatchError("manifest", expected_digest, digest)
        doc = load_json_document(raw, what)
        findings = _manifest_findings(doc)
        if findings:
            raise SchemaViolationError(what, findings)
        return cls(raw, digest, doc)

    @classmethod
    def build(cls, config: Descriptor, layers: list[Descriptor], *, artifact_type: str | None = None,
              annotations: dict[str, str] | None = None, subject: Descriptor | None = None) -> Manifest:
        """A new OCI image manifest in canonical bytes (see the module docstring)."""
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST}
        if artifact_type is not None:
            doc["artifactType"] = artifact_type
        doc["config"] = config.to_dict()
        doc["layers"] = [layer.to_dict() for layer in layers]
        if subject is not None:
            doc["subject"] = subject.to_dict()
        if annotations:
            if not _is_str_map(annotations):
                raise SchemaViolationError("manifest", [("$.annotations", "must map strings to strings")])
            doc["annotations"] = dict(sorted(annotations.items()))
        raw = canonical_json(doc)
        if len(raw) > MAX_MANIFEST_SIZE:
            raise SchemaViolationError(
                "manifest", [("$", f"{len(raw)} bytes, over the {MAX_MANIFEST_SIZE}-byte limit for a manifest")])
        return cls(raw, sha256_bytes(raw), doc)

    @property
    def size(self) -> int:
        return len(self.raw)

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type or mt.OCI_MANIFEST, self.digest, len(self.raw),
                          artifact_type=self.artifact_type)

    def as_dict(self) -> dict:
        """A fresh copy of the parsed document."""
        return json.loads(self.raw)

    def blob_descriptors(self) -> list[Descriptor]:
        """The blobs this manifest owns: config, then layers."""
        return [self.config, *self.layers]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Manifest) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return f"Manifest({self.digest}, {len(self.layers)} layers)"


def _manifest_findings(doc: Any) -> list[tuple[str, str]]:
    """What is wrong with `doc` as an image manifest (manifest.md, "Image Manifest Property Descriptions")."""
    if not isinstance(doc, dict):
        return [("$", "a manifest must be a JSON object")]
    out: list[tuple[str, str]] = []
    if doc.get("schemaVersion") != 2 or isinstance(doc.get("schemaVersion"), bool):
        out.append(("$.schemaVersion", "must be 2"))
    media_type = doc.get("mediaType")
    if media_type is not None and media_type not in MANIFEST_TYPES:
        problem = "an image index, not a manifest" if media_type in INDEX_TYPES else \
            f"{media_type!r} is not an image manifest media type"
        out.append(("$.mediaType", problem))
    if "artifactType" in doc and not isinstance(doc["artifactType"], str):
        out.append(("$.artifactType", "must be a string"))
    if "config" not in doc:
        out.append(("$.config", "required"))
    else:
        out += _descriptor_findings(doc["config"], "$.config")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        out.append(("$.layers", "required, an array of descriptors"))
    else:
        for i, layer in enumerate(layers):
            out += _descriptor_findings(layer, f"$.layers[{i}]")
    if doc.get("subject") is not None:
        out += _descriptor_findings(doc["subject"], "$.subject")
    if "annotations" in doc and not _is_str_map(doc["annotations"]):
        out.append(("$.annotations", "must map strings to strings"))
    return out


class Index:
    """An OCI image index (image-index.md): a layout's index.json, a referrers fallback index, a
    signature set. Keeps its bytes, as Manifest does. `entries` are the `manifests` array's objects as
    written (checked descriptors, annotations kept), for callers that edit and rewrite an index."""

    __slots__ = ("raw", "digest", "media_type", "artifact_type", "entries", "manifests", "annotations", "subject")

    def __init__(self, raw: bytes, digest: str, doc: dict):
        # Use Index.parse or Index.build; this assumes `doc` was checked.
        self.raw = raw
        self.digest = digest
        self.media_type = doc.get("mediaType")
        self.artifact_type = doc.get("artifactType")
        self.entries: list[dict] = doc["manifests"]
        self.manifests = [Descriptor.from_dict(d) for d in self.entries]
        self.annotations = dict(doc["annotations"]) if doc.get("annotations") else None
        self.subject = Descriptor.from_dict(doc["subject"]) if doc.get("subject") is not None else None

    @classmethod
    def parse(cls, raw: bytes, expected_digest: str | None = None, *, what: str | None = None) -> Index:
        """Parse index bytes; SchemaViolationError names what is wrong (`$` for the whole document)."""
        raw = bytes(raw)
        digest = sha256_bytes(raw)
        what = what or f"index {expected_digest or digest}"
        if len(raw) > MAX_MANIFEST_SIZE:
            raise SchemaViolationError(what, [("$", f"{len(raw)} bytes, over the {MAX_MANIFEST_SIZE}-byte limit")])
        if expected_digest is not None and digest != validate_digest(expected_digest):
            raise DigestMismatchError("index", expected_digest, digest)
        doc = load_json_document(raw, what)
        if not isinstance(doc, dict) or doc.get("schemaVersion") != 2 or not isinstance(doc.get("manifests"), list) \
                or doc.get("mediaType", mt.OCI_INDEX) not in INDEX_TYPES:
            raise SchemaViolationError(what, [("$", "not an OCI image index")])
        findings = [f for i, d in enumerate(doc["manifests"]) for f in _descriptor_findings(d, f"$.manifests[{i}]")]
        if findings:
            raise SchemaViolationError(what, findings)
        return cls(raw, digest, doc)

    @classmethod
    def build(cls, entries: list[dict], *, annotations: dict[str, str] | None = None) -> Index:
        """A new OCI image index in canonical bytes listing `entries` (descriptor objects) in order."""
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": list(entries)}
        if annotations:
            doc["annotations"] = dict(sorted(annotations.items()))
        raw = canonical_json(doc)
        return cls.parse(raw)

    @property
    def size(self) -> int:
        return len(self.raw)

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type or mt.OCI_INDEX, self.digest, len(self.raw),
                          artifact_type=self.artifact_type)

    def __repr__(self) -> str:
        return f"Index({self.digest}, {len(self.manifests)} manifests)"


def is_graph_node(media_type: str | None) -> bool:
    """A descriptor whose blob is itself a manifest or an index (a node with successors)."""
    return media_type in MANIFEST_TYPES or media_type in INDEX_TYPES


def parse_node(raw: bytes, digest: str, media_type: str | None = None) -> Manifest | Index:
    """A manifest or an index, told apart by its own mediaType, else by the descriptor's, else by shape
    (a `manifests` array) when neither names a manifest type."""
    doc = load_json_document(raw, f"manifest {digest}")
    if not isinstance(doc, dict):
        raise SchemaViolationError(f"manifest {digest}", [("$", "not a JSON object")])
    kind = doc.get("mediaType") or media_type
    if kind in INDEX_TYPES or (kind not in MANIFEST_TYPES and "manifests" in doc):
        return Index.parse(raw, digest)
    return Manifest.parse(raw, digest)


def successors(node: Manifest | Index) -> list[Descriptor]:
    """What a node points at, the one definition every graph walk uses (gc, verify --all, copy, save):
    a manifest's config and layers, an index's manifests. A `subject` is not a successor: a referrer
    points back at its subject, it does not own it."""
    if isinstance(node, Index):
        return list(node.manifests)
    return node.blob_descriptors()
