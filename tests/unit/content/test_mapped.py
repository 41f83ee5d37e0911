"""Hashing through a memory map under a read lease (content/mapped.py): the same digests as reading,
a writer that comes meanwhile is a clean FileChanged (never SIGBUS), and no lease means a plain read."""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import signal
import threading
import time

import pytest

import mdl.content.mapped as mapped
from mdl.content.digest import VerifyingReader, hash_whole_file
from mdl.errors import DigestMismatchError, InputPathError
from mdl.store import LayoutStore


def leases_work(path) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


@pytest.fixture
def small_windows(monkeypatch):
    monkeypatch.setattr(mapped, "WINDOW", mmap.ALLOCATIONGRANULARITY)
    return mmap.ALLOCATIONGRANULARITY


@pytest.fixture
def leased_dir(tmp_path):
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    if not leases_work(probe):
        pytest.skip(f"the file system of {tmp_path} grants no read leases: files are read, not mapped")
    return tmp_path


@pytest.mark.parametrize("extra", [-1, 0, 1, None])
def test_mapped_digest_equals_the_read_one(leased_dir, small_windows, extra):
    size = 0 if extra is None else 3 * small_windows + extra
    data = os.urandom(size)
    path = leased_dir / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert mapped.hash_mapped(fd) == (hashlib.sha256(data).hexdigest(), size)
        assert fcntl.fcntl(fd, fcntl.F_GETLEASE) == fcntl.F_UNLCK  # released
    finally:
        os.close(fd)


class _MmapThatTruncates:
    """Stands for the mmap module in content/mapped.py: the first window it maps starts a thread that
    truncates the file, which the lease makes wait, and gives the kernel time to mark the lease."""

    PROT_READ = mmap.PROT_READ

    def __init__(self, path):
        self._path = path
        self.writer: threading.Thread | None = None
        self.started_at = self.truncated_at = 0.0

    def mmap(self, *args, **kwargs):
        if self.writer is None:
            def truncate():
                os.truncate(self._path, 10)
                self.truncated_at = time.monotonic()
            self.writer = threading.Thread(target=truncate)
            self.started_at = time.monotonic()
            self.writer.start()
            time.sleep(0.2)
        return mmap.mmap(*args, **kwargs)


def test_a_truncation_while_hashing_is_file_changed_not_sigbus(leased_dir, small_windows, monkeypatch):
    path = leased_dir / "f"
    path.write_bytes(os.urandom(4 * small_windows))
    fake = _MmapThatTruncates(path)
    monkeypatch.setattr(mapped, "mmap", fake)
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(mapped.FileChanged):
            mapped.hash_mapped(fd)
    finally:
        os.close(fd)
    fake.writer.join(10)
    assert fake.truncated_at - fake.started_at >= 0.15  # the truncation waited for the lease's release
    assert path.stat().st_size == 10


def test_no_lease_while_another_holds_it_open_for_writing(leased_dir):
    path = leased_dir / "f"
    data = os.urandom(10_000)
    path.write_bytes(data)
    with open(path, "r+b"), open(path, "rb", buffering=0) as f:
        assert mapped.hash_mapped(f.fileno()) is None
        assert hash_whole_file(f, ahead=False) == ("sha256:" + hashlib.sha256(data).hexdigest(), len(data))


def test_no_lease_when_sigurg_has_a_handler(leased_dir, monkeypatch):
    path = leased_dir / "f"
    path.write_bytes(b"abc")
    monkeypatch.setattr(mapped.signal, "getsignal", lambda sig: (lambda *a: None) if sig == signal.SIGURG else None)
    with open(path, "rb", buffering=0) as f:
        assert mapped.hash_mapped(f.fileno()) is None


def test_verifying_reader_reports_a_change_while_mapped_as_a_mismatch(leased_dir, small_windows, monkeypatch):
    path = leased_dir / "blob"
    data = os.urandom(4 * small_windows)
    path.write_bytes(data)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with VerifyingReader(open(path, "rb", buffering=0), digest, len(data)) as r:
        assert r.drain(ahead=False) == len(data) and r.verified
    monkeypatch.setattr(mapped, "mmap", _MmapThatTruncates(path))
    with pytest.raises(DigestMismatchError) as info:
        with VerifyingReader(open(path, "rb", buffering=0), digest, len(data)) as r:
            r.drain(ahead=False)
    assert "changed while it was read" in info.value.actual


def test_import_of_a_file_truncated_meanwhile_fails_cleanly_and_stores_nothing(leased_dir, small_windows,
                                                                               monkeypatch):
    source = leased_dir / "model.bin"
    source.write_bytes(os.urandom(4 * small_windows))
    store = LayoutStore(leased_dir / "store")
    monkeypatch.setattr(mapped, "mmap", _MmapThatTruncates(source))
    with pytest.raises(InputPathError) as info:
        store.import_file(source, ahead=False)
    assert info.value.kind == "input-path" and "changed while it was being read" in info.value.message
    assert files_under(store.root / "blobs") == [] and files_under(store.root / "ingest") == []


def files_under(directory):
    return [p for p in directory.rglob("*") if p.is_file()] if directory.exists() else []


def test_with_a_core_idle_the_file_is_read_ahead_not_mapped(leased_dir, monkeypatch):
    """One file on a machine with an idle core: reading on a helper thread beats the map (one core)."""
    path = leased_dir / "f"
    data = os.urandom(10_000)
    path.write_bytes(data)
    monkeypatch.setattr(mapped, "mmap", None)  # any use of the map fails
    with open(path, "rb", buffering=0) as f:
        assert hash_whole_file(f, ahead=True) == ("sha256:" + hashlib.sha256(data).hexdigest(), len(data))
