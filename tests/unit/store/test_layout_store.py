"""The local store: blobs, ingest, import, index, resolution, removal, prune."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from store_helpers import put_model
from mdl.content import Descriptor, Manifest
from mdl.store import BlobMissingError, LayoutStore
from mdl.store import gc as gc_mod, ingest as ingest_mod
from mdl.store import BlobTooLargeError
from mdl.errors import (
    AmbiguousReferenceError,
    ConflictError,
    DigestMismatchError,
    DiskFullError,
    InputPathError,
    ModelNotFoundError,
    ReferenceFormatError,
    StoreError,
)
from mdl.reference import parse_reference
from mdl.spec import mediatypes as mt


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_names(store: LayoutStore) -> set[str]:
    d = store.root / "blobs" / "sha256"
    return {p.name for p in d.iterdir()} if d.exists() else set()


def ingest_names(store: LayoutStore) -> list[str]:
    d = store.root / "ingest"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def ref(text: str):
    return parse_reference(text)


# -- layout -------------------------------------------------------------------------------------------


def test_layout_is_created_lazily_and_is_an_oci_layout(store):
    assert not store.root.exists()
    assert store.entries() == [] and store.models() == []
    assert not store.root.exists()  # reads create nothing
    store.write_blob(b"x")
    assert json.loads((store.root / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((store.root / "index.json").read_bytes())
    assert index == {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
    assert (store.root / "blobs" / "sha256").is_dir() and (store.root / "ingest").is_dir()


def test_foreign_layout_version_is_refused(store):
    store.root.mkdir(parents=True)
    (store.root / "oci-layout").write_text('{"imageLayoutVersion": "9.9.9"}')
    with pytest.raises(StoreError, match="9.9.9"):
        store.write_blob(b"x")


def test_default_root(tmp_path):
    assert LayoutStore.default_root({"MDL_HOME": str(tmp_path / "m"), "XDG_DATA_HOME": "/x"}) == tmp_path / "m"
    assert LayoutStore.default_root({"XDG_DATA_HOME": "/data", "HOME": "/h"}) == Path("/data/mdl")
    assert LayoutStore.default_root({"XDG_DATA_HOME": "relative", "HOME": "/h"}) == Path("/h/.local/share/mdl")
    assert LayoutStore.default_root({"MDL_HOME": "", "HOME": "/h"}) == Path("/h/.local/share/mdl")


# -- ingest ---------------------------------------------------------------------------------------------


def test_ingest_commit_publishes_read_only_blob(store):
    data = os.urandom(3 * (1 << 20) + 5)
    with store.ingest(sha(data), len(data)) as w:
        for i in range(0, len(data), 1 << 20):
            w.write(data[i:i + (1 << 20)])
        assert ingest_names(store) != []
        digest = w.commit()
    assert digest == w.digest == sha(data) and w.size == len(data)
    path = store.blob_path(digest)
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert ingest_names(store) == []
    assert store.has_blob(digest) and store.blob_size(digest) == len(data)


def test_ingest_without_commit_leaves_nothing(store):
    with store.ingest() as w:
        w.write(b"partial")
    assert ingest_names(store) == [] and blob_names(store) == set()
    with pytest.raises(RuntimeError):
        with store.ingest() as w:
            w.write(b"partial")
            raise RuntimeError("interrupted")
    assert ingest_names(store) == [] and blob_names(store) == set()


def test_ingest_digest_mismatch_publishes_nothing(store):
    expected = sha(b"the right bytes")
    with pytest.raises(DigestMismatchError) as info:
        with store.ingest(expected) as w:
            w.write(b"the wrong bytes")
            w.commit()
    assert info.value.expected == expected and info.value.actual == sha(b"the wrong bytes")
    assert blob_names(store) == set() and ingest_names(store) == []


def test_ingest_size_mismatch_publishes_nothing(store):
    with pytest.raises(DigestMismatchError) as info:
        with store.ingest(None, 3) as w:
            w.write(b"four")
    assert (info.value.expected_size, info.value.actual_size) == (3, 4)
    with pytest.raises(DigestMismatchError) as info:
        with store.ingest(None, 10) as w:
            w.write(b"short")
            w.commit()
    assert (info.value.expected_size, info.value.actual_size) == (10, 5)
    assert blob_names(store) == set() and ingest_names(store) == []


def test_write_blob_is_idempotent_and_checks_expectation(store):
    d1 = store.write_blob(b"hello")
    inode = store.blob_path(d1[0]).stat().st_ino
    assert store.write_blob(b"hello", sha(b"hello")) == d1 == (sha(b"hello"), 5)
    assert store.blob_path(d1[0]).stat().st_ino == inode  # the existing blob is kept
    with pytest.raises(DigestMismatchError):
        store.write_blob(b"other", sha(b"hello"))
    assert blob_names(store) == {d1[0][7:]}


# -- import ---------------------------------------------------------------------------------------------


def test_import_file_links_on_the_same_file_system(store, tmp_path):
    src = tmp_path / "model.gguf"
    data = os.urandom(100_000)
    src.write_bytes(data)
    src.chmod(0o640)
    digest, size = store.import_file(src)
    assert (digest, size) == (sha(data), len(data))
    blob = store.blob_path(digest)
    assert blob.stat().st_ino == src.stat().st_ino
    assert src.stat().st_nlink == 2
    assert stat.S_IMODE(src.stat().st_mode) == 0o640  # the user's inode is never chmod'ed
    assert ingest_names(store) == []


def test_import_file_copy_path(store, tmp_path):
    src = tmp_path / "model.gguf"
    data = os.urandom((1 << 20) * 2 + 3)
    src.write_bytes(data)
    digest, size = store.import_file(src, link=False)
    assert (digest, size) == (sha(data), len(data))
    blob = store.blob_path(digest)
    assert blob.stat().st_ino != src.stat().st_ino and blob.stat().st_nlink == 1
    assert stat.S_IMODE(blob.stat().st_mode) == 0o444
    assert blob.read_bytes() == data
    assert ingest_names(store) == []


def test_import_file_copies_when_link_fails(store, tmp_path, monkeypatch):
    src = tmp_path / "model.gguf"
    src.write_bytes(b"weights" * 1000)

    def no_link(*a, **kw):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    digest, size = store.import_file(src)
    assert (digest, size) == (sha(b"weights" * 1000), 7000)
    assert store.blob_path(digest).stat().st_nlink == 1
    assert stat.S_IMODE(store.blob_path(digest).stat().st_mode) == 0o444
    assert ingest_names(store) == []


def test_import_file_keeps_an_existing_blob(store, tmp_path):
    data = b"same content"
    digest, _ = store.write_blob(data)
    inode = store.blob_path(digest).stat().st_ino
    src = tmp_path / "f"
    src.write_bytes(data)
    assert store.import_file(src) == (digest, len(data))
    assert store.blob_path(digest).stat().st_ino == inode
    assert src.stat().st_nlink == 1  # the discarded ingest link is gone
    assert ingest_names(store) == []


def test_import_file_refuses_missing_and_directories(store, tmp_path):
    with pytest.raises(InputPathError) as info:
        store.import_file(tmp_path / "nope")
    assert info.value.path == str(tmp_path / "nope") and "no such file" in info.value.problem
    with pytest.raises(InputPathError) as info:
        store.import_file(tmp_path)
    assert "not a regular file" in info.value.problem


# -- verified reads ---------------------------------------------------------------------------------------


def flip_byte(path: Path, offset: int) -> None:
    path.chmod(0o644)
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def test_verifying_reader_detects_a_flipped_byte(store):
    data = os.urandom(300_000)
    digest, size = store.write_blob(data)
    with store.open_blob(digest, size) as r:
        assert r.read() == data
        assert r.verified
    flip_byte(store.blob_path(digest), 150_000)
    with pytest.raises(DigestMismatchError) as info:
        with store.open_blob(digest, size) as r:
            while r.read(65536):
                pass
    assert info.value.expected == digest and info.value.actual != digest
    with pytest.raises(DigestMismatchError):
        store.open_blob(digest).read()  # size unknown: checked at EOF
    with pytest.raises(DigestMismatchError):
        store.read_blob(digest)


def test_verifying_reader_detects_wrong_size(store):
    digest, size = store.write_blob(b"0123456789")
    with pytest.raises(DigestMismatchError) as info:
        store.open_blob(digest, size + 1).read()
    assert (info.value.expected_size, info.value.actual_size) == (11, 10)
    path = store.blob_path(digest)
    path.chmod(0o644)
    with open(path, "ab") as f:
        f.write(b"x")
    with pytest.raises(DigestMismatchError):
        store.open_blob(digest).read()


def test_missing_blob_and_read_limit(store):
    with pytest.raises(BlobMissingError) as info:
        store.open_blob(sha(b"absent"))
    assert info.value.digest == sha(b"absent")
    digest, size = store.write_blob(b"x" * 100)
    assert store.read_blob(digest, size, limit=100) == b"x" * 100
    with pytest.raises(BlobTooLargeError):
        store.read_blob(digest, limit=99)
    with pytest.raises(BlobTooLargeError):
        store.read_blob(digest, size, limit=99)


# -- manifests and tags -------------------------------------------------------------------------------------


def test_put_manifest_requires_its_blobs(store):
    cfg = store.write_blob(b"{}")
    m = Manifest.build(Descriptor(mt.DOCKER_CONFIG_V01, *cfg), [Descriptor(mt.GGUF, sha(b"absent"), 6)])
    with pytest.raises(StoreError, match=sha(b"absent")):
        store.put_manifest(m)
    assert not store.has_blob(m.digest)


def test_manifest_read_is_verified(store, model_factory):
    m = model_factory(b"weights")
    assert store.manifest(m.digest) == m
    flip_byte(store.blob_path(m.digest), 10)
    with pytest.raises(DigestMismatchError):
        store.manifest(m.digest)


def test_tag_move_and_untag(store, model_factory):
    a, b = model_factory(b"a"), model_factory(b"b")
    assert store.add_tag(a.digest, ref("tiny")) is None
    assert store.add_tag(a.digest, ref("ghcr.io/org/tiny:Q4")) is None
    assert store.tags_of(a.digest) == ["docker.io/ai/tiny:latest", "ghcr.io/org/tiny:Q4"]
    assert store.add_tag(a.digest, ref("tiny")) == a.digest  # no change
    # moving a tag, like Docker: the model it left keeps its other tag
    assert store.add_tag(b.digest, ref("ai/tiny:latest")) == a.digest
    assert store.tags_of(a.digest) == ["ghcr.io/org/tiny:Q4"]
    assert store.tags_of(b.digest) == ["docker.io/ai/tiny:latest"]
    # moving its last tag away keeps the model, untagged
    assert store.add_tag(b.digest, ref("ghcr.io/org/tiny:Q4")) == a.digest
    assert {r.digest: r.tags for r in store.models()} == {
        a.digest: [], b.digest: ["docker.io/ai/tiny:latest", "ghcr.io/org/tiny:Q4"]}
    entries = store.entries()
    assert [(e.digest, e.ref_name) for e in entries if e.digest == a.digest] == [(a.digest, None)]
    # untag
    res = store.remove("tiny")
    assert res.untagged == ["docker.io/ai/tiny:latest"] and res.removed_models == []
    assert store.tags_of(b.digest) == ["ghcr.io/org/tiny:Q4"]


def test_add_tag_refusals(store, model_factory):
    m = model_factory(b"a")
    with pytest.raises(ReferenceFormatError):
        store.add_tag(m.digest, ref(f"ai/x@{m.digest}"))
    with pytest.raises(BlobMissingError):
        store.add_tag(sha(b"no manifest"), ref("x"))
    assert store.entries() == []
    # name:tag@digest stores the tag when the digest is the model's
    store.add_tag(m.digest, ref(f"ai/x:v1@{m.digest}"))
    assert store.tags_of(m.digest) == ["docker.io/ai/x:v1"]


def test_untagged_then_tagged(store, model_factory):
    m = model_factory(b"a")
    store.add_untagged(m.digest)
    store.add_untagged(m.digest)
    assert [(r.digest, r.tags) for r in store.models()] == [(m.digest, [])]
    store.add_tag(m.digest, ref("x"))
    assert [(e.digest, e.ref_name) for e in store.entries()] == [(m.digest, "docker.io/ai/x:latest")]


def test_models_sizes_and_entries(store, model_factory):
    m = model_factory(b"w" * 1000, b"l" * 10, config=b"{}")
    store.add_tag(m.digest, ref("x"))
    [rec] = store.models()
    assert rec.size == len(m.raw) + 2 + 1000 + 10
    assert rec.short_id == m.digest[7:19]
    [e] = store.entries()
    assert (e.digest, e.size, e.media_type, e.ref_name) == (m.digest, len(m.raw), mt.OCI_MANIFEST,
                                                            "docker.io/ai/x:latest")
    assert e.annotations == {mt.ANNOTATION_REF_NAME: "docker.io/ai/x:latest"}


# -- resolution ----------------------------------------------------------------------------------------


def test_resolve(store, model_factory):
    m = model_factory(b"a")
    store.add_tag(m.digest, ref("tiny:v1"))
    hexd = m.digest[7:]
    for text in ["tiny:v1", "ai/tiny:v1", "docker.io/ai/tiny:v1", "TINY:v1", hexd[:12], hexd[:20].upper(), hexd,
                 m.digest, f"ai/tiny@{m.digest}", f"ghcr.io/other/name@{m.digest}"]:
        assert store.resolve(text) == m.digest, text
    for text in ["tiny", "tiny:V1", "ghcr.io/ai/tiny:v1", "0" * 12, "0" * 64, "sha256:" + "0" * 64,
                 "ai/tiny@sha256:" + "0" * 64]:
        with pytest.raises(ModelNotFoundError) as info:
            store.resolve(text)
        assert info.value.reference == text
    with pytest.raises(ReferenceFormatError):
        store.resolve("bad!name")


def test_resolve_hex_name_falls_back_to_tag(store, model_factory):
    m = model_factory(b"a")
    name = "cafe" * 3 if not m.digest[7:].startswith("cafe" * 3) else "beef" * 3
    store.add_tag(m.digest, ref(name))
    assert store.resolve(name) == m.digest


def test_resolve_untagged_manifest_by_digest_reference(store, model_factory):
    m = model_factory(b"a")  # stored, never tagged
    assert store.resolve(f"ai/whatever@{m.digest}") == m.digest
    with pytest.raises(ModelNotFoundError):
        store.resolve(m.digest[7:19])  # an ID names a model in the index


def test_resolve_ambiguous_prefix(store):
    # Two IDs that share 12 hex characters cannot be made by hashing; write such an index directly.
    prefix = "abcdef012345"
    d1, d2 = "sha256:" + prefix + "1" * 52, "sha256:" + prefix + "2" * 52
    store.write_blob(b"x")  # creates the layout
    entries = [{"mediaType": mt.OCI_MANIFEST, "digest": d, "size": 1} for d in (d1, d2)]
    (store.root / "index.json").write_text(json.dumps(
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}))
    with pytest.raises(AmbiguousReferenceError) as info:
        store.resolve(prefix)
    assert info.value.matches == [d1, d2] and info.value.reference == prefix
    assert store.resolve(prefix + "1") == d1
    assert store.resolve(d2) == d2


def test_corrupt_index_is_a_store_error_with_hint(store, model_factory):
    m = model_factory(b"x")
    (store.root / "index.json").write_text("{not json")
    with pytest.raises(StoreError) as info:
        store.entries()
    assert "index.json" in info.value.message and info.value.hint
    (store.root / "index.json").write_text('{"schemaVersion": 2, "manifests": [{"digest": "sha256:1"}]}')
    with pytest.raises(StoreError, match=r"\$\.manifests\[0\]"):
        store.resolve("x")
    with pytest.raises(StoreError):
        store.add_tag(m.digest, ref("x"))


# -- removal ----------------------------------------------------------------------------------------


def test_remove_by_tag_keeps_shared_blobs(store):
    shared, only_a, only_b = b"shared weights" * 100, b"a license", b"b license"
    a = put_model(store, shared, only_a, config=b'{"a":1}')
    b = put_model(store, shared, only_b, config=b'{"b":1}')
    store.add_tag(a.digest, ref("a"))
    store.add_tag(b.digest, ref("b"))
    res = store.remove("a")
    assert res.untagged == ["docker.io/ai/a:latest"] and res.removed_models == [a.digest]
    assert set(res.deleted_blobs) == {a.digest, sha(b'{"a":1}'), sha(only_a)}
    assert res.freed_bytes == len(a.raw) + 7 + len(only_a)
    assert not res.gc_deferred
    assert store.has_blob(sha(shared)) and store.has_blob(sha(only_b))
    assert [r.digest for r in store.models()] == [b.digest]
    with store.open_blob(sha(shared)) as r:
        assert r.read() == shared


def test_remove_by_id_with_two_tags_needs_force(store, model_factory):
    m = model_factory(b"a")
    store.add_tag(m.digest, ref("x:1"))
    store.add_tag(m.digest, ref("x:2"))
    index_before = (store.root / "index.json").read_bytes()
    with pytest.raises(ConflictError) as info:
        store.remove(m.digest[7:19])
    assert "docker.io/ai/x:1, docker.io/ai/x:2" in info.value.message
    assert m.digest[7:19] in info.value.message and "--force" in info.value.hint
    assert (store.root / "index.json").read_bytes() == index_before
    res = store.remove(m.digest[7:19], force=True)
    assert res.untagged == ["docker.io/ai/x:1", "docker.io/ai/x:2"] and res.removed_models == [m.digest]
    assert store.entries() == [] and blob_names(store) == set()


def test_remove_by_digest_with_one_tag_and_by_tag_of_a_twice_tagged_model(store, model_factory):
    m, n = model_factory(b"m"), model_factory(b"n")
    store.add_tag(m.digest, ref("m"))
    store.add_tag(n.digest, ref("n:1"))
    store.add_tag(n.digest, ref("n:2"))
    res = store.remove(f"ai/m@{m.digest}")
    assert res.removed_models == [m.digest] and res.untagged == ["docker.io/ai/m:latest"]
    res = store.remove("n:1")
    assert res.untagged == ["docker.io/ai/n:1"] and res.removed_models == [] and res.deleted_blobs == []
    assert store.resolve("n:2") == n.digest
    with pytest.raises(ModelNotFoundError):
        store.remove("n:1")
    with pytest.raises(ModelNotFoundError):
        store.remove("0" * 12)


def test_remove_keeps_the_users_linked_file(store, tmp_path):
    src = tmp_path / "w.gguf"
    src.write_bytes(b"user weights")
    ld, ln = store.import_file(src)
    cd, cn = store.write_blob(b"{}")
    m = Manifest.build(Descriptor(mt.DOCKER_CONFIG_V01, cd, cn), [Descriptor(mt.GGUF, ld, ln)])
    store.put_manifest(m)
    store.add_tag(m.digest, ref("w"))
    res = store.remove("w")
    assert ld in res.deleted_blobs and not store.has_blob(ld)
    assert src.read_bytes() == b"user weights" and src.stat().st_nlink == 1
    assert res.freed_bytes == len(m.raw) + 2  # the linked layer freed no space


def test_remove_while_a_writer_holds_the_store_defers_gc(store, model_factory):
    m = model_factory(b"a")
    store.add_tag(m.digest, ref("x"))
    with store.writing():
        res = store.remove("x")
    assert res.removed_models == [m.digest] and res.gc_deferred and res.deleted_blobs == []
    assert store.has_blob(m.digest)
    pruned = store.prune()
    assert set(pruned.deleted_blobs) == {m.digest, m.config.digest, m.layers[0].digest}


# -- prune and disk usage ------------------------------------------------------------------------


def test_prune_removes_unreferenced_blobs_and_stale_ingest_only(store, model_factory):
    kept = model_factory(b"kept")
    store.add_tag(kept.digest, ref("kept"))
    orphan, orphan_size = store.write_blob(b"orphan blob")
    stale = store.root / "ingest" / "deadbeef.part"
    stale.write_bytes(b"left by a killed writer")
    live = store.ingest()
    live.write(b"still writing")
    res = store.prune()
    assert res.deleted_blobs == [orphan] and res.stale_ingest == ["deadbeef.part"]
    assert res.freed_bytes == orphan_size + len(b"left by a killed writer")
    assert not stale.exists() and live.path.exists()
    assert blob_names(store) == {kept.digest[7:], kept.config.digest[7:], kept.layers[0].digest[7:]}
    digest = live.commit()  # the live writer was not disturbed
    assert store.read_blob(digest) == b"still writing"
    assert store.prune().deleted_blobs == [digest]


def test_stale_ingest_from_a_killed_process_is_pruned(store):
    store.write_blob(b"x")
    code = ("import os,sys,time\nfrom mdl.store import LayoutStore\n"
            f"w = LayoutStore({str(store.root)!r}).ingest()\nw.write(b'abc')\nprint('ready', flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        [name] = ingest_names(store)
        assert store.prune().stale_ingest == []  # alive: its flock holds
        proc.kill()
        proc.wait()
        assert store.prune().stale_ingest == [name]
        assert ingest_names(store) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_prune_waits_for_writers(store, model_factory):
    model_factory(b"unreferenced so far")
    done = threading.Event()
    result = {}
    with store.writing():
        t = threading.Thread(target=lambda: (result.update(r=store.prune()), done.set()))
        t.start()
        time.sleep(0.3)
        assert not done.is_set()  # blocked on the gc lock
    t.join(10)
    assert done.is_set() and len(result["r"].deleted_blobs) == 3


def test_disk_usage(store, tmp_path):
    a = put_model(store, b"w" * 1000, config=b"{}")
    store.add_tag(a.digest, ref("a"))
    store.write_blob(b"o" * 50)
    w = store.ingest()
    w.write(b"i" * 7)
    du = store.disk_usage()
    referenced = len(a.raw) + 2 + 1000
    assert du.models == 1 and du.blobs == 4
    assert (du.blob_bytes, du.referenced_bytes, du.reclaimable_bytes, du.ingest_bytes) == \
        (referenced + 50, referenced, 50, 7)
    w.abort()
    assert LayoutStore(tmp_path / "empty").disk_usage() == gc_mod.DiskUsage(0, 0, 0, 0, 0, 0)


def test_referenced_blobs_follows_an_index(store, model_factory):
    m = model_factory(b"signed")
    sig = model_factory(b"signature payload", config=b'{"sig":1}')
    idx = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                      "manifests": [sig.descriptor().to_dict()]}).encode()
    idx_digest, _ = store.write_blob(idx)
    store.add_tag(m.digest, ref("m"))
    store.add_tag(idx_digest, ref(f"m:sha256-{m.digest[7:]}"))
    assert store.referenced_blobs() == {m.digest, m.config.digest, m.layers[0].digest, idx_digest,
                                        sig.digest, sig.config.digest, sig.layers[0].digest}
    assert store.prune().deleted_blobs == []
    assert [r.digest for r in store.models()] == [m.digest]  # an index is not a model


# -- disk full -------------------------------------------------------------------------------------------


def test_disk_full_during_ingest_publishes_nothing(store, monkeypatch):
    store.write_blob(b"layout")
    before = blob_names(store)

    def full(fd, view):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ingest_mod, "write_all", full)
    with pytest.raises(DiskFullError) as info:
        store.write_blob(b"x" * 100)
    assert info.value.where == str(store.root)
    assert blob_names(store) == before and ingest_names(store) == []


def test_disk_full_on_a_real_small_file_system(tiny_tmpfs, tmp_path):
    store = LayoutStore(tiny_tmpfs / "store")
    store.write_blob(b"small")
    before = blob_names(store)
    big = tmp_path / "big.gguf"
    big.write_bytes(os.urandom(2 << 20))
    with pytest.raises(DiskFullError):
        store.import_file(big)  # another file system: copied, and refused before writing
    assert blob_names(store) == before and ingest_names(store) == []
    with pytest.raises(DiskFullError):  # size unknown up front: ENOSPC from the write itself
        with store.ingest() as w:
            for _ in range(4):
                w.write(b"z" * (512 << 10))
    assert blob_names(store) == before and ingest_names(store) == []


def test_disk_full_while_copying_an_import(store, tmp_path, monkeypatch):
    src = tmp_path / "w.gguf"
    src.write_bytes(os.urandom(3 << 20))
    store.write_blob(b"layout")
    before = blob_names(store)
    calls = []

    def fills_up(fd, view):
        calls.append(len(view))
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        while view:
            view = view[os.write(fd, view):]

    monkeypatch.setattr(ingest_mod, "write_all", fills_up)
    with pytest.raises(DiskFullError):
        store.import_file(src, link=False)
    assert calls == [1 << 20, 1 << 20]
    assert blob_names(store) == before and ingest_names(store) == []
    assert src.read_bytes()[:4] and src.stat().st_nlink == 1
