"""GGUF header reader: key/values, tensor infos, shard discovery (what Docker derives: `gguf_docker.py`).

File layout (GGUF v2/v3, little-endian; https://github.com/ggml-org/ggml/blob/master/docs/gguf.md):

    magic "GGUF" | version u32 | tensor_count u64 | kv_count u64
    kv_count x  (key: string, value_type u32, value)
    tensor_count x (name: string, n_dims u32, dims u64 x n_dims, ggml_type u32, offset u64)
    padding to `general.alignment` (default 32) | tensor data

    string = length u64 + bytes (UTF-8, not NUL-terminated)
    array  = element_type u32 + count u64 + elements

The reader streams the header through a bounded buffer and never touches tensor data. Arrays longer
than `keep_arrays_up_to` (token lists, merges, scores) are skipped without building their elements:
fixed-size elements by one seek, strings by reading each length and seeking past the bytes. Every
count and length is checked against the bytes left in the file before anything is allocated, so a
hostile header fails fast with `FormatError` and a small memory footprint.
"""

from __future__ import annotations

import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import FormatError, InputPathError, MissingShardError
from .fileio import open_model_file

FMT = "GGUF"
MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
GGML_MAX_DIMS = 4                 # llama.cpp refuses tensors with more dimensions
MAX_ARRAY_NESTING = 4             # GGUF writers never nest arrays; bound the recursion
MAX_KEPT_STRING = 64 * 1024 * 1024  # a single string value held in memory
DOCKER_MAX_ARRAY = 50             # Docker leaves arrays longer than this out of config["gguf"]
INT64_MAX = (1 << 63) - 1
INT32_MAX = (1 << 31) - 1

# GGUF metadata value types.
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
VALUE_TYPE_NAMES = ("UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32", "BOOL",
                    "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64")
_SCALAR = {
    UINT8: struct.Struct("<B"), INT8: struct.Struct("<b"), UINT16: struct.Struct("<H"),
    INT16: struct.Struct("<h"), UINT32: struct.Struct("<I"), INT32: struct.Struct("<i"),
    FLOAT32: struct.Struct("<f"), BOOL: struct.Struct("<B"), UINT64: struct.Struct("<Q"),
    INT64: struct.Struct("<q"), FLOAT64: struct.Struct("<d"),
}
INTEGER_TYPES = frozenset({UINT8, INT8, UINT16, INT16, UINT32, INT32, UINT64, INT64})
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

# ggml tensor types: id -> (name, elements per block, bytes per block). Sizes from ggml's type traits.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2),
    31: ("Q4_0_4_4", 32, 18), 32: ("Q4_0_4_8", 32, 18), 33: ("Q4_0_8_8", 32, 18),
    34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66),
    36: ("IQ4_NL_4_4", 32, 18), 37: ("IQ4_NL_4_8", 32, 18), 38: ("IQ4_NL_8_8", 32, 18),
    39: ("MXFP4", 32, 17),
}


SHARD_RE = re.compile(r"(?P<prefix>.*)-(?P<shard>[0-9]{5})-of-(?P<total>[0-9]{5})\.gguf", re.DOTALL)


# --------------------------------------------------------------------------------------------------
# Data model


@dataclass
class GGUFArray:
    """An array value. `values` is None when the array was longer than the reader kept."""

    element_type: int
    length: int
    values: list[Any] | None

    @property
    def skipped(self) -> bool:
        return self.values is None


@dataclass
class KV:
    type: int      # GGUF value type
    value: Any     # int | float | bool | str | GGUFArray


@dataclass
class TensorInfo:
    name: str
    dims: tuple[int, ...]
    ggml_type: int
    offset: int    # relative to the start of the tensor data

    @property
    def n_elements(self) -> int:
        return math.prod(self.dims)

    @property
    def n_bytes(self) -> int | None:
        """Bytes of tensor data, or None for a ggml type this reader does not know."""
        t = GGML_TYPES.get(self.ggml_type)
        if t is None:
            return None
        _, block, size = t
        return self.n_elements // block * size

    @property
    def type_name(self) -> str:
        t = GGML_TYPES.get(self.ggml_type)
        return t[0] if t else f"type{self.ggml_type}"


@dataclass
class GGUFHeader:
    path: Path
    version: int
    file_size: int
    kv: dict[str, KV] = field(default_factory=dict)
    tensors: list[TensorInfo] = field(default_factory=list)
    alignment: int = DEFAULT_ALIGNMENT
    data_offset: int = 0         # absolute offset of the tensor data (aligned)

    @property
    def data_size(self) -> int:
        """Bytes from the aligned start of tensor data to the end of the file."""
        return max(0, self.file_size - self.data_offset)

    @property
    def parameters(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    def get(self, key: str, default: Any = None) -> Any:
        """The Python value of a key (a list for a kept array, a GGUFArray for a skipped one)."""
        kv = self.kv.get(key)
        if kv is None:
            return default
        if isinstance(kv.value, GGUFArray) and not kv.value.skipped:
            return kv.value.values
        return kv.value


# --------------------------------------------------------------------------------------------------
# Streaming reader


class _Reader:
    """Sequential reads over a file through a bounded buffer; every read is bounds-checked."""

    BUFSIZE = 1 << 20

    def __init__(self, f: BinaryIO, path: Path, size: int):
        self.f = f
        self.path = path
        self.size = size
        self.buf = b""
        self.start = 0      # file offset of buf[0]
        self.pos = 0        # index into buf

    def tell(self) -> int:
        return self.start + self.pos

    def left(self) -> int:
        return self.size - self.start - self.pos

    def error(self, problem: str) -> FormatError:
        return FormatError(self.path, FMT, problem)

    def truncated(self, what: str, need: int) -> FormatError:
        return self.error(f"truncated: {what} at offset {self.tell()} needs {need} bytes, "
                          f"only {max(0, self.left())} left in the file")

    def _fill(self, n: int, what: str) -> None:
        have = len(self.buf) - self.pos
        if have >= n:
            return
        if n > self.left():
            raise self.truncated(what, n)
        tail = self.buf[self.pos:]
        self.start += self.pos
        self.pos = 0
        want = max(n - have, self.BUFSIZE)
        try:
            more = self.f.read(want)
        except OSError as e:
            raise InputPathError(self.path, f"cannot read: {e.strerror or e}") from e
        self.buf = tail + more
        if len(self.buf) < n:  # the file shrank under us
            raise self.truncated(what, n)

    def read(self, n: int, what: str) -> bytes:
        self._fill(n, what)
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, st: struct.Struct, what: str) -> Any:
        self._fill(st.size, what)
        v = st.unpack_from(self.buf, self.pos)[0]
        self.pos += st.size
        return v

    def skip(self, n: int, what: str) -> None:
        if n > self.left():
            raise self.truncated(what, n)
        if self.pos + n <= len(self.buf):
            self.pos += n
            return
        target = self.tell() + n
        self.buf = b""
        self.start = target
        self.pos = 0
        try:
            self.f.seek(target)
        except OSError as e:
            raise InputPathError(self.path, f"cannot read: {e.strerror or e}") from e

    def count(self, what: str, min_item: int) -> int:
        """A u64 count, refused when `count * min_item` exceeds the bytes left."""
        n = self.unpack(_U64, what)
        if n * min_item > self.left():
            raise self.error(f"{what} {n} at offset {self.tell() - 8} is larger than the file allows "
                             f"({self.left()} bytes left)")
        return n

    def string(self, what: str) -> str:
        n = self.unpack(_U64, f"{what} length")
        if n > self.left():
            raise self.error(f"{what} length {n} at offset {self.tell() - 8} exceeds the "
                             f"{self.left()} bytes left in the file")
        if n > MAX_KEPT_STRING:
            raise self.error(f"{what} length {n} at offset {self.tell() - 8} is over the "
                             f"{MAX_KEPT_STRING}-byte limit")
        return self.read(n, what).decode("utf-8", errors="replace")

    def goto(self, offset: int, what: str) -> None:
        """Move to absolute `offset` (forward), keeping the buffer when it already holds it."""
        if offset > self.size:
            raise self.error(f"truncated: {what} ends at offset {offset}, past the end of the "
                             f"file ({self.size} bytes)")
        rel = offset - self.start
        if 0 <= rel <= len(self.buf):
            self.pos = rel
            return
        self.buf = b""
        self.start = offset
        self.pos = 0
        try:
            self.f.seek(offset)
        except OSError as e:
            raise InputPathError(self.path, f"cannot read: {e.strerror or e}") from e

    def skip_strings(self, count: int, what: str) -> None:
        """Skip `count` strings, reading only their lengths.

        The hot loop walks the buffer with one `unpack_from` per string and no bounds checks: the
        first length that does not fit in the buffer raises `struct.error`, and the position it
        stopped at is then checked against the file size, refilled, and the walk resumes.
        """
        unpack_from = _U64.unpack_from
        remaining = count
        while remaining:
            self._fill(8, f"{what} element length")
            buf = self.buf
            p = self.pos
            done = remaining
            try:
                for i in range(remaining):
                    p += 8 + unpack_from(buf, p)[0]
            except (struct.error, OverflowError):  # past the buffer (or an absurd length)
                done = i
            remaining -= done
            self.goto(self.start + p, f"{what} element")


def _read_value(r: _Reader, vtype: int, what: str, keep: int, depth: int) -> Any:
    st = _SCALAR.get(vtype)
    if st is not None:
        v = r.unpack(st, what)
        return bool(v) if vtype == BOOL else v
    if vtype == STRING:
        return r.string(what)
    if vtype == ARRAY:
        return _read_array(r, what, keep, depth + 1)
    raise r.error(f"{what} has unknown value type {vtype} at offset {r.tell() - 4}")


def _read_array(r: _Reader, what: str, keep: int, depth: int) -> GGUFArray:
    if depth > MAX_ARRAY_NESTING:
        raise r.error(f"{what}: arrays nested more than {MAX_ARRAY_NESTING} deep")
    etype = r.unpack(_U32, f"{what} element type")
    st = _SCALAR.get(etype)
    if st is not None:
        min_item = st.size
    elif etype == STRING:
        min_item = 8
    elif etype == ARRAY:
        min_item = 12
    else:
        raise r.error(f"{what} has unknown array element type {etype} at offset {r.tell() - 4}")
    n = r.count(f"{what} array length", min_item)
    if n > keep:
        if st is not None:
            r.skip(n * st.size, f"{what} array")
        elif etype == STRING:
            r.skip_strings(n, what)
        else:
            for _ in range(n):
                _read_array(r, what, 0, depth + 1)
        return GGUFArray(etype, n, None)
    if st is not None:
        raw = r.read(n * st.size, f"{what} array")
        vals = [v[0] for v in st.iter_unpack(raw)]
        if etype == BOOL:
            vals = [bool(v) for v in vals]
        return GGUFArray(etype, n, vals)
    if etype == STRING:
        return GGUFArray(etype, n, [r.string(f"{what} element") for _ in range(n)])
    return GGUFArray(etype, n, [_read_array(r, what, keep, depth + 1) for _ in range(n)])


def _open(path: str | os.PathLike) -> tuple[BinaryIO, Path, int]:
    f, p = open_model_file(path, "GGUF")
    try:
        size = os.fstat(f.fileno()).st_size
        if os.path.isdir(p):
            raise InputPathError(p, "is a directory, expected a GGUF file")
    except BaseException:
        f.close()
        raise
    return f, p, size


def read_header(path: str | os.PathLike, *, keep_arrays_up_to: int = DOCKER_MAX_ARRAY) -> GGUFHeader:
    """Read a GGUF file's header (key/values and tensor infos), never its tensor data."""
    f, p, size = _open(path)
    with f:
        r = _Reader(f, p, size)
        magic = r.read(4, "magic") if size >= 4 else None
        if magic != MAGIC:
            raise r.error(f"bad magic {magic!r}, expected b'GGUF'" if magic is not None
                          else f"file is {size} bytes, too short for a GGUF header")
        version = r.unpack(_U32, "version")
        if version not in (2, 3):
            if version & 0xFFFF == 0 and int.from_bytes(version.to_bytes(4, "little"), "big") in (1, 2, 3):
                raise r.error("big-endian GGUF files are not supported")
            if version == 1:
                raise r.error("GGUF version 1 is not supported (convert the model to GGUF v3)")
            raise r.error(f"unsupported GGUF version {version} (supported: 2, 3)")
        header = GGUFHeader(path=p, version=version, file_size=size)
        # Minimal encodings: tensor info = name length + n_dims + type + offset; kv = key length +
        # value type + one byte of value.
        n_tensors = r.count("tensor count", 24)
        n_kv = r.count("key/value count", 13)

        for i in range(n_kv):
            key = r.string(f"key of key/value {i}")
            vtype = r.unpack(_U32, f"value type of {key!r}")
            header.kv[key] = KV(vtype, _read_value(r, vtype, f"value of {key!r}", keep_arrays_up_to, 0))

        alignment = DEFAULT_ALIGNMENT
        akv = header.kv.get("general.alignment")
        if akv is not None:
            if akv.type != UINT32 or akv.value == 0 or akv.value & (akv.value - 1):
                raise r.error(f"general.alignment must be a non-zero power of two (uint32), "
                              f"got {akv.value!r}")
            alignment = akv.value
        header.alignment = alignment

        for i in range(n_tensors):
            name = r.string(f"name of tensor {i}")
            n_dims = r.unpack(_U32, f"dimension count of tensor {name!r}")
            if n_dims > GGML_MAX_DIMS:
                raise r.error(f"tensor {name!r} has {n_dims} dimensions (at most {GGML_MAX_DIMS})")
            dims = tuple(r.unpack(_U64, f"dimensions of tensor {name!r}") for _ in range(n_dims))
            n = 1
            for d in dims:
                n *= d
            if any(d > INT64_MAX for d in dims) or n > INT64_MAX:
                raise r.error(f"tensor {name!r} has absurd dimensions {list(dims)}")
            gtype = r.unpack(_U32, f"type of tensor {name!r}")
            offset = r.unpack(_U64, f"data offset of tensor {name!r}")
            t = GGML_TYPES.get(gtype)
            if t is not None and dims and dims[0] % t[1]:
                raise r.error(f"tensor {name!r}: first dimension {dims[0]} is not a multiple of "
                              f"the {t[0]} block size {t[1]}")
            header.tensors.append(TensorInfo(name, dims, gtype, offset))

        end = r.tell()
        header.data_offset = -(-end // alignment) * alignment
        if header.tensors:
            data_size = size - header.data_offset
            for t in header.tensors:
                nb = t.n_bytes
                if nb is not None and t.offset + nb > data_size:
                    raise r.error(f"tensor {t.name!r} data ({nb} bytes at data offset {t.offset}) "
                                  f"runs past the end of the file (truncated?)")
        return header


# --------------------------------------------------------------------------------------------------
# Shards


def shard_files(path: str | os.PathLike) -> list[Path]:
    """All shards of a split GGUF, in shard order, given any one of them; `[path]` if not split.

    The name must match `<prefix>-<i:05d>-of-<n:05d>.gguf`; a shard number or total of zero means
    "not split" (as gguf-parser-go decides). A missing sibling raises `MissingShardError`.
    """
    p = Path(path)
    m = SHARD_RE.fullmatch(p.name)
    if m is None:
        return [p]
    shard, total = int(m["shard"]), int(m["total"])
    if shard <= 0 or total <= 0:
        return [p]
    shards = [p.with_name(f"{m['prefix']}-{i:05d}-of-{total:05d}.gguf") for i in range(1, total + 1)]
    for s in shards:
        if not s.exists():
            raise MissingShardError(s, total)
    return shards
