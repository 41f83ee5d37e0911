"""Classify a file of a model directory by its name, as Docker's packager does.

Rules (docker/model-runner `pkg/distribution/files/classify.go`), applied in this order to the
lower-cased basename:

1. ends with `.gguf` -> GGUF; `.safetensors` -> SAFETENSORS; `.dduf` -> DDUF
2. ends with `.jinja`, or contains `chat_template` -> CHAT_TEMPLATE
3. contains `license`, `licence`, `copying` or `notice` -> LICENSE
4. everything else -> OTHER (packaged as a generic "model file" layer)

Docker splits rule 4 into "config" (`.md`, `.txt`, `.json`, `.vocab`, `tokenizer.model`) and
"unknown"; both get the same media type, so they are one kind here. `is_config_name` tells them
apart for callers that care (Docker's Hugging Face downloader does).
"""

from __future__ import annotations

import enum
import posixpath

_CONFIG_EXTENSIONS = (".md", ".txt", ".json", ".vocab")
_SPECIAL_CONFIG_FILES = ("tokenizer.model",)
_LICENSE_PATTERNS = ("license", "licence", "copying", "notice")


class FileKind(enum.Enum):
    GGUF = "gguf"
    SAFETENSORS = "safetensors"
    DDUF = "dduf"
    CHAT_TEMPLATE = "chat_template"
    LICENSE = "license"
    OTHER = "other"

    @property
    def is_weights(self) -> bool:
        return self in (FileKind.GGUF, FileKind.SAFETENSORS, FileKind.DDUF)


def _basename(name: str) -> str:
    return posixpath.basename(name.replace("\\", "/"))


def classify(name: str) -> FileKind:
    """The kind of a file, from its name (a path or a basename)."""
    lower = _basename(name).lower()
    if lower.endswith(".gguf"):
        return FileKind.GGUF
    if lower.endswith(".safetensors"):
        return FileKind.SAFETENSORS
    if lower.endswith(".dduf"):
        return FileKind.DDUF
    if lower.endswith(".jinja") or "chat_template" in lower:
        return FileKind.CHAT_TEMPLATE
    if any(p in lower for p in _LICENSE_PATTERNS):
        return FileKind.LICENSE
    return FileKind.OTHER


def is_config_name(name: str) -> bool:
    """Docker's "config" file type: an OTHER file named `*.md|*.txt|*.json|*.vocab|tokenizer.model`."""
    lower = _basename(name).lower()
    if classify(name) is not FileKind.OTHER:
        return False
    return lower.endswith(_CONFIG_EXTENSIONS) or lower in _SPECIAL_CONFIG_FILES
