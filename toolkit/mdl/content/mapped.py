"""Hashing a whole file through a memory map, under a read lease: no copy out of the page cache.

Copying a file out of the page cache costs a quarter of the time two threads spend hashing it
(docs/performance.md). A map avoids the copy, but a mapped file that shrinks kills the process with
SIGBUS when a gone page is touched. So a file is mapped only under a read lease (Linux `F_SETLEASE`):
while it is held, the kernel makes whoever opens the file for writing, or truncates it, wait (up to
/proc/sys/fs/lease-break-time, 45 s) and marks the lease as breaking. The hash looks at the lease
before each window; when a writer waits, it unmaps the window, releases the lease and raises
`FileChanged`. The lease also proves that nothing wrote the file while it was hashed, which a plain
read cannot tell.

Where no lease can be had, `hash_mapped` returns None and the caller reads the file: another process
has it open for writing, it is another user's file (without CAP_LEASE), the file system has no leases,
the platform is not Linux, or SIGURG has a handler (the kernel signals a breaking lease with SIGURG
here, which is otherwise ignored). Windows of 4 MiB keep memory flat. What the lease cannot cover: a
process stopped (Ctrl-Z) longer than the lease-break time in the middle of a window.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import signal
import stat

try:
    import fcntl

    _LEASES = hasattr(fcntl, "F_SETLEASE") and hasattr(fcntl, "F_SETSIG")
except ImportError:  # not POSIX
    _LEASES = False

WINDOW = 4 << 20  # a multiple of mmap.ALLOCATIONGRANULARITY; 4 MiB hashes as fast as larger windows


class FileChanged(Exception):
    """A writer opened or truncated the file while it was being hashed."""


def hash_mapped(fd: int) -> tuple[str, int] | None:
    """(sha256 hex digest, size) of the whole file open read-only on `fd`, or None when it cannot be
    hashed under a lease (see the module docstring). FileChanged when a writer came meanwhile."""
    if not _LEASES or signal.getsignal(signal.SIGURG) not in (signal.SIG_DFL, signal.SIG_IGN, None):
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        old_signal = fcntl.fcntl(fd, fcntl.F_GETSIG)
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
    except OSError:
        return None
    try:
        try:
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        except OSError:  # EAGAIN (a writer has it open), EACCES (not ours), EINVAL (no leases here)
            return None
        try:
            return _hash_windows(fd)
        finally:
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)  # after the last window is unmapped
    finally:
        fcntl.fcntl(fd, fcntl.F_SETSIG, old_signal)


def _hash_windows(fd: int) -> tuple[str, int]:
    size = os.fstat(fd).st_size  # under the lease: nobody can change it now
    h = hashlib.sha256()
    for offset in range(0, size, WINDOW):
        if fcntl.fcntl(fd, fcntl.F_GETLEASE) != fcntl.F_RDLCK:  # breaking: a writer waits
            raise FileChanged
        with mmap.mmap(fd, min(WINDOW, size - offset), prot=mmap.PROT_READ, offset=offset) as window, \
                memoryview(window) as view:
            h.update(view)
    return h.hexdigest(), size
