"""The small interfaces every copy of a model is written against.

`push`, `pull`, `save` and `load` are one operation, a copy of a manifest graph from a source to a
target (docs/architecture.md); the local store, an OCI layout directory or tar, and a registry repository each
implement the side(s) they can play. Targets verify what they receive: a source hands out bytes, the
target hashes them while writing and publishes only what matches the descriptor.
"""

from __future__ import annotations

from typing import BinaryIO, Protocol

from .descriptor import Descriptor, Manifest

# What put_blob did with a blob.
SENT = "sent"  # bytes were transferred
EXISTS = "exists"  # the target had it already
MOUNTED = "mounted"  # the registry linked it from another repository


class Progress(Protocol):
    """Receives transfer events; implementations render bars, lines or JSON (mdl/cli/progress.py)."""

    def start(self, desc: Descriptor, what: str) -> None: ...  # what: "manifest", "config", "layer"

    def advance(self, desc: Descriptor, nbytes: int) -> None: ...

    def done(self, desc: Descriptor, outcome: str) -> None: ...  # SENT, EXISTS or MOUNTED


class NoProgress:
    def start(self, desc: Descriptor, what: str) -> None:
        pass

    def advance(self, desc: Descriptor, nbytes: int) -> None:
        pass

    def done(self, desc: Descriptor, outcome: str) -> None:
        pass


class BlobSource(Protocol):
    def open_blob(self, desc: Descriptor, offset: int = 0) -> tuple[BinaryIO, int]:
        """A stream of the blob's bytes and the offset it starts at: `offset` when the source could
        start there (a registry's valid 206), else 0 (the caller must start over). Unverified."""
        ...


class ModelSource(BlobSource, Protocol):
    def fetch_manifest(self, reference: str) -> Manifest:
        """The manifest `reference` (a tag or digest) names, verified against its digest."""
        ...


class BlobTarget(Protocol):
    def has_blob(self, desc: Descriptor) -> bool: ...

    def put_blob(self, desc: Descriptor, source: BlobSource, progress: Progress) -> str:
        """Copy one blob from `source`, verifying size and digest before it becomes visible;
        returns SENT, EXISTS or MOUNTED. Raises DigestMismatchError and publishes nothing on a mismatch."""
        ...

    def put_manifest(self, manifest: Manifest, tags: list[str]) -> None:
        """Store the manifest (its blobs must be there already) under each tag (may be empty)."""
        ...


def open_blob_file(path, desc: Descriptor, offset: int) -> tuple[BinaryIO, int]:
    """A blob file opened at `offset` when that lies inside the blob, else at 0 (BlobSource.open_blob)."""
    f = open(path, "rb", buffering=0)
    start = offset if 0 < offset <= desc.size else 0
    if start:
        f.seek(start)
    return f, start  # type: ignore[return-value]
