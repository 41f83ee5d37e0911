"""What a killed writer leaves is removed by the next writer, not only by `prune`; what a live writer
holds, and a partial download the next pull can resume, is kept."""

from __future__ import annotations

import hashlib

from mdl.store import LayoutStore
from mdl.content.descriptor import Descriptor
from mdl.spec import mediatypes as mt


def _desc(data: bytes) -> Descriptor:
    return Descriptor(mt.GGUF, "sha256:" + hashlib.sha256(data).hexdigest(), len(data))


def _names(store: LayoutStore) -> set[str]:
    return {p.name for p in (store.root / "ingest").iterdir()}


def test_a_writer_removes_dead_one_shot_files_and_dead_partials_of_published_blobs(store):
    published = _desc(b"published")
    store.write_blob(b"published")
    unpublished = _desc(b"not yet published")
    ingest = store.root / "ingest"
    (ingest / ("0f" * 16 + ".part")).write_bytes(b"a killed package's copy")
    (ingest / f"sha256-{published.digest[7:]}.part").write_bytes(b"published")  # killed before the unlink
    (ingest / f"sha256-{unpublished.digest[7:]}.part").write_bytes(b"not yet")  # a download to resume
    (ingest / "notes.txt").write_text("not ours")  # an unknown name: left alone
    live = store.ingest()  # a live one-shot writer: flock'ed
    live.write(b"still writing")
    with store.resumable_ingest(_desc(b"live partial")) as held:
        held.write(b"live")
        with store.writing():
            assert _names(store) == {f"sha256-{unpublished.digest[7:]}.part", "notes.txt", live.path.name,
                                     held.path.name}
    assert store.read_blob(live.commit()) == b"still writing"  # the live writer was not disturbed
    with store.resumable_ingest(unpublished) as w:
        assert w.offset == len(b"not yet")  # the kept partial is resumed


def test_an_index_update_removes_a_killed_rewrite_and_layout_creation_too(store):
    store.write_blob(b"x")
    (store.root / ".index.json.0123456789ab.tmp").write_text("{")
    (store.root / ".oci-layout.0123456789ab.tmp").write_text("{")
    digest, _ = store.write_blob(b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",'
                                 b' "manifests": []}')
    store.add_untagged(digest)
    assert sorted(p.name for p in store.root.glob(".*.tmp")) == []
    fresh = LayoutStore(store.root.parent / "fresh")
    fresh.root.mkdir()
    (fresh.root / ".oci-layout.0123456789ab.tmp").write_text("{")  # killed while creating the store
    fresh.write_blob(b"y")
    assert list(fresh.root.glob(".*.tmp")) == [] and (fresh.root / "oci-layout").is_file()
