"""What a manifest in a registry is: one rule, applied to the parsed node.

- `index`: an OCI image index or a Docker manifest list (a multi-platform image, a referrers fallback
  index, a signature set).
- `signature`: a cosign signature manifest (`artifact_check.is_signature_manifest`, spec/signing.md §4).
- `docker-model`, `modelpack-model`: a manifest that claims to be a model, by its config media type
  (the format `conformance.artifacts.artifact_format` names), or, for ModelPack, by its artifactType
  alone (a model whose config type is wrong is still a model, and its check says what is wrong).
- `image`: a container image: an OCI or Docker image config and no artifactType.
- `artifact`: any other OCI artifact (Helm charts, SBOMs, attestations, ...).
- `unknown`: a manifest that could not be read (the audit says why).
"""

from __future__ import annotations

import re

from ..conformance.artifacts import artifact_format
from ..content.descriptor import Index, Manifest
from ..signing.cosign import is_signature_manifest
from ..spec import mediatypes as mt

DOCKER_MODEL = "docker-model"
MODELPACK_MODEL = "modelpack-model"
SIGNATURE = "signature"
IMAGE = "image"
ARTIFACT = "artifact"
INDEX = "index"
UNKNOWN = "unknown"
KINDS = (DOCKER_MODEL, MODELPACK_MODEL, SIGNATURE, ARTIFACT, IMAGE, INDEX, UNKNOWN)
MODEL_KINDS = frozenset({DOCKER_MODEL, MODELPACK_MODEL})

IMAGE_CONFIGS = frozenset({mt.OCI_IMAGE_CONFIG, mt.DOCKER_IMAGE_CONFIG})  # container images, not models

_SUBJECT_TAG = re.compile(r"sha256-([0-9a-f]{64})(?:\.sig)?")


def classify(node: Manifest | Index) -> tuple[str, str | None]:
    """(kind, format) of a parsed manifest or index; format is "docker" or "modelpack" for models."""
    if isinstance(node, Index):
        return INDEX, None
    if is_signature_manifest(node):
        return SIGNATURE, None
    config_type = node.config.media_type
    fmt = artifact_format(config_type)
    if fmt is None and node.artifact_type in mt.MODELPACK_ARTIFACT_TYPES:
        fmt = "modelpack"
    if fmt is not None:
        return (DOCKER_MODEL if fmt == "docker" else MODELPACK_MODEL), fmt
    if config_type in IMAGE_CONFIGS and node.artifact_type is None:
        return IMAGE, None
    return ARTIFACT, None


def subject_of(node: Manifest | Index | None, tags: list[str]) -> str | None:
    """The digest a signature or a referrers index is about: its `subject`, else what its tag names
    (`sha256-<hex>.sig`, cosign's signature tag, or `sha256-<hex>`, the referrers fallback tag)."""
    if node is not None and node.subject is not None:
        return node.subject.digest
    for tag in tags:
        m = _SUBJECT_TAG.fullmatch(tag)
        if m:
            return "sha256:" + m.group(1)
    return None
