"""Content: digests, descriptors, manifests and indexes, the graph they form, and the copy between
two sides (the local store lives in `mdl.store`)."""

from .descriptor import Descriptor, Index, Manifest
from .digest import InvalidDigestError, digest_hex, hash_file, sha256_bytes, validate_digest

__all__ = [
    "Descriptor", "Index", "InvalidDigestError", "Manifest", "digest_hex", "hash_file", "sha256_bytes",
    "validate_digest",
]
