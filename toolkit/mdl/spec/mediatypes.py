"""Media types and annotation keys, by name.

Every string comes from `schemas/media-types.json`; this module only gives them Python names, so a
media type is spelled once in the whole tree (a test checks the schemas and the spec against the table).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from .resources import load_json


@dataclass(frozen=True)
class MediaTypeEntry:
    id: str
    media_type: str
    role: str  # manifest, index, config, artifactType, layer
    family: str  # oci, docker, docker-distribution, cncf
    status: str  # current, legacy (read, never written), draft (never written), foreign (not a model)


@cache
def table() -> dict[str, MediaTypeEntry]:
    doc = load_json("media-types.json")
    return {
        e["id"]: MediaTypeEntry(e["id"], e["mediaType"], e["role"], e["family"], e["status"])
        for e in doc["mediaTypes"]
    }


@cache
def annotation_table() -> dict[str, str]:
    return {e["id"]: e["key"] for e in load_json("media-types.json")["annotations"]}


@cache
def by_media_type() -> dict[str, MediaTypeEntry]:
    return {e.media_type: e for e in table().values()}


def mt(id_: str) -> str:
    return table()[id_].media_type


def entry(media_type: str) -> MediaTypeEntry | None:
    return by_media_type().get(media_type)


# OCI
OCI_MANIFEST = mt("oci-manifest")
OCI_INDEX = mt("oci-index")
OCI_EMPTY = mt("oci-empty")
DOCKER_MANIFEST_V2 = mt("docker-manifest-v2")
DOCKER_MANIFEST_LIST = mt("docker-manifest-list")

# Docker model artifacts
DOCKER_CONFIG_V01 = mt("docker-config-v0.1")
DOCKER_CONFIG_V02 = mt("docker-config-v0.2")
GGUF = mt("docker-gguf")
SAFETENSORS = mt("docker-safetensors")
DDUF = mt("docker-dduf")
LICENSE = mt("docker-license")
CHAT_TEMPLATE = mt("docker-chat-template")
MMPROJ = mt("docker-mmproj")
MODEL_FILE = mt("docker-model-file")
VLLM_CONFIG_TAR = mt("docker-vllm-config-tar")
DIR_TAR = mt("docker-dir-tar")

# CNCF ModelPack
CNCF_ARTIFACT_TYPE = mt("cncf-artifact-type")
CNCF_CONFIG = mt("cncf-config")
CNCF_WEIGHT_RAW = mt("cncf-weight-raw")
CNCF_WEIGHT_CONFIG_RAW = mt("cncf-weight-config-raw")
CNCF_DOC_RAW = mt("cncf-doc-raw")
CNCF_CODE_RAW = mt("cncf-code-raw")
# Docker Model Runner's format-suffixed weight types: raw weights of that format, read only (spec/modelpack.md §3.2).
SUFFIXED_WEIGHT_FORMATS = {mt("cncf-weight-gguf"): "gguf", mt("cncf-weight-safetensors"): "safetensors"}
CNAI_ARTIFACT_TYPE = mt("cnai-artifact-type")
CNAI_CONFIG = mt("cnai-config")

DOCKER_CONFIGS = frozenset({DOCKER_CONFIG_V01, DOCKER_CONFIG_V02})
MODELPACK_CONFIGS = frozenset({CNCF_CONFIG, CNAI_CONFIG})
MODELPACK_ARTIFACT_TYPES = frozenset({CNCF_ARTIFACT_TYPE, CNAI_ARTIFACT_TYPE})
MODEL_CONFIGS = DOCKER_CONFIGS | MODELPACK_CONFIGS
# What a registry is asked for: every manifest type, so it answers rather than 404s.
MANIFEST_ACCEPT = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_V2, DOCKER_MANIFEST_LIST)

# Annotation keys
ANNOTATION_FILEPATH = annotation_table()["filepath"]
ANNOTATION_FILE_METADATA = annotation_table()["file-metadata"]
ANNOTATION_MEDIATYPE_UNTESTED = annotation_table()["mediatype-untested"]
ANNOTATION_CNAI_FILEPATH = annotation_table()["cnai-filepath"]
ANNOTATION_CNAI_FILE_METADATA = annotation_table()["cnai-file-metadata"]
ANNOTATION_REF_NAME = annotation_table()["oci-ref-name"]
ANNOTATION_CREATED = annotation_table()["oci-created"]
ANNOTATION_TITLE = annotation_table()["oci-title"]
FILEPATH_KEYS = (ANNOTATION_FILEPATH, ANNOTATION_CNAI_FILEPATH)
FILE_METADATA_KEYS = (ANNOTATION_FILE_METADATA, ANNOTATION_CNAI_FILE_METADATA)


def is_modelpack_layer(media_type: str) -> bool:
    e = entry(media_type)
    return e is not None and e.family == "cncf" and e.role == "layer"


def modelpack_layer_kind(media_type: str) -> tuple[str, str] | None:
    """('weight'|'weight.config'|'doc'|'code'|'dataset', 'raw'|'tar'|...) for a ModelPack layer type;
    Docker's format-suffixed weight types are raw weights."""
    if not is_modelpack_layer(media_type):
        return None
    if media_type in SUFFIXED_WEIGHT_FORMATS:
        return "weight", "raw"
    rest = media_type.split(".model.", 1)[1]  # e.g. "weight.config.v1.tar+gzip"
    kind, enc = rest.split(".v1.")
    return kind, enc


# Cosign signatures (spec/signing.md)
OCI_IMAGE_CONFIG = mt("oci-image-config")
DOCKER_IMAGE_CONFIG = mt("docker-image-config")
COSIGN_SIMPLESIGNING = mt("cosign-simplesigning")
COSIGN_SIGNATURE_ARTIFACT_TYPE = mt("cosign-signature-artifact-type")
ANNOTATION_COSIGN_SIGNATURE = annotation_table()["cosign-signature"]
# Sigstore bundles (cosign v3, OpenSSF model signing) and the in-toto statements they sign
SIGSTORE_BUNDLE = mt("sigstore-bundle-v0.3")
IN_TOTO_PAYLOAD = mt("in-toto-statement")
ANNOTATION_BUNDLE_CONTENT = annotation_table()["sigstore-bundle-content"]
ANNOTATION_BUNDLE_PREDICATE_TYPE = annotation_table()["sigstore-bundle-predicate-type"]
