"""What Docker derives (docker/model-runner `pkg/distribution/format/gguf.go` with gpustack/gguf-parser-go
v0.24.0), reproduced here by `describe_gguf` from the header `gguf.read_header` reads:
- parameters: the element count of every tensor of every shard;
- size: per shard, file size minus the aligned start of tensor data, summed;
- architecture: `general.architecture` ("llama" when absent; "diffusion" for diffusion models);
- quantization: `general.file_type` named as gguf-parser-go names it ("MOSTLY_Q4_K_M"), guessed
  from the tensor types when the key is absent, "Unknown" when nothing can be said;
- context size: `<arch>.context_length` when in 1..2^31-1;
- metadata: every key/value of every shard except `split.no`, as strings (see `format_value`).
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from .gguf import (ARRAY, BOOL, DOCKER_MAX_ARRAY, FLOAT32, FLOAT64, INT32_MAX, INTEGER_TYPES, KV, STRING, GGUFArray,
                   GGUFHeader, TensorInfo, read_header, shard_files)
from .model import WeightsInfo
from .units import format_binary_size

# `general.file_type` names as gguf-parser-go v0.24.0 prints them (Docker's `quantization`).
FILE_TYPE_NAMES = (
    "MOSTLY_F32", "MOSTLY_F16", "MOSTLY_Q4_0", "MOSTLY_Q4_1", "MOSTLY_Q4_1_SOME_F16", "MOSTLY_Q4_2",
    "MOSTLY_Q4_3", "MOSTLY_Q8_0", "MOSTLY_Q5_0", "MOSTLY_Q5_1", "MOSTLY_Q2_K", "MOSTLY_Q3_K_S",
    "MOSTLY_Q3_K_M", "MOSTLY_Q3_K_L", "MOSTLY_Q4_K_S", "MOSTLY_Q4_K_M", "MOSTLY_Q5_K_S", "MOSTLY_Q5_K_M",
    "MOSTLY_Q6_K", "MOSTLY_IQ2_XXS", "MOSTLY_IQ2_XS", "MOSTLY_Q2_K_S", "MOSTLY_IQ3_XS", "MOSTLY_IQ3_XXS",
    "MOSTLY_IQ1_S", "MOSTLY_IQ4_NL", "MOSTLY_IQ3_S", "MOSTLY_IQ3_M", "MOSTLY_IQ2_S", "MOSTLY_IQ2_M",
    "MOSTLY_IQ4_XS", "MOSTLY_IQ1_M", "MOSTLY_BF16", "MOSTLY_Q4_0_4_4", "MOSTLY_Q4_0_4_8",
    "MOSTLY_Q4_0_8_8", "MOSTLY_TQ1_0", "MOSTLY_TQ2_0", "MOSTLY_MXFP4",
)
FILE_TYPE_UNKNOWN = len(FILE_TYPE_NAMES)  # 39, printed "Unknown"

_DIFFUSION_ARCHES = frozenset({"flux", "sd", "sd2.5", "sd3", "stable-diffusion"})
_DIFFUSION_TENSOR_RE = re.compile(
    r"(model\.diffusion_model\.|double_blocks\.|joint_blocks\.|decoder\.|encoder\.|text_model\.)")



def _go_float(v: float) -> str:
    """Go's `fmt.Sprintf("%f", v)`."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return f"{v:.6f}"


def _format_scalar(vtype: int, v: Any) -> str | None:
    if vtype in (FLOAT32, FLOAT64):
        return _go_float(v)
    if vtype == BOOL:
        return "true" if v else "false"
    if vtype == STRING:
        return v
    if vtype in INTEGER_TYPES:
        return str(v)
    return None  # nested arrays: Docker leaves them out of the joined text


def format_value(kv: KV, max_array: int = DOCKER_MAX_ARRAY) -> str | None:
    """A key/value as Docker's config["gguf"] shows it; None when Docker leaves it out."""
    if kv.type == ARRAY:
        arr: GGUFArray = kv.value
        if arr.length > max_array or arr.values is None:
            return None
        parts = (_format_scalar(arr.element_type, v) for v in arr.values)
        return ", ".join(s for s in parts if s is not None)
    return _format_scalar(kv.type, kv.value)


def _numeric(kv: KV | None) -> int | None:
    if kv is None or (kv.type not in INTEGER_TYPES and kv.type not in (FLOAT32, FLOAT64, BOOL)):
        return None
    v = kv.value
    if isinstance(v, float):
        if not math.isfinite(v):
            return None
        v = int(v)
    return int(v)


def _string(kv: KV | None) -> str | None:
    return kv.value if kv is not None and kv.type == STRING else None


def _architecture(h: GGUFHeader, tensors: list[TensorInfo]) -> str:
    """gguf-parser-go's `Metadata().Architecture`."""
    hint = _string(h.kv.get("controlvector.model_hint"))
    if hint is not None:
        return hint
    arch = _string(h.kv.get("general.architecture"))
    if arch is not None and arch not in _DIFFUSION_ARCHES:
        return arch
    if _string(h.kv.get("general.type")) == "imatrix":
        return "imatrix"
    if any(_DIFFUSION_TENSOR_RE.match(t.name) for t in tensors):
        return "diffusion"
    return "llama"


def _context_length(h: GGUFHeader, tensors: list[TensorInfo]) -> int | None:
    """gguf-parser-go's `Architecture().MaximumContextLength`, kept when in 1..2^31-1 (Docker)."""
    if any(_DIFFUSION_TENSOR_RE.match(t.name) for t in tensors):
        return None
    typ = _string(h.kv.get("general.type")) or "model"
    arch = _string(h.kv.get("general.architecture")) or "llama"
    if arch in ("clip", "controlvector") or typ in ("adapter", "imatrix"):
        return None
    n = _numeric(h.kv.get(f"{arch}.context_length"))
    if n is None or n <= 0 or n > INT32_MAX:
        return None
    return n


def _guess_file_type(arch: str, tensors: list[TensorInfo]) -> int:
    """gguf-parser-go's guess from the most common tensor type (ties broken by type id)."""
    counts: dict[int, int] = {}
    for t in tensors:
        if arch != "diffusion":
            if not (t.name.startswith("token_embd") or t.name.startswith("blk.")
                    or "_norm" in t.name or t.name.endswith(".weight")):
                continue
        elif not t.name.endswith(".weight"):
            continue
        counts[t.ggml_type] = counts.get(t.ggml_type, 0) + 1
    if not counts:
        return FILE_TYPE_UNKNOWN
    ts = sorted(counts, key=lambda k: (-counts[k], k))
    if ts[0] == 0:  # F32
        if len(ts) == 1:
            return 0
        ts[0] = ts[1]
    top = ts[0]
    c = counts.get
    simple = {1: 1, 2: 2, 3: 3, 4: 5, 5: 6, 6: 8, 7: 9, 8: 7, 14: 18, 16: 19, 18: 23, 19: 24, 20: 25, 23: 30,
              29: 31, 30: 32, 31: 33, 32: 34, 33: 35, 34: 36, 35: 37, 39: 38}
    if top in simple:
        return simple[top]
    if top == 10:  # Q2_K
        return 21 if ts[-1] == 13 else 10
    if top == 11:  # Q3_K
        if c(8, 0) > 0 or (c(13, 0) > 1 and c(12, 0) == 0):
            return 13
        return 12 if c(12, 0) > 1 else 11
    if top == 12:  # Q4_K
        if c(14, 0) > 1:
            return 15
        return 12 if c(11, 0) > 1 else 14
    if top == 13:  # Q5_K
        return 17 if c(14, 0) > 1 else 16
    if top == 17:  # IQ2_XS
        return 28 if c(23, 0) > 1 else 20
    if top == 22:  # IQ2_S
        return 29
    if top == 21:  # IQ3_S
        return 22 if c(18, 0) > 1 else 26
    return FILE_TYPE_UNKNOWN


def _file_type_name(ft: int) -> str:
    if 0 <= ft < len(FILE_TYPE_NAMES):
        return FILE_TYPE_NAMES[ft]
    if ft == FILE_TYPE_UNKNOWN:
        return "Unknown"
    return f"GGUFFileType({ft})"


def _quantization(h: GGUFHeader, arch: str, tensors: list[TensorInfo]) -> str:
    ft = FILE_TYPE_UNKNOWN
    n = _numeric(h.kv.get("general.file_type"))
    if n is not None:
        ft = n & 0xFFFFFFFF
    if ft == FILE_TYPE_UNKNOWN:
        ft = _guess_file_type(arch, tensors)
    return _file_type_name(ft)


def describe_gguf(path: str | os.PathLike) -> WeightsInfo:
    """Everything the packager needs from a GGUF file or split model (any shard may be given)."""
    files = shard_files(path)
    headers = [read_header(f, keep_arrays_up_to=DOCKER_MAX_ARRAY) for f in files]
    first = headers[0]
    tensors = [t for h in headers for t in h.tensors]
    metadata: dict[str, str] = {}
    for h in headers:
        for key, kv in h.kv.items():
            if key == "split.no":
                continue
            text = format_value(kv)
            if text is not None:
                metadata[key] = text
    arch = _architecture(first, tensors)
    size = sum(h.data_size for h in headers)
    return WeightsInfo(
        format="gguf",
        files=files,
        architecture=arch.strip() or None,
        parameters=sum(t.n_elements for t in tensors),
        quantization=_quantization(first, arch, tensors),
        precision=None,
        size_bytes=size,
        size_text=format_binary_size(size),
        context_size=_context_length(first, tensors),
        metadata=metadata,
    )


def gguf_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The `config["gguf"]` map of a GGUF file or split model."""
    return describe_gguf(path).metadata
