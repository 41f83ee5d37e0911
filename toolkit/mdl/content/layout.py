"""The local store: an OCI image layout (image-spec v1.1 `image-layout.md`) that skopeo and oras can read.

On disk, under the store root (`$MDL_HOME`, else `$XDG_DATA_HOME/mdl`, else `~/.local/share/mdl`)::

    <root>/
      oci-layout              {"imageLayoutVersion": "1.0.0"}
      index.json              OCI image index: one entry per (model, tag), see below
      index.lock              flock'ed exclusively around every read-modify-write of index.json
      gc.lock                 flock'ed shared by writers (`writing()`), exclusively by `prune()`
      blobs/sha256/<hex>      content-addressed blobs: manifests, configs, layers (read-only, 0444)
      ingest/<random>.part    blobs being written; each flock'ed by its writer while it lives
      ingest/sha256-<hex>.part  a resumable download of blob sha256:<hex> (`resumable_ingest`): kept
                              when the copy is interrupted, so the next pull resumes from its size

`index.json` entries are manifest descriptors. A tagged model has one entry per tag, the tag in the
`org.opencontainers.image.ref.name` annotation as a normalized reference (`docker.io/ai/tiny:latest`,
so `skopeo inspect oci:<root>:docker.io/ai/tiny:latest` finds it). A model kept without a tag (pulled
by digest, or whose tag moved elsewhere, as Docker keeps a dangling image) has one entry without the
annotation. An entry may also be an image index (signatures); its manifests count as referenced.

Consistency rules:
- A blob becomes visible only whole and verified: it is written to an ingest file, hashed while written,
  checked against the expected digest and size, fsync'ed, made read-only, then published by a link (or
  rename) to `blobs/sha256/<hex>`; when that name exists already the existing blob is kept.
- `import_file` hard-links the input file into the store when it is on the same file system (no copy,
  never chmod'ed: the inode is the user's too). Every read goes through a verifying reader, so a blob
  whose linked source was later edited in place is reported as corrupt, never served.
- `index.json` is rewritten to a temp file in the root, fsync'ed and `os.replace`d under `index.lock`,
  so concurrent taggers never lose an update and readers need no lock.
- Locks are `flock`s: they die with their process, so a killed process never leaves a stale lock.
  Writers hold `gc.lock` shared (`writing()`) from their first blob until their tag is written, so
  `prune` never deletes a blob that is published but not yet referenced.
- A killed process may leave files behind: the next writer removes those nobody can use (`writing()`:
  one-shot ingest files and partial downloads of blobs published since; `index.lock` holders: the temp
  files of an interrupted atomic write in the root), so `prune` is not needed to clean up after a kill.
- Nothing is held in memory in proportion to a blob: blobs are streamed through a 1 MiB buffer.
- A resumable ingest file is named by the digest it must hash to and flock'ed by its one writer; a
  second writer of the same blob waits for the lock, then finds the blob published (or resumes the
  partial file). Nobody holds the lock of an abandoned download, so `prune` deletes it as stale.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import re
import secrets
import stat
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import (
    AmbiguousReferenceError,
    ConflictError,
    DigestMismatchError,
    DiskFullError,
    InputPathError,
    MdlError,
    ModelNotFoundError,
    ReferenceFormatError,
    SchemaViolationError,
    StoreError,
)
from ..reference import Reference, model_id_query, parse_reference
from ..spec import mediatypes as mt
from .descriptor import INDEX_TYPES, MANIFEST_TYPES, Descriptor, Manifest, canonical_json, load_json_document
from .digest import ALGORITHM, DEFAULT_BUFSIZE, digest_hex, validate_digest

LAYOUT_VERSION = "1.0.0"
DOCUMENT_LIMIT = 4 << 20
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_SIG_TAG = re.compile(r":sha256-[0-9a-f]{64}\.sig$")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class BlobMissingError(StoreError):
    kind = "blob-missing"

    def __init__(self, digest: str, what: str = "blob"):
        self.digest = digest
        super().__init__(f"{what} {digest} is missing from the local store",
                         "pull or package the model again; `mdl prune` then cleans up what is left")


class BlobTooLargeError(StoreError):
    kind = "blob-too-large"

    def __init__(self, digest: str, size: int, limit: int):
        self.digest, self.size, self.limit = digest, size, limit
        super().__init__(f"blob {digest} is {size} bytes, over the {limit}-byte limit for a document",
                         "this blob is not a manifest or config; open it as a stream instead")


# ---------------------------------------------------------------------------------------------
# records returned by the store


@dataclass(frozen=True)
class IndexEntry:
    digest: str
    size: int
    media_type: str
    ref_name: str | None
    annotations: dict[str, str] | None = field(default=None, hash=False)


@dataclass(frozen=True)
class ModelRecord:
    digest: str
    tags: list[str] = field(hash=False)
    size: int  # manifest + config + layers, in bytes

    @property
    def short_id(self) -> str:
        return digest_hex(self.digest)[:12]


@dataclass
class RemovalResult:
    untagged: list[str] = field(default_factory=list)
    removed_models: list[str] = field(default_factory=list)
    deleted_blobs: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    # True when another process held the store for writing, so the removed models' blobs were left
    # for `prune` to delete.
    gc_deferred: bool = False


@dataclass
class PruneResult:
    deleted_blobs: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    stale_ingest: list[str] = field(default_factory=list)  # file names removed from ingest/


@dataclass(frozen=True)
class DiskUsage:
    models: int
    blobs: int
    blob_bytes: int
    referenced_bytes: int
    reclaimable_bytes: int
    ingest_bytes: int


# ---------------------------------------------------------------------------------------------
# verifying reader


class VerifyingReader(io.RawIOBase):
    """A blob read that checks size and digest: DigestMismatchError when the bytes read do not match.

    The hash is checked as soon as `size` bytes have been read (or at EOF when the size is unknown),
    and a blob longer or shorter than `size` is refused as well.
    """

    def __init__(self, f: BinaryIO, digest: str, size: int | None, what: str = "blob"):
        super().__init__()
        self._f = f
        self._digest = digest
        self._size = size
        self._what = what
        self._hash = hashlib.sha256()
        self._count = 0
        self._checked_stat = False
        self.verified = False

    def readable(self) -> bool:
        return True

    def _fail(self, actual: str) -> None:
        raise DigestMismatchError(self._what, self._digest, actual, self._size, self._count)

    def readinto(self, b) -> int:
        if not self._checked_stat:
            self._checked_stat = True
            if self._size is not None:
                actual = os.fstat(self._f.fileno()).st_size
                if actual != self._size:
                    raise DigestMismatchError(self._what, self._digest, "(not hashed)", self._size, actual)
        n = self._f.readinto(b)
        if n:
            with memoryview(b) as view:
                self._hash.update(view[:n])
            self._count += n
            if self._size is not None:
                if self._count > self._size:
                    self._fail("(longer than expected)")
                if self._count == self._size:
                    self._finish()
        elif len(b):
            if self._size is not None and self._count != self._size:
                self._fail("(shorter than expected)")
            self._finish()
        return n or 0

    def _finish(self) -> None:
        if self.verified:
            return
        actual = f"{ALGORITHM}:{self._hash.hexdigest()}"
        if actual != self._digest:
            self._fail(actual)
        self.verified = True

    def close(self) -> None:
        try:
            self._f.close()
        finally:
            super().close()

    def fileno(self) -> int:
        return self._f.fileno()


# ---------------------------------------------------------------------------------------------
# locks and small file helpers


@contextmanager
def _flock(path: Path, operation: int) -> Iterator[bool]:
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


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _fsync_dir(path: Path) -> None:
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


def _free_bytes(path: Path) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


# ---------------------------------------------------------------------------------------------
# blob writer


class BlobWriter:
    """A blob being written to `ingest/`; `commit()` verifies and publishes it, leaving without commit
    (or any error) removes the ingest file. Use as a context manager: `with store.ingest(d, n) as w:`."""

    def __init__(self, store: LayoutStore, expected_digest: str | None, expected_size: int | None):
        self._store = store
        self.expected_digest = validate_digest(expected_digest) if expected_digest is not None else None
        self.expected_size = expected_size
        self._hash = hashlib.sha256()
        self.size = 0
        self.digest: str | None = None
        self.committed = False
        self._closed = False
        if expected_size is not None:
            store._check_space(expected_size)
        self.path, self._fd = store._new_ingest_file()

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
                _write_all(self._fd, view)
            except OSError as e:
                self.abort()
                if e.errno in _DISK_FULL:
                    raise DiskFullError(self._store.root, self.expected_size) from None
                raise StoreError(f"cannot write {self.path}: {e.strerror}", "check the store's disk") from None
            self._hash.update(view)
        self.size += n
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
            if e.errno in _DISK_FULL:
                raise DiskFullError(self._store.root, self.size) from None
            raise StoreError(f"cannot write {self.path}: {e.strerror}", "check the store's disk") from None
        except BaseException:
            self.abort()
            raise
        try:
            self._store._publish(self.path, digest)
        finally:
            self._close_fd()
            _unlink_quiet(self.path)
        self.digest = digest
        self.committed = True
        return digest

    def abort(self) -> None:
        self._close_fd()
        _unlink_quiet(self.path)

    def _close_fd(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)


def _unlink_quiet(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------------------------------------
# resumable blob writer


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

    def __init__(self, store: LayoutStore, digest: str, size: int):
        self._store = store
        self.digest = validate_digest(digest)
        self.size = size
        self.path = store._ingest / f"{ALGORITHM}-{digest_hex(digest)}.part"
        self.exists = False
        self.committed = False
        self.offset = 0
        self.resumed_from = 0  # the size of the partial file found on opening
        self._fd = -1
        self._hash = hashlib.sha256()
        self._hashed = 0
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
            if e.errno in _DISK_FULL:
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
            self._store._check_space(self.size - self.offset)
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
                _write_all(self._fd, view)
            except OSError as e:
                # What reached the file is a prefix of the stream: a later run resumes after it.
                self._close()
                if e.errno in _DISK_FULL:
                    raise DiskFullError(self._store.root, self.size - self.offset) from None
                raise StoreError(f"cannot write {self.path}: {e.strerror}", "check the store's disk") from None
            self._hash.update(view)
        self.offset += n
        self._hashed += n
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
            self._store._publish(self.path, self.digest)
        except BaseException as e:
            try:
                os.fchmod(self._fd, 0o644)
            except OSError:
                pass
            if isinstance(e, OSError):
                if e.errno in _DISK_FULL:
                    raise DiskFullError(self._store.root, self.size) from None
                raise StoreError(f"cannot publish {self.path}: {e.strerror}", "check the store's disk") from None
            raise
        self._discard()  # the blob has its own name now; drop the ingest name while still locked
        self.committed = True
        return self.digest

    def _discard(self) -> None:
        """Delete the partial file (we hold its lock) and close."""
        _unlink_quiet(self.path)
        self._close()

    def _close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)  # releases the flock


# ---------------------------------------------------------------------------------------------
# the store


class LayoutStore:
    def __init__(self, root: Path | str):
        self.root = Path(root)
        self._blobs = self.root / "blobs" / ALGORITHM
        self._ingest = self.root / "ingest"
        self._index = self.root / "index.json"
        self._index_lock = self.root / "index.lock"
        self._gc_lock = self.root / "gc.lock"

    def __repr__(self) -> str:
        return f"LayoutStore({str(self.root)!r})"

    @staticmethod
    def default_root(env: Mapping[str, str]) -> Path:
        """$MDL_HOME, else $XDG_DATA_HOME/mdl (when absolute), else ~/.local/share/mdl."""
        if env.get("MDL_HOME"):
            return Path(env["MDL_HOME"]).expanduser()
        xdg = env.get("XDG_DATA_HOME")
        if xdg and os.path.isabs(xdg):
            return Path(xdg) / "mdl"
        home = Path(env["HOME"]) if env.get("HOME") else Path.home()
        return home / ".local" / "share" / "mdl"

    # -- layout ----------------------------------------------------------------------------------

    def _ensure_layout(self) -> None:
        if (self.root / "oci-layout").is_file() and self._index.is_file() and self._ingest.is_dir() \
                and self._blobs.is_dir():
            self._check_layout_version()
            return
        try:
            self._blobs.mkdir(parents=True, exist_ok=True)
            self._ingest.mkdir(exist_ok=True)
            # Both files are written under the index lock, so every temp file in the root belongs to
            # a holder of that lock: one found while holding it was left by a killed process.
            with _flock(self._index_lock, fcntl.LOCK_EX):
                self._remove_temp_files()
                if not (self.root / "oci-layout").exists():
                    self._atomic_write(self.root / "oci-layout",
                                       canonical_json({"imageLayoutVersion": LAYOUT_VERSION}))
                else:
                    self._check_layout_version()
                if not self._index.exists():
                    self._atomic_write(self._index, canonical_json(self._empty_index()))
        except OSError as e:
            if e.errno in _DISK_FULL:
                raise DiskFullError(self.root) from None
            raise StoreError(f"cannot create the local store at {self.root}: {e.strerror}",
                             "check the permissions, or set MDL_HOME to a writable directory") from None

    def _check_layout_version(self) -> None:
        path = self.root / "oci-layout"
        try:
            doc = json.loads(path.read_bytes())
            version = doc.get("imageLayoutVersion") if isinstance(doc, dict) else None
        except (OSError, ValueError):
            version = None
        if version != LAYOUT_VERSION:
            raise StoreError(f"{path} is not an OCI image layout version {LAYOUT_VERSION} (found {version!r})",
                             "point MDL_HOME at an mdl store, or move this directory away")

    @staticmethod
    def _empty_index() -> dict:
        return {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}

    def _atomic_write(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            try:
                _write_all(fd, memoryview(data))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            _unlink_quiet(tmp)
            raise
        _fsync_dir(path.parent)

    def _remove_temp_files(self) -> None:
        """Delete the temp files `_atomic_write` leaves in the root when its process is killed before the
        rename (`.index.json.<random>.tmp`, `.oci-layout.<random>.tmp`). Call only while holding the index
        lock: every such write holds it, so any found then is a dead process's."""
        for name in ("index.json", "oci-layout"):
            for tmp in self.root.glob(f".{name}.*.tmp"):
                _unlink_quiet(tmp)

    def _remove_dead_ingest(self) -> None:
        """Delete the ingest files of killed writers that no run can use: one-shot files (`<random>.part`,
        never resumed) and resumable downloads whose blob is published already (a writer killed between
        the publishing link and the unlink). Files a live writer holds (flock) are kept, and so are
        partial downloads of unpublished blobs, which the next pull of that blob resumes."""
        try:
            names = os.listdir(self._ingest)
        except FileNotFoundError:
            return
        for name in names:
            if not name.endswith(".part"):
                continue
            stem = name[:-len(".part")]
            if stem.startswith(f"{ALGORITHM}-"):
                hexpart = stem[len(ALGORITHM) + 1:]
                if not (_HEX64.fullmatch(hexpart) and self.has_blob(f"{ALGORITHM}:{hexpart}")):
                    continue
            elif not _HEX32.fullmatch(stem):
                continue
            _remove_if_stale(self._ingest / name)

    def _check_space(self, needed: int) -> None:
        free = _free_bytes(self.root if self.root.exists() else self.root.parent)
        if free is not None and needed > free:
            raise DiskFullError(self.root, needed)

    # -- blobs -------------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self._blobs / digest_hex(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def blob_size(self, digest: str) -> int | None:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def open_blob(self, digest: str, size: int | None = None, *, what: str = "blob") -> BinaryIO:
        """A reader that raises DigestMismatchError when the blob's bytes do not match `digest` (and `size`)."""
        path = self.blob_path(digest)
        try:
            f = open(path, "rb", buffering=0)
        except FileNotFoundError:
            raise BlobMissingError(digest, what) from None
        except OSError as e:
            raise StoreError(f"cannot read {what} {digest} at {path}: {e.strerror}",
                             "check the permissions of the store") from None
        return VerifyingReader(f, digest, size, what)  # type: ignore[return-value]

    def read_blob(self, digest: str, size: int | None = None, limit: int = DOCUMENT_LIMIT, *,
                  what: str = "blob") -> bytes:
        """The whole blob, verified; refuses blobs over `limit` bytes."""
        if size is not None and size > limit:
            raise BlobTooLargeError(digest, size, limit)
        with self.open_blob(digest, size, what=what) as r:
            actual = os.fstat(r.fileno()).st_size
            if actual > limit:
                raise BlobTooLargeError(digest, actual, limit)
            data = r.read(limit + 1)
            while True:  # read to EOF so the reader verifies (a size-less read needs the EOF read)
                more = r.read(limit + 1 - len(data))
                if not more:
                    break
                data += more
                if len(data) > limit:
                    raise BlobTooLargeError(digest, len(data), limit)
            return data

    def ingest(self, expected_digest: str | None = None, expected_size: int | None = None) -> BlobWriter:
        self._ensure_layout()
        return BlobWriter(self, expected_digest, expected_size)

    def resumable_ingest(self, desc: Descriptor) -> ResumableWriter:
        """A resumable, verifying writer of the blob `desc` names (see ResumableWriter); waits while
        another writer holds the same blob."""
        self._ensure_layout()
        return ResumableWriter(self, desc.digest, desc.size)

    def write_blob(self, data: bytes, expected_digest: str | None = None) -> tuple[str, int]:
        if expected_digest is not None:
            validate_digest(expected_digest)
            if self.has_blob(expected_digest):
                # Still check the caller's bytes: a wrong expectation must not pass silently.
                actual = f"{ALGORITHM}:{hashlib.sha256(data).hexdigest()}"
                if actual != expected_digest:
                    raise DigestMismatchError("blob", expected_digest, actual)
                return expected_digest, len(data)
        with self.ingest(expected_digest, len(data)) as w:
            w.write(data)
            digest = w.commit()
        return digest, len(data)

    def import_file(self, path: Path | str, *, link: bool = True) -> tuple[str, int]:
        """Put a file in the store in one read pass: hard-link it when possible, else copy while hashing."""
        path = Path(path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise InputPathError(path, "no such file") from None
        except OSError as e:
            raise InputPathError(path, e.strerror or "cannot be read") from None
        if not stat.S_ISREG(st.st_mode):
            raise InputPathError(path, "not a regular file")
        self._ensure_layout()
        if link:
            result = self._import_by_link(path)
            if result is not None:
                return result
        return self._import_by_copy(path, st.st_size)

    def _import_by_link(self, path: Path) -> tuple[str, int] | None:
        for _ in range(8):
            ingest = self._ingest / f"{secrets.token_hex(16)}.part"
            try:
                os.link(path, ingest, follow_symlinks=True)
            except FileExistsError:
                continue
            except OSError:
                return None  # EXDEV, EPERM, EMLINK, no hard links on this file system: copy instead
            break
        else:
            return None
        try:
            fd = os.open(ingest, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            _unlink_quiet(ingest)
            return None
        try:
            if not self._lock_ingest(fd, ingest):
                return None  # prune took it in the instant between link and lock: copy instead
            with open(fd, "rb", buffering=0, closefd=False) as f:
                h = hashlib.sha256()
                buf = bytearray(DEFAULT_BUFSIZE)
                view = memoryview(buf)
                size = 0
                while n := f.readinto(buf):
                    h.update(view[:n])
                    size += n
            digest = f"{ALGORITHM}:{h.hexdigest()}"
            self._publish(ingest, digest)
            return digest, size
        finally:
            os.close(fd)
            _unlink_quiet(ingest)

    def _import_by_copy(self, path: Path, size_hint: int) -> tuple[str, int]:
        self._check_space(size_hint)
        with BlobWriter(self, None, None) as w:
            try:
                src = open(path, "rb", buffering=0)
            except OSError as e:
                raise InputPathError(path, e.strerror or "cannot be read") from None
            with src:
                buf = bytearray(DEFAULT_BUFSIZE)
                view = memoryview(buf)
                while n := src.readinto(buf):
                    w.write(view[:n])
            digest = w.commit()
            return digest, w.size

    def _new_ingest_file(self) -> tuple[Path, int]:
        """A fresh, flock'ed ingest file (O_EXCL), its path and descriptor."""
        for _ in range(8):
            p = self._ingest / f"{secrets.token_hex(16)}.part"
            try:
                fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            except FileExistsError:
                continue
            except OSError as e:
                if e.errno in _DISK_FULL:
                    raise DiskFullError(self.root) from None
                raise StoreError(f"cannot create {p}: {e.strerror}", "check the store's permissions") from None
            if self._lock_ingest(fd, p):
                return p, fd
            os.close(fd)
        raise StoreError(f"cannot create an ingest file in {self._ingest}", "check the store's permissions")

    @staticmethod
    def _lock_ingest(fd: int, p: Path) -> bool:
        """Lock our ingest file; False when prune got there first (it holds the lock or removed the name)."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            return os.stat(p).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _publish(self, ingest: Path, digest: str) -> None:
        """Give the verified ingest file its blob name; an existing blob of that name is kept."""
        target = self.blob_path(digest)
        try:
            os.link(ingest, target)
        except FileExistsError:
            return
        except OSError as e:
            if e.errno in _DISK_FULL:
                raise DiskFullError(self.root) from None
            if target.exists():
                return
            try:  # a file system without hard links: rename (the rename target was just checked)
                os.rename(ingest, target)
            except OSError as e2:
                raise StoreError(f"cannot publish blob {digest}: {e2.strerror}",
                                 "check the store's permissions and disk") from None

    # -- documents -------------------------------------------------------------------------------

    def put_manifest(self, manifest: Manifest) -> None:
        """Store the manifest's bytes; its config and every layer must be in the store already."""
        for d in manifest.blob_descriptors():
            size = self.blob_size(d.digest)
            if size is None:
                raise StoreError(f"manifest {manifest.digest} refers to blob {d.digest}, which is not in the store",
                                 "store the config and every layer before the manifest")
            if size != d.size:
                raise DigestMismatchError("blob", d.digest, "(not hashed)", d.size, size)
        self.write_blob(manifest.raw, manifest.digest)

    def manifest(self, digest: str) -> Manifest:
        validate_digest(digest)
        raw = self.read_blob(digest, what="manifest")
        return Manifest.parse(raw, digest)

    # -- index.json ---------------------------------------------------------------------------------

    def _read_index(self) -> list[dict]:
        try:
            raw = self._index.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise StoreError(f"cannot read {self._index}: {e.strerror}", "check the store's permissions") from None
        hint = (f"the store's index is damaged; move {self.root} away and pull or package the models again "
                "(its blobs/ can be kept)")
        try:
            doc = load_json_document(raw, str(self._index))
        except SchemaViolationError as e:
            raise StoreError(f"{self._index} is not valid JSON: {e.findings[0][1]}", hint) from None
        if not isinstance(doc, dict) or doc.get("schemaVersion") != 2 or not isinstance(doc.get("manifests"), list):
            raise StoreError(f"{self._index} is not an OCI image index", hint)
        for i, d in enumerate(doc["manifests"]):
            try:
                Descriptor.from_dict(d, path=f"$.manifests[{i}]")
            except SchemaViolationError as e:
                path, msg = e.findings[0]
                raise StoreError(f"{self._index} has a bad entry at {path}: {msg}", hint) from None
        return doc["manifests"]

    def _update_index(self, change: Callable[[list[dict]], Any]) -> Any:
        """Read-modify-write index.json under the exclusive index lock; `change` edits the entry list in
        place and returns a value; the file is rewritten only when the list changed."""
        self._ensure_layout()
        with _flock(self._index_lock, fcntl.LOCK_EX):
            self._remove_temp_files()  # a killed writer's; the next one cleans up after it
            entries = self._read_index()
            before = json.dumps(entries)
            result = change(entries)
            if json.dumps(entries) != before:
                doc = self._empty_index()
                doc["manifests"] = entries
                try:
                    self._atomic_write(self._index, canonical_json(doc))
                except OSError as e:
                    if e.errno in _DISK_FULL:
                        raise DiskFullError(self.root) from None
                    raise StoreError(f"cannot write {self._index}: {e.strerror}",
                                     "check the store's permissions") from None
            return result

    def entries(self) -> list[IndexEntry]:
        return [_entry(d) for d in self._read_index()]

    def models(self) -> list[ModelRecord]:
        order: list[str] = []
        tags: dict[str, list[str]] = {}
        for d in self._read_index():
            e = _entry(d)
            if e.media_type not in MANIFEST_TYPES or _is_signature_entry(d):
                continue  # signature manifests (spec/signing.md) travel with models but are not models
            if e.digest not in tags:
                order.append(e.digest)
                tags[e.digest] = []
            if e.ref_name is not None:
                tags[e.digest].append(e.ref_name)
        out = []
        for digest in order:
            m = self.manifest(digest)
            out.append(ModelRecord(digest, tags[digest], m.size + sum(d.size for d in m.blob_descriptors())))
        return out

    def tags_of(self, digest: str) -> list[str]:
        validate_digest(digest)
        return [e.ref_name for e in self.entries() if e.digest == digest and e.ref_name is not None]

    def _entry_for(self, digest: str) -> dict:
        """The index entry (descriptor) for a stored manifest or index blob."""
        raw = self.read_blob(digest, what="manifest")
        doc = load_json_document(raw, f"manifest {digest}")
        media_type = doc.get("mediaType") if isinstance(doc, dict) else None
        if media_type in INDEX_TYPES or (media_type is None and isinstance(doc, dict) and "manifests" in doc):
            d = {"mediaType": media_type or mt.OCI_INDEX, "digest": digest, "size": len(raw)}
        else:
            d = Manifest.parse(raw, digest).descriptor().to_dict()
        return d

    def add_tag(self, digest: str, ref: Reference) -> str | None:
        """Point `ref` at the stored manifest `digest`, moving it if it pointed elsewhere; returns the
        digest it pointed at before, if any. A model that loses its last tag this way is kept untagged."""
        validate_digest(digest)
        if ref.digest is not None and (ref.tag is None or ref.digest != digest):
            raise ReferenceFormatError(str(ref), "only a tag can be stored; this reference names a digest")
        name = str(Reference(ref.registry, ref.repository, ref.tag, None))
        if not self.has_blob(digest):
            raise BlobMissingError(digest, "manifest")
        new = self._entry_for(digest)
        new["annotations"] = {mt.ANNOTATION_REF_NAME: name}

        def change(entries: list[dict]) -> str | None:
            previous = None
            moved = None
            for i, d in enumerate(entries):
                if _ref_name(d) == name:
                    previous = d["digest"]
                    if previous == digest:
                        return previous
                    moved = entries.pop(i)
                    break
            # the model is tagged now: drop its untagged entry
            entries[:] = [d for d in entries if not (d["digest"] == digest and _ref_name(d) is None)]
            entries.append(new)
            if moved is not None and not any(d["digest"] == previous for d in entries):
                # Docker keeps a model whose tag moved away, untagged (a dangling model)
                untagged = {k: v for k, v in moved.items() if k != "annotations"}
                rest = {k: v for k, v in (moved.get("annotations") or {}).items() if k != mt.ANNOTATION_REF_NAME}
                if rest:
                    untagged["annotations"] = rest
                entries.append(untagged)
            return previous

        with self._gc_shared():
            return self._update_index(change)

    def add_untagged(self, digest: str) -> None:
        """Keep a stored manifest as a model with no tag (e.g. after a pull by digest)."""
        validate_digest(digest)
        if not self.has_blob(digest):
            raise BlobMissingError(digest, "manifest")
        new = self._entry_for(digest)

        def change(entries: list[dict]) -> None:
            if not any(d["digest"] == digest for d in entries):
                entries.append(new)

        with self._gc_shared():
            self._update_index(change)

    # -- resolution --------------------------------------------------------------------------------

    def _match_id(self, text: str, digests: list[str]) -> str | None:
        query = model_id_query(text)
        if query is None:
            return None
        if query.startswith(ALGORITHM + ":"):
            return query if query in digests else None
        matches = sorted({d for d in digests if digest_hex(d).startswith(query)})
        if len(matches) > 1:
            raise AmbiguousReferenceError(text, matches)
        return matches[0] if matches else None

    def resolve(self, text: str) -> str:
        """The manifest digest `text` names: a model ID (full or a unique prefix of 12+ hex), a digest
        reference to a stored manifest, or a tag in the index."""
        entries = self.entries()
        digests = [e.digest for e in entries if e.media_type in MANIFEST_TYPES]
        found = self._match_id(text, digests)
        if found is not None:
            return found
        ref = _lookup_reference(text)
        if ref.digest is not None:
            if ref.digest in digests or self._is_manifest(ref.digest):
                return ref.digest
            raise ModelNotFoundError(text)
        name = str(ref)
        for e in entries:
            if e.ref_name == name:
                return e.digest
        raise ModelNotFoundError(text)

    def _is_manifest(self, digest: str) -> bool:
        if not self.has_blob(digest):
            return False
        try:
            self.manifest(digest)
        except MdlError:
            return False
        return True

    # -- removal and garbage collection --------------------------------------------------------------

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the store for writing: `prune` waits until this ends, so blobs published under it are not
        deleted before they are tagged. Shared: any number of writers at once.
        A writer first deletes the ingest files killed writers left that nobody can resume, so a
        command that follows a killed one leaves the ingest area clean without waiting for `prune`."""
        self._ensure_layout()
        with _flock(self._gc_lock, fcntl.LOCK_SH):
            self._remove_dead_ingest()
            yield

    @contextmanager
    def _gc_shared(self) -> Iterator[None]:
        self._ensure_layout()
        with _flock(self._gc_lock, fcntl.LOCK_SH):
            yield

    def remove(self, text: str, *, force: bool = False) -> RemovalResult:
        """Docker's `rm`: a tag is untagged (the model goes with its last tag); an ID or digest removes the
        model and all its tags (more than one tag needs `force`). Then the removed models' blobs that no
        remaining model uses are deleted, unless a writer holds the store (then `prune` does it later)."""
        result = RemovalResult()

        def change(entries: list[dict]) -> None:
            digests = [d["digest"] for d in entries if d["mediaType"] in MANIFEST_TYPES]
            target = self._match_id(text, digests)
            tag = None
            if target is None:
                ref = _lookup_reference(text)
                if ref.digest is not None:
                    if ref.digest not in digests:
                        raise ModelNotFoundError(text)
                    target = ref.digest
                else:
                    tag = str(ref)
                    hit = [d for d in entries if _ref_name(d) == tag]
                    if not hit:
                        raise ModelNotFoundError(text)
                    target = hit[0]["digest"]
            tags = [_ref_name(d) for d in entries if d["digest"] == target and _ref_name(d) is not None]
            if tag is not None:
                entries[:] = [d for d in entries if _ref_name(d) != tag]
                result.untagged.append(tag)
                if not any(d["digest"] == target for d in entries):
                    result.removed_models.append(target)
                return
            if len(tags) > 1 and not force:
                raise ConflictError(
                    f"model {digest_hex(target)[:12]} is tagged as {', '.join(tags)}",  # type: ignore[arg-type]
                    "use --force, or remove the tags one at a time")
            entries[:] = [d for d in entries if d["digest"] != target]
            result.untagged.extend(tags)  # type: ignore[arg-type]
            result.removed_models.append(target)

        if not self._index.exists():
            raise ModelNotFoundError(text)
        self._update_index(change)
        if result.removed_models:
            gone = {":sha256-" + digest_hex(d) + ".sig" for d in result.removed_models}
            # a removed model's signatures go with it (their blobs with the next prune)
            self._update_index(lambda entries: entries.__setitem__(slice(None), [
                d for d in entries if not any((_ref_name(d) or "").endswith(s) for s in gone)]))
            self._collect(result)
        return result

    def _collect(self, result: RemovalResult) -> None:
        with _flock(self._gc_lock, fcntl.LOCK_EX | fcntl.LOCK_NB) as locked:
            if not locked:
                result.gc_deferred = True
                return
            owned: list[str] = []
            for digest in result.removed_models:
                owned.append(digest)
                try:
                    owned.extend(self._children(digest))
                except MdlError:
                    pass  # a damaged manifest: delete it alone; prune finds what it referenced
            keep = self.referenced_blobs()
            for digest in dict.fromkeys(owned):
                if digest not in keep:
                    freed = self._delete_blob(digest)
                    if freed is not None:
                        result.deleted_blobs.append(digest)
                        result.freed_bytes += freed

    def discard_unreferenced(self, digests: list[str]) -> list[str]:
        """Delete those of `digests` no model references: what a failed command published and will not
        tag. Skipped (left for prune) while another writer holds the store, which may need them."""
        deleted: list[str] = []
        if not digests or not self.root.exists():
            return deleted
        with _flock(self._gc_lock, fcntl.LOCK_EX | fcntl.LOCK_NB) as locked:
            if not locked:
                return deleted
            keep = self.referenced_blobs()
            for digest in dict.fromkeys(digests):
                if digest not in keep and self._delete_blob(digest) is not None:
                    deleted.append(digest)
        return deleted

    def remove_damaged(self, corrupt: Collection[str], models: Collection[str],
                       still_corrupt: Callable[[str], bool] | None = None) -> RemovalResult:
        """`mdl verify --repair`: delete the `corrupt` blobs (content does not match the name), the index
        entries of `models` and of every entry whose graph uses a corrupt blob, then the removed models'
        blobs no remaining entry uses. Holds gc.lock exclusively, as `prune` does, so writers wait and a
        blob a writer has published but not yet tagged is never deleted; `still_corrupt` re-checks each
        corrupt blob under the lock (it is kept when it matches now)."""
        result = RemovalResult()
        if not self.root.exists():
            return result
        self._ensure_layout()
        with _flock(self._gc_lock, fcntl.LOCK_EX):
            bad = {d for d in corrupt if self.has_blob(d) and (still_corrupt is None or still_corrupt(d))}
            drop = set(models) | bad

            def change(entries: list[dict]) -> None:
                kept = []
                for d in entries:
                    gone = d["digest"] in drop
                    if not gone and bad and self.has_blob(d["digest"]):
                        try:
                            gone = bool(bad.intersection(self._children(d["digest"], d.get("mediaType"))))
                        except MdlError:
                            gone = False  # unreadable graph: it cannot be said to need a corrupt blob
                    if gone:
                        if _ref_name(d) is not None:
                            result.untagged.append(_ref_name(d))  # type: ignore[arg-type]
                        if d["digest"] not in result.removed_models:
                            result.removed_models.append(d["digest"])
                    else:
                        kept.append(d)
                entries[:] = kept

            self._update_index(change)
            owned: list[str] = list(bad)
            for digest in result.removed_models:
                owned.append(digest)
                if digest in bad:
                    continue
                try:
                    owned.extend(self._children(digest))
                except MdlError:
                    pass
            try:
                keep = self.referenced_blobs()
            except MdlError:
                keep = None  # a remaining model is damaged: delete only the corrupt blobs
            for digest in dict.fromkeys(owned):
                if digest in bad or (keep is not None and digest not in keep):
                    freed = self._delete_blob(digest)
                    if freed is not None:
                        result.deleted_blobs.append(digest)
                        result.freed_bytes += freed
        return result

    def _delete_blob(self, digest: str) -> int | None:
        """Delete a blob; the bytes this frees (0 when its inode is linked elsewhere), None if absent."""
        path = self.blob_path(digest)
        try:
            st = os.stat(path)
            os.unlink(path)
        except FileNotFoundError:
            return None
        return st.st_size if st.st_nlink <= 1 else 0

    def _children(self, digest: str, media_type: str | None = None) -> list[str]:
        """Blobs reachable from a manifest or index (not the digest itself), manifests of an index recursively."""
        raw = self.read_blob(digest, what="manifest")
        doc = load_json_document(raw, f"manifest {digest}")
        if not isinstance(doc, dict):
            raise SchemaViolationError(f"manifest {digest}", [("$", "not a JSON object")])
        kind = doc.get("mediaType") or media_type
        if kind in INDEX_TYPES or (kind is None and "manifests" in doc):
            out: list[str] = []
            for i, d in enumerate(doc.get("manifests") or []):
                child = Descriptor.from_dict(d, what=f"index {digest}", path=f"$.manifests[{i}]")
                out.append(child.digest)
                if self.has_blob(child.digest):
                    out.extend(self._children(child.digest, child.media_type))
            return out
        return [d.digest for d in Manifest.parse(raw, digest).blob_descriptors()]

    def referenced_blobs(self) -> set[str]:
        """Every blob a model in the index needs: manifests (and indexes, recursively), configs, layers."""
        out: set[str] = set()
        for e in self.entries():
            out.add(e.digest)
            if not self.has_blob(e.digest):
                continue  # a dangling entry refers to nothing more
            try:
                out.update(self._children(e.digest, e.media_type))
            except MdlError as err:
                raise StoreError(f"model {e.digest} in the local store is damaged: {err}",
                                 f"remove it with `mdl rm --force {digest_hex(e.digest)[:12]}`, then prune") from None
        return out

    def _blob_files(self) -> Iterator[tuple[str, os.stat_result]]:
        try:
            it = os.scandir(self._blobs)
        except FileNotFoundError:
            return
        with it:
            for de in it:
                if len(de.name) == 64 and all(c in "0123456789abcdef" for c in de.name):
                    try:
                        yield f"{ALGORITHM}:{de.name}", de.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue

    def prune(self) -> PruneResult:
        """Delete every blob no model references and every stale ingest file. Waits for writers to finish."""
        result = PruneResult()
        if not self.root.exists():
            return result
        self._ensure_layout()
        with _flock(self._gc_lock, fcntl.LOCK_EX):
            keep = self.referenced_blobs()
            for digest, _st in list(self._blob_files()):
                if digest not in keep:
                    freed = self._delete_blob(digest)
                    if freed is not None:
                        result.deleted_blobs.append(digest)
                        result.freed_bytes += freed
            for p in sorted(self._ingest.iterdir()):
                freed = _remove_if_stale(p)
                if freed is not None:
                    result.stale_ingest.append(p.name)
                    result.freed_bytes += freed
            with _flock(self._index_lock, fcntl.LOCK_EX):
                for p in self.root.glob(".index.json.*.tmp"):
                    _unlink_quiet(p)
        return result

    def disk_usage(self) -> DiskUsage:
        keep = self.referenced_blobs() if self._index.exists() else set()
        count = total = referenced = 0
        for digest, st in self._blob_files():
            count += 1
            total += st.st_size
            if digest in keep:
                referenced += st.st_size
        ingest = 0
        if self._ingest.is_dir():
            for p in self._ingest.iterdir():
                try:
                    ingest += p.stat().st_size
                except FileNotFoundError:
                    pass
        models = len({d["digest"] for d in self._read_index()
                      if d["mediaType"] in MANIFEST_TYPES and not _is_signature_entry(d)})
        return DiskUsage(models, count, total, referenced, total - referenced, ingest)


def _lookup_reference(text: str) -> Reference:
    """`text` parsed as a reference; an ID-like string that matched no model is 'not found', not 'invalid'."""
    try:
        return parse_reference(text)
    except ReferenceFormatError:
        if model_id_query(text) is not None:
            raise ModelNotFoundError(text) from None
        raise


def _ref_name(d: dict) -> str | None:
    ann = d.get("annotations") or {}
    return ann.get(mt.ANNOTATION_REF_NAME)


def is_signature_entry(d: dict | IndexEntry) -> bool:
    """An index entry (raw or IndexEntry) of a cosign signature manifest stored beside its model
    (`<repo>:sha256-<hex>.sig`, spec/signing.md): not a model."""
    if isinstance(d, IndexEntry):
        return bool(_SIG_TAG.search(d.ref_name or ""))
    return d.get("artifactType") == mt.COSIGN_SIGNATURE_ARTIFACT_TYPE or bool(_SIG_TAG.search(_ref_name(d) or ""))


_is_signature_entry = is_signature_entry


def _entry(d: dict) -> IndexEntry:
    ann = d.get("annotations") or None
    return IndexEntry(d["digest"], d["size"], d["mediaType"], _ref_name(d), dict(ann) if ann else None)


def _remove_if_stale(p: Path) -> int | None:
    """Remove an ingest file nobody holds (its writer died); the bytes freed, or None if it is live."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError:
        # not a regular file we can open (a stray directory or link): leave it
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        st = os.fstat(fd)
        try:
            os.unlink(p)
        except FileNotFoundError:
            return None
        return st.st_size if st.st_nlink <= 1 else 0
    finally:
        os.close(fd)
