"""What an OCI layout directory and an OCI layout tar share (image-spec v1.1 `image-layout.md`):
their errors, the `oci-layout` version check and `index.json` parsing.

A saved layout holds models and nothing else::

    <dir>/ or <file>.tar
      oci-layout            {"imageLayoutVersion": "1.0.0"}
      index.json            one manifest descriptor per tag, `org.opencontainers.image.ref.name` set to
                            the full normalized reference (`docker.io/ai/tiny:latest`)
      blobs/sha256/<hex>    the manifests, configs and layers
"""

from __future__ import annotations

import json
import os
import re

from ..content.descriptor import Index
from ..errors import MdlError, SchemaViolationError
from ..store import DOCUMENT_LIMIT, LAYOUT_VERSION

BLOB_NAME = re.compile(r"blobs/sha256/([0-9a-f]{64})")
TAR_SUFFIXES = (".tar",)


class LayoutError(MdlError):
    """An OCI layout (directory or tar) cannot be saved to or loaded from."""

    kind = "layout"


class UnsafeArchiveError(LayoutError):
    """A tar member mdl refuses to read: it could write outside the store, or is not a layout blob."""

    kind = "unsafe-archive"

    def __init__(self, archive: str | os.PathLike, member: str, problem: str):
        self.archive = os.fspath(archive)
        self.member = member
        self.problem = problem
        super().__init__(f"{self.archive}: member {member!r} is refused: {problem}",
                         "load only archives written by `mdl save`, `skopeo copy ... oci-archive:` or similar")


def is_tar_path(path: str | os.PathLike) -> bool:
    return os.fspath(path).lower().endswith(TAR_SUFFIXES)


def layout_version(raw: bytes) -> object:
    """The imageLayoutVersion an oci-layout file's bytes give (None when they give none)."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return doc.get("imageLayoutVersion") if isinstance(doc, dict) else None


def check_layout_version(raw: bytes, where: str, problem: str = "unsupported imageLayoutVersion") -> None:
    version = layout_version(raw)
    if version != LAYOUT_VERSION:
        raise LayoutError(f"{where}: {problem} {version!r}", f"mdl reads OCI layouts of version {LAYOUT_VERSION}")


def parse_index(raw: bytes, what: str) -> list[dict]:
    """A layout's index.json entries (descriptor objects), or LayoutError saying it is damaged."""
    if len(raw) > DOCUMENT_LIMIT:
        raise LayoutError(f"{what} is {len(raw)} bytes, over the {DOCUMENT_LIMIT}-byte limit", "the layout is damaged")
    try:
        return Index.parse(raw, what=what).entries
    except SchemaViolationError as e:
        if e.findings[0] == ("$", "not an OCI image index"):
            raise LayoutError(f"{what} is not an OCI image index", "the layout is damaged") from None
        raise
