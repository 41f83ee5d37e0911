"""Header readers for model weight formats (GGUF, safetensors, DDUF) and file classification.

Readers read headers only: memory does not grow with model size, and hostile input raises
`mdl.errors.FormatError` (or `InputPathError` / `MissingShardError` for paths), never a bare
`struct.error`, `ValueError` or `MemoryError`.
"""

from .classify import FileKind, classify
from .dduf import describe_dduf
from .gguf import shard_files
from .gguf_docker import describe_gguf
from .model import WeightsInfo
from .safetensors import describe_safetensors
from .units import format_binary_size, format_decimal_size, format_parameters

__all__ = [
    "FileKind",
    "WeightsInfo",
    "classify",
    "describe_dduf",
    "describe_gguf",
    "describe_safetensors",
    "format_binary_size",
    "format_decimal_size",
    "format_parameters",
    "shard_files",
]
