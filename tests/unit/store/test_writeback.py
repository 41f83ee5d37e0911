"""Large blobs are queued for the disk while they are written (`store.locks.Writeback`), so their fsync
waits for the last step only: the kernel call works, and the writers queue each step once, in order,
from where the file started (a resumed download queues from its resume offset)."""

from __future__ import annotations

import os
import sys

import pytest

from mdl.content.descriptor import Descriptor
from mdl.content.digest import sha256_bytes
from mdl.store import LayoutStore, locks
from mdl.store.locks import WRITEBACK_STEP

MIB = 1 << 20


@pytest.fixture
def queued(monkeypatch) -> list[tuple[int, int]]:
    """The (offset, length) ranges the writers ask the kernel to write back, in order."""
    calls: list[tuple[int, int]] = []
    real = locks.start_writeback

    def record(fd: int, offset: int, length: int) -> bool:
        calls.append((offset, length))
        return real(fd, offset, length)

    monkeypatch.setattr(locks, "start_writeback", record)
    return calls


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_the_kernel_accepts_the_request(tmp_path):
    path = tmp_path / "f"
    with open(path, "wb") as f:
        f.write(os.urandom(2 * MIB))
        f.flush()
        assert locks.start_writeback(f.fileno(), 0, 2 * MIB) is True
    assert locks.start_writeback(-1, 0, MIB) is False  # a refusal (EBADF) is an answer, not an exception


def test_a_blob_is_queued_in_steps_as_it_is_written(tmp_path, queued):
    store = LayoutStore(tmp_path / "home")
    store.ensure_layout()
    data = os.urandom(2 * WRITEBACK_STEP + 3 * MIB)
    with store.ingest(sha256_bytes(data), len(data)) as w:
        for i in range(0, len(data), MIB):
            w.write(data[i:i + MIB])
        w.commit()
    assert queued == [(0, WRITEBACK_STEP), (WRITEBACK_STEP, WRITEBACK_STEP)]  # the tail: the fsync's
    assert store.read_blob(sha256_bytes(data), len(data), limit=len(data)) == data


def test_a_small_blob_is_left_to_its_fsync(tmp_path, queued):
    store = LayoutStore(tmp_path / "home")
    store.write_blob(b"{}")
    assert queued == []


def test_a_resumed_download_queues_from_where_it_resumes(tmp_path, queued):
    store = LayoutStore(tmp_path / "home")
    store.ensure_layout()
    data = os.urandom(WRITEBACK_STEP + 5 * MIB)
    digest = sha256_bytes(data)
    with store.resumable_ingest(Descriptor("application/octet-stream", digest, len(data))) as w:
        w.write(data[:5 * MIB])  # interrupted here
    assert queued == []
    with store.resumable_ingest(Descriptor("application/octet-stream", digest, len(data))) as w:
        assert w.offset == 5 * MIB
        for i in range(w.offset, len(data), MIB):
            w.write(data[i:i + MIB])
        w.commit()
    assert queued == [(5 * MIB, WRITEBACK_STEP)]
    assert store.read_blob(digest, len(data), limit=len(data)) == data
