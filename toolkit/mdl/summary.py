"""What `list` and `inspect` show of a stored model, read from its config in either format."""

from __future__ import annotations

import json
from dataclasses import dataclass

from .content.descriptor import Manifest
from .store import LayoutStore
from .formats.units import format_binary_size
from .spec import mediatypes as mt


@dataclass
class ModelSummary:
    digest: str
    tags: list[str]
    manifest: Manifest
    config: dict
    format: str | None
    parameters: str | None
    quantization: str | None
    architecture: str | None
    created: str | None
    size: str
    context_size: int | None

    @property
    def id(self) -> str:
        return self.digest

    def as_dict(self) -> dict:
        return {
            "id": self.digest, "tags": self.tags, "created": self.created, "format": self.format,
            "parameters": self.parameters, "quantization": self.quantization,
            "architecture": self.architecture, "size": self.size, "context_size": self.context_size,
            "config": self.config,
        }


def summarize(store: LayoutStore, digest: str) -> ModelSummary:
    manifest = store.manifest(digest)
    config = json.loads(store.read_blob(manifest.config.digest, manifest.config.size))
    layers_size = format_binary_size(sum(d.size for d in manifest.layers))
    if manifest.config.media_type in mt.MODELPACK_CONFIGS:
        c, d = config.get("config") or {}, config.get("descriptor") or {}
        fields = (c.get("format"), c.get("paramSize"), c.get("quantization") or c.get("precision"),
                  c.get("architecture"), d.get("createdAt"), layers_size, None)
    else:
        c, d = config.get("config") or {}, config.get("descriptor") or {}
        fields = (c.get("format"), c.get("parameters"), c.get("quantization"), c.get("architecture"),
                  d.get("created"), c.get("size") or layers_size, c.get("context_size"))
    return ModelSummary(digest, store.tags_of(digest), manifest, config, *fields)
