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

from ..cores import usable_cores
from ..errors import DigestMismatchError, MdlError
from .mapped import FileChanged, hash_mapped
from .readahead import chunks

ALGORITHM = "sha256"
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
DEFAULT_BUFSIZE = 1 << 20
# Hashing a file reads 4 MiB at a time, into at most two buffers (one read ahead): larger chunks mean
# fewer GIL hand-offs between the reading and hashing threads, which matters when a third thread is
# busy (packaging loads the schema validators meanwhile). docs/performance.md has the figures.
HASH_BUFSIZE = 4 << 20
HASH_BUFFERS = 2
MAX_HASH_WORKERS = 8


def hash_workers(files: int) -> int:
    """How many files to hash at once: one per core (hashlib and file reads release the GIL), each
    holding at most HASH_BUFFERS x HASH_BUFSIZE, so memory stays bounded whatever the model's size."""
    return max(1, min(files, usable_cores(), MAX_HASH_WORKERS))


def spare_core(workers: int) -> bool:
    """Whether `workers` hashing threads leave a core idle, so that each can read ahead (`chunks`)."""
    return workers < usable_cores()


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


def hash_file(path: str | os.PathLike, bufsize: int = HASH_BUFSIZE) -> tuple[str, int]:
    """(digest, size) of a file, read once."""
    with open(path, "rb", buffering=0) as f:
        return hash_stream(f, bufsize)


def hash_whole_file(f: io.FileIO, *, ahead: bool = True) -> tuple[str, int]:
    """(digest, size) of the regular file open on `f`, from its start. With `ahead` (a core is idle),
    read on a helper thread while this one hashes; else (every core hashes a file) through a memory map
    under a read lease where one can be had (content/mapped.py: no copy; FileChanged if a writer
    comes), else read. docs/performance.md has the figures."""
    mapped = None if ahead else _hash_mapped_file(f)
    if mapped is not None:
        return mapped
    f.seek(0)
    return hash_stream(f, ahead=ahead)


def _hash_mapped_file(f: io.FileIO) -> tuple[str, int] | None:
    """`hash_mapped` of the file open on `f` as (digest, size), leaving `f` at its end; None: no lease."""
    mapped = hash_mapped(f.fileno())
    if mapped is None:
        return None
    f.seek(mapped[1])
    return f"{ALGORITHM}:{mapped[0]}", mapped[1]


def hash_stream(f, bufsize: int = HASH_BUFSIZE, *, ahead: bool = True) -> tuple[str, int]:
    """(digest, size) of what is left in a binary stream; with `ahead`, the next chunk is read on a
    helper thread while this one is hashed (`spare_core` says when that pays)."""
    h = hashlib.sha256()
    size = 0
    for chunk in chunks(f, ahead=ahead, bufsize=bufsize, buffers=HASH_BUFFERS):
        h.update(chunk)
        size += len(chunk)
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
        self._check_file_size()
        n = self._f.readinto(b)
        if n:
            with memoryview(b) as view:
                self._take(view[:n])
        elif len(b):
            self._check_end()
        return n or 0

    def drain(self, *, ahead: bool = True) -> int:
        """Read the rest of the blob, verifying it, and return how many bytes that was. With `ahead` (a
        core is idle), a helper thread reads the next chunk while this one is hashed; else a blob file
        not read yet is hashed through a memory map under a lease where one can be had (as
        `hash_whole_file`). `spare_core` says which pays."""
        self._check_file_size()
        start = self._count
        if not ahead and start == 0 and isinstance(self._f, io.FileIO):
            try:
                mapped = _hash_mapped_file(self._f)
            except FileChanged:
                self._fail("(the file changed while it was read)")
            if mapped is not None:
                actual, self._count = mapped
                self._check_end(actual)
                return self._count
        for chunk in chunks(self._f, ahead=ahead, bufsize=HASH_BUFSIZE, buffers=HASH_BUFFERS):
            self._take(chunk)
        self._check_end()
        return self._count - start

    def _check_file_size(self) -> None:
        if self._checked_stat:
            return
        self._checked_stat = True
        # A blob file's size is known before reading: refuse a wrong one at once. (Not for other
        # streams: a tar member's descriptor is the whole archive's.)
        if self._size is not None and isinstance(self._f, io.FileIO):
            actual = os.fstat(self._f.fileno()).st_size
            if actual != self._size:
                raise DigestMismatchError(self._what, self._digest, "(not hashed)", self._size, actual)

    def _take(self, chunk: memoryview) -> None:
        self._hash.update(chunk)
        self._count += len(chunk)
        if self._size is not None:
            if self._count > self._size:
                self._fail("(longer than expected)")
            if self._count == self._size:
                self._finish()

    def _check_end(self, actual: str | None = None) -> None:
        if self._size is not None and self._count != self._size:
            self._fail("(shorter than expected)" if self._count < self._size else "(longer than expected)")
        self._finish(actual)

    def _finish(self, actual: str | None = None) -> None:
        """Compare the digest of what was read (`actual`, when it was hashed elsewhere) with the expected one."""
        if self.verified:
            return
        actual = actual or f"{ALGORITHM}:{self._hash.hexdigest()}"
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
