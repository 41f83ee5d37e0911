"""Safetensors header reader and what Docker derives from a set of safetensors files.

File layout (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length N, then
N bytes of JSON: `{"__metadata__": {str: str}, "<tensor>": {"dtype": str, "shape": [int...],
"data_offsets": [begin, end]}, ...}`, then the tensor data; offsets are relative to the end of the
header. The header length is refused above 100 MiB (Docker's cap) or past the end of the file before
anything is allocated.

What Docker derives (docker/model-runner `pkg/distribution/format/safetensors.go`): parameters from
the tensor shapes, quantization = the single dtype of all tensors or "mixed" ("unknown" with no
tensors), size = the total bytes of the weight files in decimal units, architecture from
`__metadata__["architecture"]`, config["safetensors"] = `__metadata__` plus `tensor_count`, and the
context size from a sibling `config.json`. Docker reads only the first file's header; here the
counts are summed over every file.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FormatError, InputPathError
from .fileio import open_model_file
from .model import WeightsInfo
from .units import format_decimal_size

FMT = "safetensors"
MAX_HEADER = 100 * 1024 * 1024      # Docker's maxFormatJSONSize
MAX_CONFIG_JSON = 100 * 1024 * 1024
INT32_MAX = (1 << 31) - 1

# Bits per element of the dtypes the safetensors format defines.
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}

# config.json keys holding the context length, in Docker's priority order; `seq_length` (ChatGLM,
# Qwen v1) is an addition tried last.
CONTEXT_KEYS = ("max_position_embeddings", "n_ctx", "n_positions", "max_length",
                "max_sequence_length", "model_max_length", "seq_length")


@dataclass
class SafetensorsTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    data_offsets: tuple[int, int]

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)


@dataclass
class SafetensorsHeader:
    path: Path
    header_size: int            # N, the JSON length
    file_size: int
    metadata: dict[str, str] = field(default_factory=dict)
    tensors: dict[str, SafetensorsTensor] = field(default_factory=dict)

    @property
    def parameters(self) -> int:
        return sum(t.n_elements for t in self.tensors.values())

    @property
    def dtypes(self) -> set[str]:
        return {t.dtype for t in self.tensors.values() if t.dtype}


def _err(path: Path, problem: str) -> FormatError:
    return FormatError(path, FMT, problem)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def read_header(path: str | os.PathLike) -> SafetensorsHeader:
    """Read and validate a safetensors file's JSON header (never the tensor data)."""
    f, p = open_model_file(path, "safetensors")
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise _err(p, f"file is {size} bytes, too short for the 8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER:
                raise _err(p, f"header length {n} is over the {MAX_HEADER}-byte limit")
            if n > size - 8:
                raise _err(p, f"header length {n} runs past the end of the file ({size} bytes)")
            raw = f.read(n)
        except OSError as e:
            raise InputPathError(p, f"cannot read: {e.strerror or e}") from None
    if len(raw) < n:
        raise _err(p, f"truncated: header of {n} bytes, only {len(raw)} read")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _err(p, f"header is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise _err(p, f"header is a JSON {type(doc).__name__}, expected an object")

    data_size = size - 8 - n
    header = SafetensorsHeader(path=p, header_size=n, file_size=size)
    meta = doc.pop("__metadata__", None)
    if meta is not None:
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise _err(p, "__metadata__ must be an object of string values")
        header.metadata = dict(meta)
    for name, info in doc.items():
        if not isinstance(info, dict):
            raise _err(p, f"tensor {name!r}: entry is not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str):
            raise _err(p, f"tensor {name!r}: dtype missing or not a string")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise _err(p, f"tensor {name!r}: shape must be a list of non-negative integers")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(_is_int(o) and o >= 0 for o in offsets)):
            raise _err(p, f"tensor {name!r}: data_offsets must be two non-negative integers")
        begin, end = offsets
        if begin > end or end > data_size:
            raise _err(p, f"tensor {name!r}: data_offsets [{begin}, {end}] lie outside the "
                          f"{data_size} bytes of tensor data")
        t = SafetensorsTensor(name, dtype, tuple(shape), (begin, end))
        bits = DTYPE_BITS.get(dtype)
        if bits is not None:
            expected = -(-t.n_elements * bits // 8)
            if end - begin != expected:
                raise _err(p, f"tensor {name!r}: {dtype} {list(shape)} needs {expected} bytes, "
                              f"data_offsets span {end - begin}")
        header.tensors[name] = t
    return header


def context_size_from_config(config_json: str | os.PathLike | None) -> int | None:
    """The context length in a Hugging Face `config.json`, or None.

    Like Docker, an unreadable, oversized or malformed config.json gives None rather than an error:
    it is an optional hint, and the file is packaged as it is either way.
    """
    if config_json is None:
        return None
    p = Path(config_json)
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_CONFIG_JSON + 1)
    except OSError:
        return None
    if len(raw) > MAX_CONFIG_JSON:
        return None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    for key in CONTEXT_KEYS:
        v = doc.get(key)
        if _is_int(v) and 0 < v <= INT32_MAX:
            return v
    return None


def describe_safetensors(files: list[Path], config_json: Path | None) -> WeightsInfo:
    """Describe a safetensors model from all its weight files (headers only)."""
    if not files:
        raise InputPathError(".", "no safetensors files given")
    files = sorted((Path(f) for f in files), key=lambda q: q.as_posix())
    headers = [read_header(f) for f in files]
    params = sum(h.parameters for h in headers)
    dtypes: set[str] = set()
    n_tensors = 0
    metadata: dict[str, str] = {}
    for h in headers:
        dtypes |= h.dtypes
        n_tensors += len(h.tensors)
        for k, v in h.metadata.items():
            metadata.setdefault(k, v)
    if not dtypes:
        quant, precision = "unknown", None
    elif len(dtypes) == 1:
        quant = precision = next(iter(dtypes))
    else:
        quant = precision = "mixed"
    metadata["tensor_count"] = str(n_tensors)
    arch = headers[0].metadata.get("architecture")
    size = sum(h.file_size for h in headers)
    return WeightsInfo(
        format="safetensors",
        files=files,
        architecture=arch or None,
        parameters=params,
        quantization=quant,
        precision=precision,
        size_bytes=size,
        size_text=format_decimal_size(size),
        context_size=context_size_from_config(config_json),
        metadata=metadata,
    )
