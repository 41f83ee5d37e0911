"""Small helpers for registry tests: in-memory blob sources and a hashing consumer."""

from __future__ import annotations

import hashlib
import io
import os

from mdl.content.descriptor import Descriptor
from mdl.spec import mediatypes as mt


def blob(data: bytes, media_type: str = mt.GGUF) -> Descriptor:
    return Descriptor(media_type, "sha256:" + hashlib.sha256(data).hexdigest(), len(data))


def random_blob(size: int, media_type: str = mt.GGUF) -> tuple[bytes, Descriptor]:
    data = os.urandom(size)
    return data, blob(data, media_type)


class BytesSource:
    """A BlobSource over bytes; `data` may differ from what the descriptor says (to test refusals)."""

    def __init__(self, data: bytes):
        self.data = data
        self.opened: list[int] = []

    def open_blob(self, desc: Descriptor, offset: int = 0):
        self.opened.append(offset)
        return io.BytesIO(self.data[offset:]), offset


class Recorder:
    """A debug_log hook that keeps every exchange."""

    def __init__(self):
        self.exchanges = []

    def __call__(self, exchange) -> None:
        self.exchanges.append(exchange)

    def methods(self) -> list[str]:
        return [e.method for e in self.exchanges]

    def count(self, method: str, path_part: str = "") -> int:
        return sum(1 for e in self.exchanges if e.method == method and path_part in e.url)

    def text(self) -> str:
        return "\n".join(str(e) for e in self.exchanges)


def read_and_verify(stream, desc: Descriptor, bufsize: int = 1 << 20) -> bytes:
    """Read a stream to its end, hashing it, and refuse bytes that do not match `desc` (as a consumer must)."""
    from mdl.errors import DigestMismatchError

    h = hashlib.sha256()
    out = bytearray()
    buf = bytearray(bufsize)
    view = memoryview(buf)
    try:
        while True:
            n = stream.readinto(buf)
            if not n:
                break
            h.update(view[:n])
            out += view[:n]
    finally:
        stream.close()
    actual = "sha256:" + h.hexdigest()
    if actual != desc.digest or len(out) != desc.size:
        raise DigestMismatchError("blob", desc.digest, actual, desc.size, len(out))
    return bytes(out)
