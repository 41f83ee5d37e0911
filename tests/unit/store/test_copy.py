"""copy_model between local stores: parallel, idempotent, resumable, verified."""

from __future__ import annotations

import io
import json

import pytest
import requests

from mdl.content import Descriptor, Manifest
from mdl.store import LayoutStore
from mdl.content.copy import CopyResult, copy_model
from mdl.retry import is_transient
from mdl.store.sides import StoreSource, StoreTarget
from mdl.content.transfer import EXISTS, SENT
from mdl.errors import DigestMismatchError, MdlError
from mdl.reference import parse_reference
from mdl.spec import mediatypes as mt
from store_helpers import put_model

LAYERS = [bytes([i]) * (300_000 + i) for i in range(5)]


class Recorder:
    def __init__(self):
        self.events = []

    def start(self, desc, what):
        self.events.append(("start", desc.digest, what))

    def advance(self, desc, n):
        self.events.append(("advance", desc.digest, n))

    def done(self, desc, outcome):
        self.events.append(("done", desc.digest, outcome))


@pytest.fixture
def source_model(store):
    m = put_model(store, *LAYERS)
    store.add_tag(m.digest, parse_reference("ai/src"))
    return m


def index_of(store: LayoutStore) -> list:
    return json.loads((store.root / "index.json").read_bytes())["manifests"]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_store_to_store(store, source_model, tmp_path, concurrency):
    dest = LayoutStore(tmp_path / f"dest{concurrency}")
    src = StoreSource(store)
    m = src.fetch_manifest("ai/src")
    assert m == source_model
    rec = Recorder()
    result = copy_model(src, StoreTarget(dest), m, ["ai/copy:v1"], concurrency=concurrency, progress=rec)
    assert isinstance(result, CopyResult) and result.digest == m.digest
    assert result.sent == sum(d.size for d in m.blob_descriptors())
    assert set(result.blobs.values()) == {SENT} and len(result.blobs) == 6
    assert dest.resolve("ai/copy:v1") == m.digest
    for d in m.blob_descriptors():
        assert dest.read_blob(d.digest, d.size) == store.read_blob(d.digest, d.size)
    assert [e for e in rec.events if e[0] == "start"][-1] == ("start", m.digest, "manifest")
    assert {e[2] for e in rec.events if e[0] == "start"} == {"config", "layer", "manifest"}

    again = copy_model(src, StoreTarget(dest), m, ["ai/copy:v1"], concurrency=concurrency)
    assert set(again.blobs.values()) == {EXISTS} and again.sent == 0
    assert sorted(p.name for p in (dest.root / "ingest").iterdir()) == []


def test_concurrency_does_not_change_the_result(store, source_model, tmp_path):
    results = []
    for c in (1, 4):
        dest = LayoutStore(tmp_path / f"d{c}")
        copy_model(StoreSource(store), StoreTarget(dest), source_model, ["ai/x"], concurrency=c)
        results.append((index_of(dest), sorted(p.name for p in (dest.root / "blobs" / "sha256").iterdir())))
    assert results[0] == results[1]


def test_untagged_copy(store, source_model, tmp_path):
    dest = LayoutStore(tmp_path / "dest")
    copy_model(StoreSource(store), StoreTarget(dest), source_model, [])
    [entry] = index_of(dest)
    assert entry["digest"] == source_model.digest and "annotations" not in entry


def _reset():
    raise requests.exceptions.ConnectionError("connection reset by peer")


class LostConnection(MdlError):
    """What the registry side raises for a connection lost mid-body: an mdl error `from` the cause."""


def _wrapped():
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except OSError as e:
        raise LostConnection("connection lost while reading blob") from e


class Flaky:
    """A source whose stream breaks once, mid-blob, after `after` bytes; honours offsets (or not)."""

    def __init__(self, inner, after: int, honour_offset: bool = True, error=None):
        self.inner, self.after, self.honour = inner, after, honour_offset
        self.error = error or _reset
        self.broken = False
        self.opens = []

    def open_blob(self, desc, offset=0):
        self.opens.append((desc.digest, offset))
        f, start = self.inner.open_blob(desc, offset if self.honour else 0)
        if self.broken or desc.size <= self.after:
            return f, start
        self.broken = True
        outer = self

        class Breaking(io.RawIOBase):
            n = 0

            def readable(self):
                return True

            def readinto(self, b):
                if self.n >= outer.after:
                    outer.error()
                k = f.readinto(memoryview(b)[:outer.after - self.n])
                self.n += k
                return k

            def close(self):
                f.close()
                super().close()

        return Breaking(), start


@pytest.mark.parametrize("honour, error", [(True, None), (False, None), (True, _wrapped)])
def test_stream_that_breaks_once_is_resumed(store, source_model, tmp_path, honour, error):
    dest = LayoutStore(tmp_path / "dest")
    flaky = Flaky(StoreSource(store), after=100_000, honour_offset=honour, error=error)
    result = copy_model(flaky, StoreTarget(dest, backoff=0), source_model, ["ai/x"], concurrency=1)
    assert flaky.broken
    reopened = [o for o in flaky.opens if o[1] > 0]
    assert reopened == [(reopened[0][0], 100_000)]
    assert result.blobs and set(result.blobs.values()) == {SENT}
    assert dest.resolve("ai/x") == source_model.digest
    for d in source_model.blob_descriptors():
        assert dest.read_blob(d.digest, d.size, limit=1 << 22) == store.read_blob(d.digest, d.size, limit=1 << 22)


def test_a_stream_that_keeps_breaking_fails(store, source_model, tmp_path):
    dest = LayoutStore(tmp_path / "dest")

    class AlwaysBreaks(Flaky):
        def open_blob(self, desc, offset=0):
            self.broken = False
            return super().open_blob(desc, offset)

    with pytest.raises(requests.exceptions.ConnectionError):
        copy_model(AlwaysBreaks(StoreSource(store), after=10), StoreTarget(dest, backoff=0), source_model, ["ai/x"],
                   concurrency=1)
    assert not dest.has_blob(source_model.digest)


def test_corrupt_source_fails_and_publishes_nothing(store, source_model, tmp_path):
    dest = LayoutStore(tmp_path / "dest")

    class Lying:
        def open_blob(self, desc, offset=0):
            return io.BytesIO(b"\xee" * desc.size), 0

    with pytest.raises(DigestMismatchError) as e:
        copy_model(Lying(), StoreTarget(dest), source_model, ["ai/x"], concurrency=4)
    assert e.value.expected in {d.digest for d in source_model.blob_descriptors()}
    assert list((dest.root / "blobs" / "sha256").iterdir()) == []
    assert dest.entries() == []


def test_bad_partial_from_an_earlier_run_is_redone(store, source_model, tmp_path):
    dest = LayoutStore(tmp_path / "dest")
    layer = source_model.layers[0]
    with dest.resumable_ingest(layer) as w:
        w.write(b"junk" * 100)
    copy_model(StoreSource(store), StoreTarget(dest), source_model, ["ai/x"])
    assert dest.read_blob(layer.digest, layer.size) == LAYERS[0]


def test_first_failure_propagates_unchanged(store, source_model, tmp_path):
    dest = LayoutStore(tmp_path / "dest")

    class Boom(Exception):
        pass

    class Failing:
        def open_blob(self, desc, offset=0):
            if desc.digest == source_model.layers[2].digest:
                raise Boom("no")
            return StoreSource(store).open_blob(desc, offset)

    with pytest.raises(Boom):
        copy_model(Failing(), StoreTarget(dest), source_model, ["ai/x"], concurrency=4)
    assert dest.entries() == []


def test_nested_manifest_layer_is_copied_with_its_blobs(store, tmp_path):
    inner = put_model(store, b"inner layer")
    outer_cfg, n = store.write_blob(b'{"config":{}}')
    outer = Manifest.build(Descriptor(mt.DOCKER_CONFIG_V01, outer_cfg, n), [inner.descriptor()])
    store.put_manifest(outer)
    dest = LayoutStore(tmp_path / "dest")
    copy_model(StoreSource(store), StoreTarget(dest), outer, ["ai/outer"])
    for d in [*inner.blob_descriptors(), inner.descriptor(), outer.descriptor()]:
        assert dest.has_blob(d.digest)


def test_what_counts_as_a_broken_stream():
    assert is_transient(requests.exceptions.ChunkedEncodingError("truncated"))
    assert is_transient(ConnectionResetError())
    assert not is_transient(requests.exceptions.HTTPError("404"))
    assert not is_transient(DigestMismatchError("blob", "sha256:" + "0" * 64, "x"))
    try:
        _wrapped()
    except LostConnection as e:
        assert is_transient(e)


def test_progress_gets_one_start_and_one_done_per_blob(store, source_model, tmp_path):
    rec = Recorder()
    copy_model(StoreSource(store), StoreTarget(LayoutStore(tmp_path / "d")), source_model, ["ai/x"], progress=rec)
    starts = [e[1] for e in rec.events if e[0] == "start"]
    dones = [e[1] for e in rec.events if e[0] == "done"]
    assert sorted(starts) == sorted(dones) and len(starts) == len(set(starts)) == 7
