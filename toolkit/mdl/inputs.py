"""Checks on the files and directories a user hands to `mdl package`.

Everything here runs before a byte is written to the store, so bad input never leaves anything
half-written behind.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import InputPathError


def input_file(path: str | os.PathLike, what: str) -> Path:
    """`path` as an absolute Path after checking it is a readable regular file."""
    p = Path(path).expanduser().absolute()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputPathError(p, f"{what} not found", f"check the path given for the {what}") from None
    except OSError as e:
        raise InputPathError(p, f"cannot read the {what}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputPathError(p, f"is a directory, but the {what} must be a file",
                             f"give the path of the {what} file itself")
    if not stat.S_ISREG(st.st_mode):
        raise InputPathError(p, f"the {what} is not a regular file")
    if not os.access(p, os.R_OK):
        raise InputPathError(p, f"the {what} is not readable (permission denied)",
                             "fix the file's permissions or run as a user who can read it")
    return p


def input_dir(path: str | os.PathLike, what: str) -> Path:
    p = Path(path).expanduser().absolute()
    if not p.exists():
        raise InputPathError(p, f"{what} not found", f"check the path given for the {what}")
    if not p.is_dir():
        raise InputPathError(p, f"is a file, but the {what} must be a directory",
                             "give the directory that holds the model's files")
    if not os.access(p, os.R_OK | os.X_OK):
        raise InputPathError(p, f"the {what} is not readable (permission denied)")
    return p


@dataclass(frozen=True)
class DirFile:
    relpath: str  # '/'-separated, relative to the model directory
    path: Path  # what to read: the file itself or the resolved target of a symlink


def _symlink_roots(model_dir: Path) -> list[Path]:
    """Where symlinks of `model_dir` may point: inside it, and for a Hugging Face cache snapshot
    (`models--org--name/snapshots/<rev>`) into that model's `blobs/` directory as well."""
    roots = [model_dir.resolve()]
    if model_dir.parent.name == "snapshots" and model_dir.parent.parent.name.startswith(("models--", "datasets--")):
        roots.append((model_dir.parent.parent / "blobs").resolve())
    return roots


def walk_model_dir(model_dir: Path) -> list[DirFile]:
    """Every regular file below `model_dir` in lexical order of its relative path, hidden entries
    skipped. Symlinks are followed only when they stay inside the model (see `_symlink_roots`);
    any other symlink is refused, so packaging never reads files the user did not mean to ship."""
    roots = _symlink_roots(model_dir)
    found: list[DirFile] = []

    def visit(directory: Path, prefix: str) -> None:
        try:
            names = sorted(os.listdir(directory))
        except OSError as e:
            raise InputPathError(directory, f"cannot list the directory: {e.strerror}") from None
        for name in names:
            if name.startswith("."):
                continue
            full = directory / name
            rel = f"{prefix}{name}"
            if full.is_symlink():
                target = full.resolve()
                if not any(target == r or r in target.parents for r in roots):
                    raise InputPathError(full, f"symlink points outside the model directory (to {target})",
                                         "copy the file into the model directory or remove the link")
                if not target.exists():
                    raise InputPathError(full, "broken symlink", "fix or remove the link")
                full_target = target
            else:
                full_target = full
            if full_target.is_dir():
                if full.is_symlink():
                    raise InputPathError(full, "symlink to a directory inside a model directory",
                                         "replace the link with the directory's files")
                visit(full, f"{rel}/")
            elif full_target.is_file():
                found.append(DirFile(rel, full_target))
            # sockets, fifos and devices are not model files: skipped like hidden files

    visit(model_dir, "")
    return found

