"""File locks and crash-safe writes: the one home for `flock`, atomic replace and fsync.

Locks are `flock`s, so they die with their process: a killed process never leaves a stale lock.
An atomic write goes to a unique temp file beside the target (`.<name>.<random>.tmp`), is fsync'ed,
then `os.replace`d over the target, and the directory is fsync'ed: a reader sees the old bytes or
the new ones, never a mix, and a crash leaves at most a temp file (see `remove_temp_files`).
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(error: OSError) -> bool:
    return error.errno in DISK_FULL_ERRNOS


@contextmanager
def flock(path: Path, operation: int) -> Iterator[bool]:
    """Hold flock `operation` on `path` (created if missing); yields False if LOCK_NB could not get it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, operation)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing the last descriptor releases the flock


def write_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        view = view[n:]


WRITEBACK_STEP = 8 << 20  # queue a large file's bytes for the disk every 8 MiB written


class Writeback:
    """Starts putting a file's bytes on disk while the file is still being written, so that the fsync
    that makes it durable waits for the last step instead of the whole file: otherwise a 1 GiB
    download sits in the page cache until its fsync writes all of it, after the last byte arrived.

    Linux `sync_file_range(SYNC_FILE_RANGE_WRITE)` queues a range for writeback and returns without
    waiting. Elsewhere, or where the call fails, it does nothing and the fsync writes everything; it
    is a hint, never a durability step (the fsync still is)."""

    def __init__(self, fd: int, start: int = 0):
        self._fd = fd
        self._queued = start  # the bytes before this offset were queued (or were there already)
        self._end = start  # where the next write lands

    def wrote(self, n: int) -> None:
        """`n` more bytes were appended: queue the new ones once they make a step."""
        self._end += n
        if self._end - self._queued >= WRITEBACK_STEP:
            start_writeback(self._fd, self._queued, self._end - self._queued)
            self._queued = self._end


def start_writeback(fd: int, offset: int, length: int) -> bool:
    """Queue `length` bytes of `fd` from `offset` for writeback, not waiting; False where it cannot."""
    call = _sync_file_range()
    return call is not None and call(fd, offset, length, _SYNC_FILE_RANGE_WRITE) == 0


_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>


@functools.cache
def _sync_file_range():
    """libc's sync_file_range (Python's os module lacks it), or None off Linux; ctypes loads only for
    the first large file written."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    call.restype = ctypes.c_int
    return call


def fsync_dir(path: Path) -> None:
    """Make a rename or link in `path` durable (best effort: some file systems refuse)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_name(path: Path) -> Path:
    """A unique temp file name beside `path`, in the pattern `remove_temp_files` cleans up."""
    return path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` so that readers see the old or the new bytes, never a mix."""
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            write_all(fd, memoryview(data))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        unlink_quiet(tmp)
        raise
    fsync_dir(path.parent)


def remove_temp_files(directory: Path, name: str) -> None:
    """Delete the temp files an interrupted `atomic_write` of `directory/name` left. Call only while
    holding the lock every writer of that file holds: then any temp file found is a dead process's."""
    prefix, suffix = f".{name}.", ".tmp"  # temp_name's pattern; not Path.glob, whose compiling costs ~5 ms
    try:
        with os.scandir(directory) as entries:
            stale = [e.path for e in entries if e.name.startswith(prefix) and e.name.endswith(suffix)
                     and len(e.name) >= len(prefix) + len(suffix)]
    except FileNotFoundError:
        return
    for tmp in stale:
        unlink_quiet(tmp)


def unlink_quiet(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def free_bytes(path: Path) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize
