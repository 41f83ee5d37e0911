"""Several processes writing one store at once: no tag is lost, no blob is torn."""

from __future__ import annotations

import multiprocessing
import os

from store_helpers import put_model
from mdl.store import LayoutStore
from mdl.reference import parse_reference

PROCESSES = 4
TAGS_EACH = 15


def _tagger(root: str, digest: str, worker: int) -> None:
    store = LayoutStore(root)
    with store.writing():
        for i in range(TAGS_EACH):
            store.add_tag(digest, parse_reference(f"ai/model:w{worker}-{i}"))


def _writer(root: str, payload: bytes) -> str:
    return LayoutStore(root).write_blob(payload)[0]


def test_concurrent_tagging_loses_no_tag(store):
    m = put_model(store, b"weights")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_tagger, args=(str(store.root), m.digest, w)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    expected = {f"docker.io/ai/model:w{w}-{i}" for w in range(PROCESSES) for i in range(TAGS_EACH)}
    tags = store.tags_of(m.digest)
    assert len(tags) == len(expected) and set(tags) == expected
    assert [p.name for p in store.root.iterdir() if p.name.endswith(".tmp")] == []


def test_concurrent_writes_of_the_same_blob(store):
    payload = os.urandom(2 << 20)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(PROCESSES) as pool:
        digests = pool.starmap(_writer, [(str(store.root), payload)] * (PROCESSES * 2))
    assert len(set(digests)) == 1
    assert store.read_blob(digests[0], len(payload), limit=len(payload)) == payload
    assert list((store.root / "ingest").iterdir()) == []
