"""Opening a model file for a header reader, with the errors every reader reports the same way."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from ..errors import InputPathError


def open_model_file(path: str | os.PathLike, fmt: str) -> tuple[BinaryIO, Path]:
    """(binary file object, Path) for a `fmt` file (GGUF, DDUF...), or InputPathError naming it."""
    p = Path(path)
    try:
        return open(p, "rb"), p
    except FileNotFoundError:
        raise InputPathError(p, "no such file") from None
    except IsADirectoryError:
        raise InputPathError(p, f"is a directory, expected a {fmt} file") from None
    except OSError as e:
        raise InputPathError(p, f"cannot open: {e.strerror or e}") from None
