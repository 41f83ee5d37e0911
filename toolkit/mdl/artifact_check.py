"""Admission checks for a model artifact arriving from elsewhere (a registry, a layout, a tar).

What fails them is never stored: the manifest's config type must be a model config type, the
manifest must pass its format's profile and the config its schema (spec/docker-format.md,
spec/modelpack.md).
"""

from __future__ import annotations

import json

from .content.descriptor import Manifest
from .errors import SchemaViolationError, UnsupportedArtifactError
from .spec import mediatypes as mt
from .spec import schemas


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
