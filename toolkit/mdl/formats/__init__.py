"""Header readers for model weight formats (GGUF, safetensors, DDUF) and file classification.

Readers read headers only: memory does not grow with model size, and hostile input raises
`mdl.errors.FormatError` (or `InputPathError` / `MissingShardError` for paths), never a bare
`struct.error`, `ValueError` or `MemoryError`.

Import the module you need (`mdl.formats.gguf`, `.safetensors`, `.dduf`, `.units`, ...): the package
itself imports none of them, so a command that only formats a size loads no reader.
"""
