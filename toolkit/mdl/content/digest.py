"""Digests as the OCI image-spec writes them (`descriptor.md`, "Digests"): `algorithm:encoded`.

Only `sha256` is accepted for now; its encoded part is exactly 64 lowercase hex characters.
"""

from __future__ import annotations

import hashlib
import os
import re

from ..errors import MdlError

ALGORITHM = "sha256"
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
DEFAULT_BUFSIZE = 1 << 20


class InvalidDigestError(MdlError):
    kind = "digest"

    def __init__(self, digest: object, problem: str):
        self.digest = digest if isinstance(digest, str) else repr(digest)
        self.problem = problem
        super().__init__(f"invalid digest {self.digest!r}: {problem}",
                         "a digest is sha256: followed by 64 lowercase hex characters")


def validate_digest(text: object) -> str:
    """`text` if it is a sha256 digest in canonical form, else InvalidDigestError naming the problem."""
    if not isinstance(text, str):
        raise InvalidDigestError(text, "not a string")
    if _SHA256.fullmatch(text):
        return text
    algo, sep, encoded = text.partition(":")
    if not sep:
        problem = "no algorithm prefix (expected sha256:<hex>)"
    elif algo != ALGORITHM:
        problem = f"unsupported algorithm {algo!r} (only sha256)"
    elif len(encoded) != 64:
        problem = f"the hex part is {len(encoded)} characters, expected 64"
    else:
        problem = "the hex part must be lowercase hex characters"
    raise InvalidDigestError(text, problem)


def digest_hex(digest: str) -> str:
    """The encoded part of a sha256 digest (64 hex)."""
    return validate_digest(digest)[len(ALGORITHM) + 1:]


def sha256_bytes(data: bytes | bytearray | memoryview) -> str:
    return f"{ALGORITHM}:{hashlib.sha256(data).hexdigest()}"


def hash_file(path: str | os.PathLike, bufsize: int = DEFAULT_BUFSIZE) -> tuple[str, int]:
    """(digest, size) of a file, read once through one reused buffer."""
    with open(path, "rb", buffering=0) as f:
        return hash_stream(f, bufsize)


def hash_stream(f, bufsize: int = DEFAULT_BUFSIZE) -> tuple[str, int]:
    """(digest, size) of what is left in a binary file object that has `readinto`."""
    h = hashlib.sha256()
    buf = bytearray(bufsize)
    view = memoryview(buf)
    size = 0
    while True:
        n = f.readinto(buf)
        if not n:
            break
        h.update(view[:n])
        size += n
    return f"{ALGORITHM}:{h.hexdigest()}", size
