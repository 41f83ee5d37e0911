"""DDUF (Diffusers Unified Format) check and what Docker derives from it.

A DDUF file is a ZIP archive (ZIP64 allowed) whose entries are all STORED (uncompressed), with
`model_index.json` at the top level and one folder per pipeline component
(https://huggingface.co/docs/hub/dduf). This module reads only the archive's central directory: it
bounds the entry count and directory size from the end-of-central-directory record before Python's
`zipfile` builds its entry list, and it never extracts.

Docker (docker/model-runner `pkg/distribution/format/dduf.go`) records: architecture "diffusers",
size = the file size in decimal units, config["diffusers"] = {"layout": "dduf", "dduf_file": name}.
"""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

from ..errors import FormatError, InputPathError
from .fileio import open_model_file
from .model import WeightsInfo
from .units import format_decimal_size

FMT = "DDUF"
MAX_ENTRIES = 10_000
MAX_CENTRAL_DIRECTORY = 16 * 1024 * 1024
_EOCD_SIG = b"PK\x05\x06"
_EOCD64_LOC_SIG = b"PK\x06\x07"
_EOCD64_SIG = b"PK\x06\x06"
_EOCD_MAX_SEARCH = 22 + 0xFFFF  # record + longest comment


def _err(path: Path, problem: str) -> FormatError:
    return FormatError(path, FMT, problem)


def _directory_bounds(f, path: Path, size: int) -> tuple[int, int]:
    """(entry count, central directory size) from the end-of-central-directory records."""
    tail_len = min(size, _EOCD_MAX_SEARCH)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    i = tail.rfind(_EOCD_SIG)
    while i >= 0 and len(tail) - i < 22:
        i = tail.rfind(_EOCD_SIG, 0, i)
    if i < 0:
        raise _err(path, "not a ZIP archive (no end-of-central-directory record)")
    (_sig, _disk, _cd_disk, _n_here, n_total, cd_size, _cd_off, _clen) = struct.unpack(
        "<4sHHHHIIH", tail[i:i + 22])
    if n_total == 0xFFFF or cd_size == 0xFFFFFFFF:
        loc = i - 20
        if loc < 0 or tail[loc:loc + 4] != _EOCD64_LOC_SIG:
            raise _err(path, "ZIP64 archive without a ZIP64 end-of-central-directory locator")
        (eocd64_off,) = struct.unpack("<Q", tail[loc + 8:loc + 16])
        if eocd64_off + 56 > size:
            raise _err(path, "ZIP64 end-of-central-directory record lies outside the file")
        f.seek(eocd64_off)
        rec = f.read(56)
        if len(rec) < 56 or rec[:4] != _EOCD64_SIG:
            raise _err(path, "bad ZIP64 end-of-central-directory record")
        n_total, cd_size = struct.unpack("<QQ", rec[32:48])
    return n_total, cd_size


def _check_name(path: Path, name: str) -> None:
    problem = None
    if not name:
        problem = "an entry has an empty name"
    elif "\x00" in name:
        problem = f"entry name {name!r} contains a NUL byte"
    elif "\\" in name:
        problem = f"entry name {name!r} contains a backslash"
    elif name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        problem = f"entry name {name!r} is absolute"
    elif ".." in name.split("/"):
        problem = f"entry name {name!r} escapes the archive (..)"
    if problem:
        raise _err(path, problem)


def check_dduf(path: str | os.PathLike) -> list[zipfile.ZipInfo]:
    """Validate a DDUF archive's structure; returns its entries."""
    f, p = open_model_file(path, "DDUF")
    with f:
        try:
            size = os.fstat(f.fileno()).st_size
            n, cd_size = _directory_bounds(f, p, size)
            if n > MAX_ENTRIES:
                raise _err(p, f"archive lists {n} entries (at most {MAX_ENTRIES})")
            if cd_size > MAX_CENTRAL_DIRECTORY or cd_size > size:
                raise _err(p, f"central directory of {cd_size} bytes is larger than allowed")
            f.seek(0)
            with zipfile.ZipFile(f) as zf:
                infos = zf.infolist()
        except FormatError:
            raise
        except OSError as e:
            raise InputPathError(p, f"cannot read: {e.strerror or e}") from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, struct.error, EOFError,
                NotImplementedError, UnicodeDecodeError, OverflowError) as e:
            raise _err(p, f"not a readable ZIP archive: {e}") from None
    if len(infos) > MAX_ENTRIES:
        raise _err(p, f"archive lists {len(infos)} entries (at most {MAX_ENTRIES})")
    names = set()
    for info in infos:
        # orig_filename is the name as stored: zipfile cuts `filename` at the first NUL byte
        _check_name(p, info.orig_filename)
        if info.compress_type != zipfile.ZIP_STORED:
            raise _err(p, f"entry {info.filename!r} is compressed; DDUF entries must be STORED")
        if info.header_offset + info.compress_size > size:
            raise _err(p, f"entry {info.filename!r} lies past the end of the file")
        if info.filename in names:
            raise _err(p, f"entry {info.filename!r} appears twice")
        names.add(info.filename)
    if "model_index.json" not in names:
        raise _err(p, "model_index.json is missing from the top level of the archive")
    return infos


def describe_dduf(path: str | os.PathLike) -> WeightsInfo:
    p = Path(path)
    check_dduf(p)
    size = p.stat().st_size
    return WeightsInfo(
        format="dduf",
        files=[p],
        architecture="diffusers",
        parameters=None,
        quantization=None,
        precision=None,
        size_bytes=size,
        size_text=format_decimal_size(size),
        context_size=None,
        metadata={"layout": "dduf", "dduf_file": p.name},
    )
