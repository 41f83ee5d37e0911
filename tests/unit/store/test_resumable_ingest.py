"""LayoutStore.resumable_ingest: a download that survives interruption, verified as a whole."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading

import pytest

from mdl.content import Descriptor
from mdl.store import LayoutStore
from mdl.errors import DigestMismatchError
from mdl.spec import mediatypes as mt

DATA = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB


def desc_of(data: bytes) -> Descriptor:
    return Descriptor(mt.GGUF, f"sha256:{hashlib.sha256(data).hexdigest()}", len(data))


def partials(store: LayoutStore) -> list[str]:
    return sorted(p.name for p in (store.root / "ingest").iterdir())


def test_interrupted_write_keeps_the_partial_and_resumes(store):
    d = desc_of(DATA)
    with pytest.raises(RuntimeError):
        with store.resumable_ingest(d) as w:
            assert w.offset == 0 and not w.exists
            w.write(DATA[:300_000])
            raise RuntimeError("connection lost")
    assert partials(store) == [f"sha256-{d.digest[7:]}.part"]
    assert not store.has_blob(d.digest)

    with store.resumable_ingest(d) as w:
        assert w.offset == 300_000  # a source that honours the offset sends the rest
        w.write(DATA[w.offset:])
        assert w.commit() == d.digest
    assert store.read_blob(d.digest, limit=len(DATA)) == DATA
    assert partials(store) == []
    assert os.stat(store.blob_path(d.digest)).st_mode & 0o777 == 0o444


def test_restart_when_the_source_starts_over(store):
    d = desc_of(DATA)
    with store.resumable_ingest(d) as w:
        w.write(DATA[:1000])
    with store.resumable_ingest(d) as w:
        assert w.offset == 1000
        w.restart()  # the source answered 200, not 206
        assert w.offset == 0
        w.write(DATA)
        w.commit()
    assert store.read_blob(d.digest, limit=len(DATA)) == DATA


def test_corrupt_partial_is_refused_then_a_clean_retry_works(store):
    d = desc_of(DATA)
    with store.resumable_ingest(d) as w:
        w.write(b"X" * 1000)  # not the blob's first bytes
    with store.resumable_ingest(d) as w:
        w.write(DATA[w.offset:])
        with pytest.raises(DigestMismatchError) as e:
            w.commit()
    assert d.digest in e.value.message
    assert partials(store) == [] and not store.has_blob(d.digest)
    with store.resumable_ingest(d) as w:
        assert w.offset == 0
        w.write(DATA)
        w.commit()
    assert store.has_blob(d.digest)


def test_longer_than_the_descriptor_is_refused(store):
    d = desc_of(b"abc")
    with store.resumable_ingest(d) as w:
        with pytest.raises(DigestMismatchError):
            w.write(b"abcd")
    assert partials(store) == [] and not store.has_blob(d.digest)


def test_existing_blob_is_reported(store):
    digest, _ = store.write_blob(DATA)
    with store.resumable_ingest(desc_of(DATA)) as w:
        assert w.exists
        assert w.commit() == digest


def test_prune_removes_an_abandoned_partial_but_not_a_live_one(store):
    d = desc_of(DATA)
    with store.resumable_ingest(d) as w:
        w.write(DATA[:10])
        assert store.prune().stale_ingest == []  # flock'ed by us
    assert store.prune().stale_ingest == [f"sha256-{d.digest[7:]}.part"]


def test_two_threads_ingesting_one_blob_end_with_one_blob(store):
    d = desc_of(DATA)
    outcomes = []
    first_in = threading.Event()

    def worker(wait: bool):
        if wait:
            first_in.wait()
        with store.resumable_ingest(d) as w:
            first_in.set()
            if w.exists:
                outcomes.append("exists")
                return
            for i in range(0, len(DATA), 65536):
                w.write(DATA[i:i + 65536])
            w.commit()
            outcomes.append("sent")

    threads = [threading.Thread(target=worker, args=(i > 0,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["exists", "exists", "sent"]
    assert store.read_blob(d.digest, limit=len(DATA)) == DATA
    assert partials(store) == []


def _ingest_in_process(root: str, data: bytes) -> str:
    store = LayoutStore(root)
    with store.resumable_ingest(desc_of(data)) as w:
        if w.exists:
            return "exists"
        w.write(data[w.offset:])
        w.commit()
        return "sent"


def test_two_processes_ingesting_one_blob_end_with_one_blob(store):
    store.ensure_layout()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        results = pool.starmap(_ingest_in_process, [(str(store.root), DATA)] * 2)
    assert sorted(results) == ["exists", "sent"]
    assert store.read_blob(desc_of(DATA).digest, limit=len(DATA)) == DATA
    assert partials(store) == []
