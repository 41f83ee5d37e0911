"""Content: digests, descriptors and manifests, and the local store (an OCI image layout)."""

from .descriptor import Descriptor, Manifest
from .digest import InvalidDigestError, digest_hex, hash_file, sha256_bytes, validate_digest
from .layout import (
    BlobMissingError,
    BlobWriter,
    DiskUsage,
    IndexEntry,
    LayoutStore,
    ModelRecord,
    PruneResult,
    RemovalResult,
    ResumableWriter,
)

__all__ = [
    "BlobMissingError", "BlobWriter", "Descriptor", "DiskUsage", "IndexEntry", "InvalidDigestError",
    "LayoutStore", "Manifest", "ModelRecord", "PruneResult", "RemovalResult", "ResumableWriter", "digest_hex",
    "hash_file",
    "sha256_bytes", "validate_digest",
]
