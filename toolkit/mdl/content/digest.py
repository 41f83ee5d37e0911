"""Digests as the OCI image-spec writes them (`descriptor.md`, "Digests"): `algorithm:encoded`, and the
reader that checks a blob against its digest as it is read (every read of a stored blob goes through it).

Only `sha256` is accepted for now; its encoded part is exactly 64 lowercase hex characters.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from typing import BinaryIO

from ..errors import DigestMismatchError, MdlError

ALGORITHM = "sha256"
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
DEFAULT_BUFSIZE = 1 << 20
MAX_HASH_WORKERS = 8


def hash_workers(files: int) -> int:
    """How many files to hash at once: one per core (hashlib and file reads release the GIL), each
    holding one DEFAULT_BUFSIZE buffer, so memory stays bounded whatever the model's size."""
    return max(1, min(files, os.cpu_count() or 1, MAX_HASH_WORKERS))


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


# verifying reader


class VerifyingReader(io.RawIOBase):
    """A blob read that checks size and digest: DigestMismatchError when the bytes read do not match.

    The hash is checked as soon as `size` bytes have been read (or at EOF when the size is unknown),
    and a blob longer or shorter than `size` is refused as well.
    """

    def __init__(self, f: BinaryIO, digest: str, size: int | None, what: str = "blob"):
        super().__init__()
        self._f = f
        self._digest = digest
        self._size = size
        self._what = what
        self._hash = hashlib.sha256()
        self._count = 0
        self._checked_stat = False
        self.verified = False

    def readable(self) -> bool:
        return True

    def _fail(self, actual: str) -> None:
        raise DigestMismatchError(self._what, self._digest, actual, self._size, self._count)

    def readinto(self, b) -> int:
        if not self._checked_stat:
            self._checked_stat = True
            # A blob file's size is known before reading: refuse a wrong one at once. (Not for other
            # streams: a tar member's descriptor is the whole archive's.)
            if self._size is not None and isinstance(self._f, io.FileIO):
                actual = os.fstat(self._f.fileno()).st_size
                if actual != self._size:
                    raise DigestMismatchError(self._what, self._digest, "(not hashed)", self._size, actual)
        n = self._f.readinto(b)
        if n:
            with memoryview(b) as view:
                self._hash.update(view[:n])
            self._count += n
            if self._size is not None:
                if self._count > self._size:
                    self._fail("(longer than expected)")
                if self._count == self._size:
                    self._finish()
        elif len(b):
            if self._size is not None and self._count != self._size:
                self._fail("(shorter than expected)")
            self._finish()
        return n or 0

    def _finish(self) -> None:
        if self.verified:
            return
        actual = f"{ALGORITHM}:{self._hash.hexdigest()}"
        if actual != self._digest:
            self._fail(actual)
        self.verified = True

    def close(self) -> None:
        try:
            self._f.close()
        finally:
            super().close()

    def fileno(self) -> int:
        return self._f.fileno()
