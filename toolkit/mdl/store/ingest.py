"""Writing blobs into the store: ingest files, verified, then published (see `mdl.store` for the rules).

`BlobWriter` writes a one-shot ingest file (`ingest/<random>.part`, removed when not committed);
`ResumableWriter` writes `ingest/sha256-<hex>.part`, kept across runs so a download resumes.
Each ingest file is flock'ed by its one writer while it lives; `remove_if_stale` is the one rule for
an ingest file whose writer died (nobody holds its lock).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from pathlib import Path
from typing import Protocol

from ..content.digest import ALGORITHM, DEFAULT_BUFSIZE, digest_hex, validate_digest
from ..errors import DigestMismatchError, DiskFullError, StoreError
from .locks import Writeback, is_disk_full, unlink_quiet, write_all



class IngestArea(Protocol):
    """What a writer needs of the store it writes into (`cas.BlobStore` is one)."""

    root: Path
    ingest_dir: Path

    def has_blob(self, digest: str) -> bool: ...

    def check_space(self, needed: int) -> None: ...

    def new_ingest_file(self) -> tuple[Path, int]: ...

    def publish(self, ingest: Path, digest: str) -> None: ...

_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class BlobWriter:
    """A blob being written to `ingest/`; `commit()` verifies and publishes it, leaving without commit
    (or any error) removes the ingest file. Use as a context manager: `with store.ingest(d, n) as w:`."""

    def __init__(self, store: IngestArea, expected_digest: str | None, expected_size: int | None):
        self._store = store
        self.expected_digest = validate_digest(expected_digest) if expected_digest is not None else None
        self.expected_size = expected_size
        self._hash = hashlib.sha256()
        self.size = 0
        self.digest: str | None = None
        self.committed = False
        self._closed = False
        if expected_size is not None:
            store.check_space(expected_size)
        self.path, self._fd = store.new_ingest_file()
        self._writeback = Writeback(self._fd)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc) -> None:
        if not self.committed:
            self.abort()

    def write(self, data) -> int:
        if self._closed:
            raise ValueError("write to a closed BlobWriter")
        with memoryview(data) as view:
            view = view.cast("B")
            n = len(view)
            if self.expected_size is not None and self.size + n > self.expected_size:
                self.abort()
                raise DigestMismatchError("blob", self.expected_digest or "(unknown)", "(longer than expected)",
                                          self.expected_size, self.size + n)
            try:
                write_all(self._fd, view)
            except OSError as e:
                self.abort()
                if is_disk_full(e):
                    raise DiskFullError(self._store.root, self.expected_size) from None
                raise StoreError(f"cannot write {self.path}: {e.strerror}", "check the store's disk") from None
            self._hash.update(view)
        self.size += n
        self._writeback.wrote(n)
        return n

    def commit(self) -> str:
        """Verify against the expected digest and size, then publish; returns the digest."""
        if self.committed:
            return self.digest  # type: ignore[return-value]
        if self._closed:
            raise ValueError("commit of an aborted BlobWriter")
        digest = f"{ALGORITHM}:{self._hash.hexdigest()}"
        try:
            if self.expected_size is not None and self.size != self.expected_size:
                raise DigestMismatchError("blob", self.expected_digest or digest, digest, self.expected_size,
                                          self.size)
            if self.expected_digest is not None and digest != self.expected_digest:
                raise DigestMismatchError("blob", self.expected_digest, digest, self.expected_size, self.size)
            os.fchmod(self._fd, 0o444)
            os.fsync(self._fd)
        except OSError as e:
            self.abort()
            if is_disk_full(e):
                raise DiskFullError(self._store.root, self.size) from None
            raise StoreError(f"cannot write {self.path}: {e.strerror}", "check the store's disk") from None
        except BaseException:
            self.abort()
            raise
        try:
            self._store.publish(self.path, digest)
        finally:
            self._close_fd()
            unlink_quiet(self.path)
        self.digest = digest
        self.committed = True
        return digest

    def abort(self) -> None:
        self._close_fd()
        unlink_quiet(self.path)

    def _close_fd(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)


class ResumableWriter:
    """A download of one known blob into `ingest/sha256-<hex>.part`, resumable across runs.

    `store.resumable_ingest(desc)` opens the partial file (creating it) and waits for its exclusive
    flock: a second writer of the same blob, in this process or another, blocks until the first one
    commits (then it finds the blob published: `exists`) or gives up (then it resumes the partial file).

    - `exists`: the blob is in the store already; write nothing, `commit()` returns at once.
    - `offset`: bytes already in the partial file; ask the source to start there, or `restart()`.
    - `write(data)` appends. The hash covers the partial bytes found on opening (re-read once, lazily,
      so a `restart()` costs no read) and everything appended since, so `commit()` checks the whole file.
    - `commit()` checks size and digest against the descriptor, then publishes the file read-only (0444)
      under `blobs/sha256/<hex>`. A blob longer than its descriptor, or one whose bytes hash to another
      digest, is DigestMismatchError and its partial file is deleted, so the next run starts over; a
      file that is only shorter is kept (the source stopped early; a later run resumes it).
    - Leaving without commit keeps the partial file for the next run (unlike `ingest()`); `prune`
      deletes partial files nobody holds, i.e. abandoned downloads.
    - A full disk raises DiskFullError and publishes nothing; the bytes written so far stay for a resume.
    """

    def __init__(self, store: IngestArea, digest: str, size: int):
        self._store = store
        self.digest = validate_digest(digest)
        self.size = size
        self.path = store.ingest_dir / f"{ALGORITHM}-{digest_hex(digest)}.part"
        self.exists = False
        self.committed = False
        self.offset = 0
        self.resumed_from = 0  # the size of the partial file found on opening
        self._fd = -1
        self._hash = hashlib.sha256()
        self._hashed = 0
        self._writeback: Writeback  # set by _open (or restart) once the file is open
        self._open()

    # -- opening -------------------------------------------------------------------------------------

    def _open_fd(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            return os.open(self.path, flags, 0o644)
        except PermissionError:
            # left read-only by a commit whose publish failed: ours to reopen
            try:
                os.chmod(self.path, 0o644, follow_symlinks=False)
                return os.open(self.path, flags, 0o644)
            except OSError as e:
                raise StoreError(f"cannot open {self.path}: {e.strerror}", "check the store's permissions") from None
        except OSError as e:
            if is_disk_full(e):
                raise DiskFullError(self._store.root, self.size) from None
            raise StoreError(f"cannot open {self.path}: {e.strerror}",
                             "check the store's permissions; `mdl prune` removes stale downloads") from None

    def _open(self) -> None:
        if self._store.has_blob(self.digest):
            self.exists = True
            return
        for _ in range(100):
            fd = self._open_fd()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # waits for another writer of this blob
                try:
                    same = os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
            except BaseException:
                os.close(fd)
                raise
            if same:
                break
            os.close(fd)  # committed, discarded or pruned while we waited: open the name afresh
        else:
            raise StoreError(f"cannot lock {self.path}", "another process keeps replacing it; try again")
        self._fd = fd
        try:
            if self._store.has_blob(self.digest):  # the writer we waited for published it
                self.exists = True
                self._discard()
                return
            self.offset = self.resumed_from = os.fstat(fd).st_size
            if self.offset > self.size:
                self.restart()
            else:
                os.lseek(fd, self.offset, os.SEEK_SET)
                self._writeback = Writeback(fd, self.offset)
            self._store.check_space(self.size - self.offset)
        except BaseException:
            if self.offset == 0:
                self._discard()  # nothing to resume (a pull refused for want of space): leave no empty file
            else:
                self._close()
            raise

    # -- context manager -----------------------------------------------------------------------------

    def __enter__(self) -> ResumableWriter:
        return self

    def __exit__(self, *exc) -> None:
        self._close()  # keeps the partial file for the next run

    # -- writing ---------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._fd < 0:
            raise ValueError("the ResumableWriter is closed")

    def _catch_up(self) -> None:
        """Hash the partial bytes found on opening (one read pass, one reused buffer)."""
        if self._hashed >= self.offset:
            return
        buf = bytearray(DEFAULT_BUFSIZE)
        view = memoryview(buf)
        pos = self._hashed
        while pos < self.offset:
            n = os.preadv(self._fd, [view[:min(len(buf), self.offset - pos)]], pos)
            if n <= 0:
                break  # shorter than it was: the digest check will fail
            self._hash.update(view[:n])
            pos += n
        self._hashed = pos

    def restart(self) -> None:
        """Drop the partial bytes: the source could not start at `offset`."""
        self._check_open()
        try:
            os.ftruncate(self._fd, 0)
            os.lseek(self._fd, 0, os.SEEK_SET)
        except OSError as e:
            raise StoreError(f"cannot truncate {self.path}: {e.strerror}", "check the store's disk") from None
        self._hash = hashlib.sha256()
        self._hashed = 0
        self.offset = 0
        self._writeback = Writeback(self._fd)

    def write(self, data) -> int:
        self._check_open()
        with memoryview(data) as view:
            view = view.cast("B")
            n = len(view)
            if self.offset + n > self.size:
                self._discard()
                raise DigestMismatchError("blob", self.digest, "(longer than expected)", self.size, self.offset + n)
            self._catch_up()
            try:
                write_all(self._fd, view)
            except OSError as e:
                # What reached the file is a prefix of the stream: a later run resumes after it.
                self._close()
                if is_disk_full(e):
                    raise DiskFullError(self._store.root, self.size - self.offset) from None
                raise StoreError(f"cannot write {self.path}: {e.strerror}", "check the store's disk") from None
            self._hash.update(view)
        self.offset += n
        self._hashed += n
        self._writeback.wrote(n)
        return n

    def commit(self) -> str:
        """Verify the whole file against the descriptor, then publish it; returns the digest."""
        if self.exists or self.committed:
            return self.digest
        self._check_open()
        self._catch_up()
        if self.offset < self.size:
            raise DigestMismatchError("blob", self.digest, "(shorter than expected)", self.size, self.offset)
        actual = f"{ALGORITHM}:{self._hash.hexdigest()}"
        if self._hashed != self.size or actual != self.digest:
            self._discard()
            raise DigestMismatchError("blob", self.digest, actual, self.size, self._hashed)
        try:
            os.fchmod(self._fd, 0o444)
            os.fsync(self._fd)
            self._store.publish(self.path, self.digest)
        except BaseException as e:
            try:
                os.fchmod(self._fd, 0o644)
            except OSError:
                pass
            if isinstance(e, OSError):
                if is_disk_full(e):
                    raise DiskFullError(self._store.root, self.size) from None
                raise StoreError(f"cannot publish {self.path}: {e.strerror}", "check the store's disk") from None
            raise
        self._discard()  # the blob has its own name now; drop the ingest name while still locked
        self.committed = True
        return self.digest

    def _discard(self) -> None:
        """Delete the partial file (we hold its lock) and close."""
        unlink_quiet(self.path)
        self._close()

    def _close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)  # releases the flock


def _lock_if_nobody_holds(p: Path, operation: int) -> int | None:
    """The one stale-ingest rule: an ingest file is stale when nobody holds its flock (its writer
    died; a live writer holds it until it commits or gives up). Returns an open descriptor holding
    `operation` (non-blocking) when stale, else None; not a regular file we can open is never stale."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None  # gone, or a stray directory or link: leave it
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def is_stale(p: Path) -> bool:
    """Whether `p` is stale (`verify --all` reports it); the shared lock taken to tell is released at once."""
    fd = _lock_if_nobody_holds(p, fcntl.LOCK_SH)
    if fd is None:
        return False
    os.close(fd)
    return True


def remove_if_stale(p: Path) -> int | None:
    """Remove `p` if it is stale (writers, `prune`): the bytes freed, or None if it is live."""
    fd = _lock_if_nobody_holds(p, fcntl.LOCK_EX)
    if fd is None:
        return None
    try:
        st = os.fstat(fd)
        try:
            os.unlink(p)
        except FileNotFoundError:
            return None
        return st.st_size if st.st_nlink <= 1 else 0
    finally:
        os.close(fd)


def remove_dead_ingest(store: IngestArea) -> None:
    """Delete the ingest files of killed writers that no run can use: one-shot files (`<random>.part`,
    never resumed) and resumable downloads whose blob is published already (a writer killed between
    the publishing link and the unlink). Files a live writer holds (flock) are kept, and so are
    partial downloads of unpublished blobs, which the next pull of that blob resumes."""
    try:
        names = os.listdir(store.ingest_dir)
    except FileNotFoundError:
        return
    for name in names:
        if not name.endswith(".part"):
            continue
        stem = name[:-len(".part")]
        if stem.startswith(f"{ALGORITHM}-"):
            hexpart = stem[len(ALGORITHM) + 1:]
            if not (_HEX64.fullmatch(hexpart) and store.has_blob(f"{ALGORITHM}:{hexpart}")):
                continue
        elif not _HEX32.fullmatch(stem):
            continue
        remove_if_stale(store.ingest_dir / name)
