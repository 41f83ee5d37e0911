"""The store's content-addressed blobs: `blobs/sha256/<hex>`, written through `ingest/` (see `mdl.store`).

A blob becomes visible only whole and verified: written to an ingest file, hashed while written,
checked against the expected digest and size, fsync'ed, made read-only, then published by a link (or
rename) to its name; when that name exists already the existing blob is kept. Every read goes
through a verifying reader, so a blob whose bytes changed after publishing is reported, never served.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..content.descriptor import Descriptor
from ..content.digest import ALGORITHM, VerifyingReader, digest_hex, hash_whole_file, sha256_bytes, validate_digest
from ..content.mapped import FileChanged
from ..content.readahead import chunks
from ..errors import DigestMismatchError, DiskFullError, InputPathError, StoreError
from .ingest import BlobWriter, ResumableWriter, remove_dead_ingest
from .locks import flock, free_bytes, fsync_dir, is_disk_full, unlink_quiet

DOCUMENT_LIMIT = 4 << 20  # the most bytes read whole into memory: manifests, configs, indexes


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


class BlobStore:
    """Blobs and ingest files under `root`; `ensure_layout` makes the directories on first write."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs" / ALGORITHM
        self.ingest_dir = self.root / "ingest"
        self.gc_lock = self.root / "gc.lock"

    def ensure_layout(self) -> None:
        try:
            self.blobs_dir.mkdir(parents=True, exist_ok=True)
            self.ingest_dir.mkdir(exist_ok=True)
        except OSError as e:
            if is_disk_full(e):
                raise DiskFullError(self.root) from None
            raise StoreError(f"cannot create the local store at {self.root}: {e.strerror}",
                             "check the permissions, or set MDL_HOME to a writable directory") from None

    # -- the gc lock: writers share it, collectors take it alone -----------------------------------

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the store for writing: `prune` waits until this ends, so blobs published under it are not
        deleted before they are tagged. Shared: any number of writers at once.
        A writer first deletes the ingest files killed writers left that nobody can resume, so a
        command that follows a killed one leaves the ingest area clean without waiting for `prune`."""
        self.ensure_layout()
        with flock(self.gc_lock, fcntl.LOCK_SH):
            remove_dead_ingest(self)
            yield

    @contextmanager
    def gc_shared(self) -> Iterator[None]:
        """Hold off collectors for a short change (tagging), without the writer's ingest cleanup."""
        self.ensure_layout()
        with flock(self.gc_lock, fcntl.LOCK_SH):
            yield

    @contextmanager
    def collecting(self, *, wait: bool = True) -> Iterator[bool]:
        """Hold the gc lock alone, as deleting blobs requires; with `wait=False`, yields False at once
        when a writer holds the store (then the caller leaves the deleting to a later `prune`)."""
        with flock(self.gc_lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB)) as locked:
            yield locked

    # -- blobs -------------------------------------------------------------------------------------

    def check_space(self, needed: int) -> None:
        free = free_bytes(self.root if self.root.exists() else self.root.parent)
        if free is not None and needed > free:
            raise DiskFullError(self.root, needed)

    def blob_path(self, digest: str) -> Path:
        return self.blobs_dir / digest_hex(digest)

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

    def read_node(self, desc: Descriptor) -> bytes | None:
        """A manifest's or index's verified bytes for a graph walk (`content.graph`); None when absent."""
        return self.read_blob(desc.digest, what="manifest") if self.has_blob(desc.digest) else None

    def ingest(self, expected_digest: str | None = None, expected_size: int | None = None) -> BlobWriter:
        self.ensure_layout()
        return BlobWriter(self, expected_digest, expected_size)

    def resumable_ingest(self, desc: Descriptor) -> ResumableWriter:
        """A resumable, verifying writer of the blob `desc` names (see ResumableWriter); waits while
        another writer holds the same blob."""
        self.ensure_layout()
        return ResumableWriter(self, desc.digest, desc.size)

    def write_blob(self, data: bytes, expected_digest: str | None = None) -> tuple[str, int]:
        if expected_digest is not None:
            validate_digest(expected_digest)
            if self.has_blob(expected_digest):
                # Still check the caller's bytes: a wrong expectation must not pass silently.
                actual = sha256_bytes(data)
                if actual != expected_digest:
                    raise DigestMismatchError("blob", expected_digest, actual)
                return expected_digest, len(data)
        with self.ingest(expected_digest, len(data)) as w:
            w.write(data)
            digest = w.commit()
        return digest, len(data)

    def import_file(self, path: Path | str, *, link: bool = True, ahead: bool = True) -> tuple[str, int]:
        """Put a file in the store in one read pass: hard-link it when possible, else copy while hashing;
        `ahead`: read on a helper thread (`content.digest.spare_core` says when that pays)."""
        path = Path(path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise InputPathError(path, "no such file") from None
        except OSError as e:
            raise InputPathError(path, e.strerror or "cannot be read") from None
        if not stat.S_ISREG(st.st_mode):
            raise InputPathError(path, "not a regular file")
        self.ensure_layout()
        if link:
            result = self._import_by_link(path, ahead)
            if result is not None:
                return result
        return self._import_by_copy(path, st.st_size, ahead)

    def _import_by_link(self, path: Path, ahead: bool) -> tuple[str, int] | None:
        for _ in range(8):
            ingest = self.ingest_dir / f"{os.urandom(16).hex()}.part"
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
            unlink_quiet(ingest)
            return None
        try:
            if not self._lock_ingest(fd, ingest):
                return None  # prune took it in the instant between link and lock: copy instead
            with open(fd, "rb", buffering=0, closefd=False) as f:
                try:
                    digest, size = hash_whole_file(f, ahead=ahead)
                except FileChanged:
                    raise InputPathError(path, "the file changed while it was being read",
                                         "try again once nothing is writing to it") from None
            os.fsync(fd)  # the user's bytes may still be only in the page cache: make them durable first
            self.publish(ingest, digest)
            return digest, size
        finally:
            os.close(fd)
            unlink_quiet(ingest)

    def _import_by_copy(self, path: Path, size_hint: int, ahead: bool) -> tuple[str, int]:
        self.check_space(size_hint)
        with BlobWriter(self, None, None) as w:
            try:
                src = open(path, "rb", buffering=0)
            except OSError as e:
                raise InputPathError(path, e.strerror or "cannot be read") from None
            with src:
                for chunk in chunks(src, ahead=ahead):
                    w.write(chunk)
            digest = w.commit()
            return digest, w.size

    def new_ingest_file(self) -> tuple[Path, int]:
        """A fresh, flock'ed ingest file (O_EXCL), its path and descriptor."""
        for _ in range(8):
            p = self.ingest_dir / f"{os.urandom(16).hex()}.part"
            try:
                fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            except FileExistsError:
                continue
            except OSError as e:
                if is_disk_full(e):
                    raise DiskFullError(self.root) from None
                raise StoreError(f"cannot create {p}: {e.strerror}", "check the store's permissions") from None
            if self._lock_ingest(fd, p):
                return p, fd
            os.close(fd)
        raise StoreError(f"cannot create an ingest file in {self.ingest_dir}", "check the store's permissions")

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

    def publish(self, ingest: Path, digest: str) -> None:
        """Give the verified ingest file its blob name; an existing blob of that name is kept."""
        target = self.blob_path(digest)
        try:
            os.link(ingest, target)
        except FileExistsError:
            return
        except OSError as e:
            if is_disk_full(e):
                raise DiskFullError(self.root) from None
            if target.exists():
                return
            try:  # a file system without hard links: rename (the rename target was just checked)
                os.rename(ingest, target)
            except OSError as e2:
                raise StoreError(f"cannot publish blob {digest}: {e2.strerror}",
                                 "check the store's permissions and disk") from None
        # The bytes were fsync'ed before this; now the name: after a power cut a blob's name is either
        # absent or over its whole content (spec/local-store.md, "Durability").
        fsync_dir(self.blobs_dir)

    def delete_blob(self, digest: str) -> int | None:
        """Delete a blob; the bytes this frees (0 when its inode is linked elsewhere), None if absent."""
        path = self.blob_path(digest)
        try:
            st = os.stat(path)
            os.unlink(path)
        except FileNotFoundError:
            return None
        return st.st_size if st.st_nlink <= 1 else 0

    def blob_files(self) -> Iterator[tuple[str, os.stat_result]]:
        """(digest, stat) of every file under blobs/sha256/ named like a digest."""
        try:
            it = os.scandir(self.blobs_dir)
        except FileNotFoundError:
            return
        with it:
            for de in it:
                if len(de.name) == 64 and all(c in "0123456789abcdef" for c in de.name):
                    try:
                        yield f"{ALGORITHM}:{de.name}", de.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
