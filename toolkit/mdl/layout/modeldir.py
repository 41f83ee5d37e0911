"""A model directory being written (`mdl extract`): files placed at relative paths, never outside it.

Every path is walked one segment at a time from the directory's own descriptor, each segment opened
with `O_NOFOLLOW`: a symbolic link inside the directory (planted, or left by an earlier tool) is never
followed, and the file it would have redirected is named in the error. The directory itself may be a
link: the caller chose it.

A file is written to a temp name beside its final one (`.<name>.<random>.tmp`, the pattern of
`store.locks.temp_name`), hashed or linked, made read-only, fsync'ed, and renamed into place only when
verified, so an interrupted extract never leaves a partial file under a final name. An existing file is
replaced only with `force`, atomically (rename over it); an existing directory never is.

One writer at a time: the directory is held with an exclusive `flock` while open, so a second extract
into it is refused at once rather than racing the first (whose scratch store it would share, and
remove under it). The lock dies with its process.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
from pathlib import Path

from ..content.digest import ALGORITHM, hash_stream
from ..errors import ConflictError, DigestMismatchError, DiskFullError, InputPathError
from ..placement import UnsafePathError
from ..store.locks import Writeback, fsync_dir, free_bytes, is_disk_full, temp_name, write_all

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_MODE = 0o444


class PendingFile:
    """A file written under a temp name in its directory; `commit()` renames it into place."""

    def __init__(self, model_dir: ModelDir, path: str, dir_fd: int, name: str, temp: str, fd: int | None):
        self._dir, self.path, self._dir_fd, self._name, self._temp, self._fd = model_dir, path, dir_fd, name, temp, fd
        self.size = 0
        self._hash = hashlib.sha256()
        self._writeback = Writeback(fd) if fd is not None else None

    def write(self, view) -> None:
        """Append bytes, hashing them (a full disk is DiskFullError naming the directory)."""
        try:
            write_all(self._fd, view)
        except OSError as e:
            self.abort()
            if is_disk_full(e):
                raise DiskFullError(self._dir.root) from None
            raise InputPathError(self._dir.root / self.path, e.strerror or "cannot be written") from None
        self._hash.update(view)
        self.size += len(view)
        self._writeback.wrote(len(view))  # type: ignore[union-attr]  # only a linked file has none, and is not written

    @property
    def digest(self) -> str:
        return f"{ALGORITHM}:{self._hash.hexdigest()}"

    def seal(self, mode: int = FILE_MODE) -> None:
        """Make the written file read-only and durable (before it gets its name)."""
        if self._fd is not None:
            os.fchmod(self._fd, mode)
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def verify(self, digest: str, size: int) -> None:
        """Hash the file as written or linked (one read pass); DigestMismatchError (and no file) when it
        is not the blob it should be."""
        fd = os.open(self._temp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self._dir_fd)
        try:
            with open(fd, "rb", buffering=0, closefd=False) as f:
                actual, actual_size = hash_stream(f)
        finally:
            os.close(fd)
        if actual != digest or actual_size != size:
            self.abort()
            raise DigestMismatchError(f"{self._dir.root / self.path}: blob", digest, actual, size, actual_size)

    def link_to(self, path: str) -> PendingFile:
        """Another name (`path`, pending too) for this pending file: an archive's hard link."""
        dir_fd, name, temp = self._dir.temp_for(path)
        os.link(self._temp, temp, src_dir_fd=self._dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        return PendingFile(self._dir, path, dir_fd, name, temp, None)

    def commit(self) -> None:
        """Give the file its name (it must be complete and verified); on failure nothing is left."""
        try:
            self.seal()
            self._dir.check_free(self.path)  # a file that appeared meanwhile (another writer) is not clobbered
            os.rename(self._temp, self._name, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
        except BaseException:
            self.abort()
            raise
        self._temp = None

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._temp is not None:
            try:
                os.unlink(self._temp, dir_fd=self._dir_fd)
            except FileNotFoundError:
                pass
            self._temp = None


class ModelDir:
    """The target directory of an extract. Use as a context manager (it holds directory descriptors)."""

    def __init__(self, root: str | os.PathLike, *, force: bool = False, reserved: str | None = None):
        self.root = Path(root)
        self.force = force
        self.reserved = reserved  # a directory of the caller's own that no file may be placed in
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileExistsError:
            raise InputPathError(self.root, "exists and is not a directory", "name a directory to extract into") \
                from None
        except NotADirectoryError:
            raise InputPathError(self.root, "is not a directory", "name a directory to extract into") from None
        except OSError as e:
            if is_disk_full(e):
                raise DiskFullError(self.root) from None
            raise InputPathError(self.root, e.strerror or "cannot be created", "check the path and its permissions") \
                from None
        try:
            fcntl.flock(self._root_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._root_fd)
            raise ConflictError(f"{self.root}: another mdl extract is writing into this directory",
                                "wait for it to finish, or extract into another directory") from None
        self._dirs: dict[str, int] = {"": self._root_fd}
        self.claimed: dict[str, str] = {}  # path -> what placed it (two layers may not place one path)

    def __enter__(self) -> ModelDir:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for fd in set(self._dirs.values()):
            os.close(fd)
        self._dirs.clear()

    # -- paths ---------------------------------------------------------------------------------------

    def directory(self, path: str, *, create: bool = True) -> int:
        """The descriptor of directory `path` (relative, normalized; "" is the root), walked without
        following links; created (0755) when missing and `create`."""
        if path in self._dirs:
            return self._dirs[path]
        parent, _, name = path.rpartition("/")
        pfd = self.directory(parent, create=create)
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
        except FileNotFoundError:
            if not create:
                raise
            try:
                os.mkdir(name, 0o755, dir_fd=pfd)
            except FileExistsError:
                pass
            except OSError as e:
                if is_disk_full(e):
                    raise DiskFullError(self.root) from None
                raise InputPathError(self.root / path, e.strerror or "cannot be created") from None
            return self.directory(path, create=create)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                what = "is a symbolic link" if _is_link(pfd, name) else "is not a directory"
                raise UnsafePathError(str(self.root), path, f"{self.root / path} {what}") from None
            raise InputPathError(self.root / path, e.strerror or "cannot be opened") from None
        self._dirs[path] = fd
        return fd

    def claim(self, path: str, owner: str) -> None:
        """Reserve `path` for `owner` (a layer, or a member of one); two owners of one path are refused."""
        if self.reserved and (path == self.reserved or path.startswith(self.reserved + "/")):
            raise UnsafePathError(str(self.root), path, f"{owner} would place it in {self.reserved}/, mdl's own")
        if path in self.claimed and self.claimed[path] != owner:
            raise UnsafePathError(str(self.root), path, f"{self.claimed[path]} and {owner} both place a file there")
        self.claimed[path] = owner

    def check_free(self, path: str) -> None:
        """ConflictError when a file is at `path` already (unless `force`); never a directory or a link
        on the way (UnsafePathError)."""
        parent, _, name = path.rpartition("/")
        try:
            st = os.stat(name, dir_fd=self.directory(parent, create=False), follow_symlinks=False)
        except FileNotFoundError:
            return  # (or its directory is not there yet)
        if stat.S_ISDIR(st.st_mode):
            raise ConflictError(f"{self.root / path} is a directory", "remove it, or extract into another directory")
        if not self.force:
            raise ConflictError(f"{self.root / path} exists", "use --force to replace it, or extract into an empty "
                                                              "directory")

    def ensure_space(self, needed: int) -> None:
        free = free_bytes(self.root)
        if free is not None and needed > free:
            raise DiskFullError(self.root, needed)

    # -- writing -------------------------------------------------------------------------------------

    def temp_for(self, path: str) -> tuple[int, str, str]:
        parent, _, name = path.rpartition("/")
        self.check_free(path)
        return self.directory(parent), name, temp_name(Path(name)).name

    def new_file(self, path: str) -> PendingFile:
        dir_fd, name, temp = self.temp_for(path)
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600,
                         dir_fd=dir_fd)
        except OSError as e:
            if is_disk_full(e):
                raise DiskFullError(self.root) from None
            raise InputPathError(self.root / path, e.strerror or "cannot be created") from None
        return PendingFile(self, path, dir_fd, name, temp, fd)

    def link_file(self, source: Path, path: str) -> PendingFile | None:
        """`source` hard-linked under a temp name for `path`; None when it cannot be (another file
        system, no hard links here) or must not be (the inode is writable: a blob the store imported
        by link from the user's own file), and the caller copies instead."""
        dir_fd, name, temp = self.temp_for(path)
        try:
            if os.stat(source).st_mode & 0o222:
                return None
            os.link(source, temp, dst_dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return None
        pending = PendingFile(self, path, dir_fd, name, temp, None)
        pending.size = os.stat(temp, dir_fd=dir_fd).st_size
        return pending

    def new_symlink(self, target: str, path: str) -> PendingFile:
        dir_fd, name, temp = self.temp_for(path)
        os.symlink(target, temp, dir_fd=dir_fd)
        return PendingFile(self, path, dir_fd, name, temp, None)

    def sync(self) -> None:
        for p in self._dirs:
            fsync_dir(self.root / p)


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False
