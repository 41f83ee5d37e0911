"""Unpacking an archive layer into a model directory, safely: ModelPack's `tar`, `tar+gzip` and
`tar+zstd` layers (what modctl and KitOps write) and Docker's legacy `dir.tar` and `vllm.config.tar`.

The archive is read as a stream (one pass, constant memory) from a verifying reader of the layer:

- every member's path must follow spec/annotations.md §2 (`artifact_check.path_problem`: no absolute
  path, no `..`, no backslash or control character) and lands under the model directory through
  `ModelDir`, which never follows a link inside it;
- regular files and directories are written; a symbolic link only when its target, resolved from
  where it lies, stays inside the directory; a hard link only to a file of the same layer; anything
  else (devices, FIFOs, sparse files) is refused;
- the bytes unpacked are bounded (`limit`): the declared member sizes, the bytes the decompressor
  yields and the extended headers tarfile would read into memory are all counted, so a
  decompression bomb is refused, naming the layer, before it fills the disk;
- files go to temp names and are renamed into place by `commit()`, which the caller calls only once
  the layer has been read to its end and so verified against its digest.
"""

from __future__ import annotations

import gzip
import io
import posixpath
import tarfile
from dataclasses import dataclass, field
from typing import BinaryIO

from ..artifact_check import path_problem
from ..content.copy import COPY_BUFSIZE
from ..errors import MdlError
from .common import LayoutError, UnsafeArchiveError
from .modeldir import ModelDir, PendingFile

MAX_MEMBERS = 100_000
MAX_HEADER = 1 << 20  # an extended (pax, GNU long name) header is read into memory: at most this
_HEADER_SLACK = 1024  # tar's own bytes per member (header and padding) beyond the file bytes
COMPRESSED_RATIO = 32  # default limit of a compressed layer: this many times its size ...
COMPRESSED_FLOOR = 256 << 20  # ... and at least this


class ArchiveTooLargeError(LayoutError):
    """An archive layer unpacks to more than the limit: a decompression bomb, or a bigger model than allowed."""

    kind = "archive-too-large"

    def __init__(self, layer: str, limit: int):
        self.layer, self.limit = layer, limit
        super().__init__(f"{layer} unpacks to more than {limit} bytes, the limit for it",
                         "refused as a possible decompression bomb; if you trust the model, raise --max-unpacked")


class UnsafeMemberError(UnsafeArchiveError):
    def __init__(self, layer: str, member: str, problem: str):
        super().__init__(layer, member, problem)
        self.hint = "nothing of it is placed; the model's archive layer is unsafe or damaged"


class MissingZstdError(MdlError):
    kind = "missing-extra"

    def __init__(self, layer: str):
        super().__init__(f"{layer} is compressed with zstd, which needs the `zstandard` package",
                         "install it: pip install zstandard (or pip install 'mdl[zstd]')")


def default_limit(compression: str | None, size: int) -> int:
    """How many bytes a layer of `size` may unpack to: its size for a plain tar (a tar never grows
    when read), else COMPRESSED_RATIO times it, at least COMPRESSED_FLOOR."""
    return size if compression is None else max(COMPRESSED_FLOOR, COMPRESSED_RATIO * size)


class _Bounded(io.RawIOBase):
    """Counts the bytes read from the decompressor; ArchiveTooLargeError past `limit`."""

    def __init__(self, f, limit: int, layer: str):
        super().__init__()
        self._f, self.limit, self._layer, self.count = f, limit, layer, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._f.readinto(b) or 0
        self.count += n
        if self.count > self.limit:
            raise ArchiveTooLargeError(self._layer, self.limit)
        return n


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses an extended header larger than MAX_HEADER before tarfile reads it into memory."""

    def _proc_member(self, tar):  # tarfile's hook, called for each header block
        if self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                         tarfile.SOLARIS_XHDTYPE) and self.size > MAX_HEADER:
            raise UnsafeMemberError(getattr(tar, "_mdl_layer", "archive"), self.name,
                                    f"an extended header of {self.size} bytes")
        return super()._proc_member(tar)


_DAMAGE = (EOFError, ValueError, gzip.BadGzipFile)  # what a damaged compressed stream raises


def _decompressed(stream: BinaryIO, compression: str | None, layer: str) -> tuple[BinaryIO, tuple]:
    """The decompressed stream, and the exceptions that mean its bytes are damaged."""
    if compression is None:
        return stream, _DAMAGE
    if compression == "gzip":
        return gzip.GzipFile(fileobj=stream, mode="rb"), _DAMAGE  # type: ignore[return-value]
    try:
        import zstandard  # optional (the `zstd` extra): only ModelPack's tar+zstd layers need it
    except ImportError:
        raise MissingZstdError(layer) from None
    reader = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True, closefd=False)
    return reader, (*_DAMAGE, zstandard.ZstdError)


@dataclass
class Unpacked:
    """What a layer unpacked to, not yet in place: `commit()` renames every file, `abort()` drops them."""

    pending: list[PendingFile] = field(default_factory=list)
    directories: list[str] = field(default_factory=list)
    bytes: int = 0

    @property
    def paths(self) -> list[str]:
        return [p.path for p in self.pending]

    def commit(self) -> None:
        try:
            for p in self.pending:
                p.commit()
        except BaseException:
            self.abort()  # what was not renamed yet is dropped
            raise

    def abort(self) -> None:
        for p in self.pending:
            p.abort()


def unpack(stream: BinaryIO, compression: str | None, target: ModelDir, *, layer: str, limit: int) -> Unpacked:
    """Unpack the tar in `stream` (decompressed per `compression`) under `target` (see the module
    docstring), reading `stream` to its end (so a verifying reader checks the digest). Nothing is in
    place until the caller commits; on any error nothing of the layer is left."""
    out = Unpacked()
    data, damage = _decompressed(stream, compression, layer)
    bounded = _Bounded(data, limit + _HEADER_SLACK * MAX_MEMBERS, layer)
    try:
        try:
            tar = tarfile.open(fileobj=io.BufferedReader(bounded, COPY_BUFSIZE), mode="r|",
                               tarinfo=_BoundedTarInfo, copybufsize=COPY_BUFSIZE)
        except tarfile.ReadError as e:
            raise LayoutError(f"{layer} is not a tar archive: {e}", "the layer is damaged") from None
        tar._mdl_layer = layer  # type: ignore[attr-defined]  # named in _BoundedTarInfo's errors
        with tar:
            _members(tar, target, layer, limit, out)
        while bounded.read(COPY_BUFSIZE):  # what follows the archive's end (padding, zero blocks)
            pass
        if data is not stream:
            while stream.read(COPY_BUFSIZE):  # the compressed stream to its end: the digest is checked there
                pass
    except tarfile.TarError as e:
        out.abort()
        raise LayoutError(f"{layer} is a damaged tar archive: {e}", "pull the model again") from None
    except damage as e:
        out.abort()
        raise LayoutError(f"{layer} cannot be decompressed: {e}", "the layer is damaged; pull the model again") \
            from None
    except BaseException:
        out.abort()
        raise
    return out


def _members(tar: tarfile.TarFile, target: ModelDir, layer: str, limit: int, out: Unpacked) -> None:
    files: dict[str, PendingFile] = {}
    count = 0
    for member in tar:
        count += 1
        if count > MAX_MEMBERS:
            raise UnsafeMemberError(layer, member.name, f"the archive has more than {MAX_MEMBERS} members")
        path = _member_path(layer, member.name)
        if path is None:
            continue  # the archive's root directory
        owner = f"{layer} member {member.name!r}"
        if member.isdir():
            target.directory(path)
            out.directories.append(path)
            continue
        target.claim(path, owner)
        if member.issym():
            _check_link_target(layer, member, path)
            out.pending.append(target.new_symlink(member.linkname, path))
        elif member.islnk():
            source = _member_path(layer, member.linkname)
            if source not in files:
                raise UnsafeMemberError(layer, member.name, f"a hard link to {member.linkname!r}, "
                                                            "which is not a file earlier in this layer")
            out.pending.append(files[source].link_to(path))
        elif member.isreg() and not member.issparse():
            out.bytes += member.size
            if out.bytes > limit:
                raise ArchiveTooLargeError(layer, limit)
            pending = target.new_file(path)
            out.pending.append(pending)
            _copy_member(tar, member, pending)
            pending.seal(0o555 if member.mode & 0o111 else 0o444)
            files[path] = pending
        else:
            raise UnsafeMemberError(layer, member.name, "not a regular file, directory or link (a device, a FIFO "
                                                        "or a sparse file)")


def _member_path(layer: str, name: str) -> str | None:
    raw = name.rstrip("/")
    if raw in ("", "."):
        return None
    problem = path_problem(raw)
    if problem is not None:
        raise UnsafeMemberError(layer, name, f"its path {problem}")
    path = posixpath.normpath(raw)
    return None if path == "." else path


def _check_link_target(layer: str, member: tarfile.TarInfo, path: str) -> None:
    link = member.linkname
    if not link or link.startswith("/") or "\x00" in link or "\\" in link:
        raise UnsafeMemberError(layer, member.name, f"a link to {link!r}, outside the model directory")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), link))
    if resolved == ".." or resolved.startswith("../") or resolved == ".":
        raise UnsafeMemberError(layer, member.name, f"a link to {link!r}, outside the model directory")


def _copy_member(tar: tarfile.TarFile, member: tarfile.TarInfo, pending: PendingFile) -> None:
    f = tar.extractfile(member)
    assert f is not None
    buf = bytearray(COPY_BUFSIZE)
    view = memoryview(buf)
    left = member.size
    while left > 0:
        n = f.readinto(view[:min(len(buf), left)])
        if not n:
            raise tarfile.ReadError(f"member {member.name!r} is cut short")
        pending.write(view[:n])
        left -= n
