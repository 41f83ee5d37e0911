"""What a format reader reports about a model's weights, and the Docker config built from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .units import format_parameters

# The key of the per-format metadata map in Docker's config object.
_METADATA_KEY = {"gguf": "gguf", "safetensors": "safetensors", "dduf": "diffusers", "diffusers": "diffusers"}


@dataclass
class WeightsInfo:
    format: str                      # "gguf" | "safetensors" | "dduf"
    files: list[Path]                # weight files in layer order
    architecture: str | None
    parameters: int | None           # exact count
    quantization: str | None         # Docker's text
    precision: str | None            # safetensors dtype text (ModelPack config.precision), else None
    size_bytes: int                  # the number `size_text` is made from
    size_text: str                   # Docker's size text
    context_size: int | None
    metadata: dict[str, str] = field(default_factory=dict)

    def docker_config(self) -> dict:
        """The `config` object of a Docker model config, keys in Docker's order, empty values omitted.

        Mirrors Go's `omitempty` on `types.Config`: empty strings, empty maps and a nil
        `context_size` are left out.
        """
        out: dict = {}

        def put(key: str, value) -> None:
            if value is None or value == "" or value == {}:
                return
            out[key] = value

        put("format", self.format)
        put("quantization", self.quantization)
        put("parameters", format_parameters(self.parameters) if self.parameters is not None else None)
        put("architecture", self.architecture)
        put("size", self.size_text)
        key = _METADATA_KEY.get(self.format)
        if key is not None:
            put(key, dict(self.metadata))
        put("context_size", self.context_size)
        return out
