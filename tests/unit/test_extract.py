"""`mdl extract` from the local store: files at their packaged paths, hard links or verified copies,
read-only, archive layers unpacked safely, nothing written outside the directory, no partial file ever
under its final name."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from mdl.errors import ConflictError, DigestMismatchError, ModelNotFoundError, UsageError
from mdl.layout import unpack as unpack_mod
from mdl.layout.common import LayoutError, UnsafeArchiveError
from mdl.layout.modeldir import ModelDir
from mdl.layout.unpack import ArchiveTooLargeError, MissingZstdError
from mdl.ops.extract import extract
from mdl.ops.package import PackageRequest, package
from mdl.placement import UnsafePathError
from mdl.reference import parse_reference
from mdl.spec import mediatypes as mt
from mdl.store import LayoutStore
from tests.conftest import assert_clean_error
from tests.fixtures import models
from tests.unit.archive_models import compress, layer, modelpack_archive_layers, store_model, tar_bytes

REF = "docker.io/org/mp:1"


def no_registry(ref):
    raise AssertionError(f"extract reached for the registry ({ref})")


def run(store, directory, ref=REF, **kw):
    return extract(store, ref, directory, open_repository=no_registry, **kw)


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def leftovers(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture
def store(tmp_path) -> LayoutStore:
    return LayoutStore(tmp_path / "home")


@pytest.fixture
def mp_store(store) -> LayoutStore:
    store_model(store, REF, modelpack_archive_layers())
    return store


def test_modelpack_raw_and_archive_layers_land_at_their_paths(mp_store, tmp_path):
    out = tmp_path / "out"
    result = run(mp_store, out)
    assert files_under(out) == {
        "model.safetensors": b"\x00" * 4096 + b"weights",
        "config.json": b'{"architectures": ["X"]}',
        "tokenizer/tokenizer.json": b'{"v": 1}',
        "tokenizer/vocab.txt": b"a\nb\n",
        "README.md": b"# model\n",
    }
    assert {f.path: f.how for f in result.files} == {
        "model.safetensors": "linked", "config.json": "unpacked", "tokenizer/tokenizer.json": "unpacked",
        "tokenizer/vocab.txt": "unpacked", "README.md": "unpacked"}
    assert result.source == "store" and result.fetched == 0
    for p in out.rglob("*"):
        if p.is_file():
            assert stat.S_IMODE(p.stat().st_mode) == 0o444, p
    assert leftovers(out) == []


def test_a_raw_layer_is_hard_linked_from_the_store_or_copied_with_copy(mp_store, tmp_path):
    weight = mp_store.manifest(mp_store.resolve(REF)).layers[0]
    blob = mp_store.blob_path(weight.digest)
    run(mp_store, tmp_path / "linked")
    assert (tmp_path / "linked" / "model.safetensors").stat().st_ino == blob.stat().st_ino
    result = run(mp_store, tmp_path / "copied", copy=True)
    copied = tmp_path / "copied" / "model.safetensors"
    assert copied.stat().st_ino != blob.stat().st_ino and copied.read_bytes() == blob.read_bytes()
    assert result.hashed and result.files[0].how == "copied"


def _tamper(path: Path) -> None:
    """Flip a byte of a store blob in place, keeping its size and its read-only mode."""
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    path.chmod(0o444)


def test_verify_hashes_linked_files_and_a_copy_is_always_hashed(mp_store, tmp_path):
    weight = mp_store.manifest(mp_store.resolve(REF)).layers[0]
    _tamper(mp_store.blob_path(weight.digest))
    unverified = run(mp_store, tmp_path / "a", include=["model.safetensors"])
    assert not unverified.hashed  # a link to the blob as stored, said so
    with pytest.raises(DigestMismatchError):
        run(mp_store, tmp_path / "b", include=["model.safetensors"], verify=True)
    assert not (tmp_path / "b" / "model.safetensors").exists() and leftovers(tmp_path / "b") == []
    with pytest.raises(DigestMismatchError):
        run(mp_store, tmp_path / "c", include=["model.safetensors"], copy=True)
    assert not (tmp_path / "c" / "model.safetensors").exists() and leftovers(tmp_path / "c") == []


def test_a_corrupt_archive_layer_places_none_of_its_files(mp_store, tmp_path):
    tok = mp_store.manifest(mp_store.resolve(REF)).layers[2]
    _tamper(mp_store.blob_path(tok.digest))
    with pytest.raises((DigestMismatchError, LayoutError)):
        run(mp_store, tmp_path / "out", include=["tokenizer"])
    assert files_under(tmp_path / "out") == {}


def test_existing_files_need_force_and_are_replaced_atomically(mp_store, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("mine")
    with pytest.raises(ConflictError, match="config.json exists"):
        run(mp_store, out, include=["config.json"])
    with pytest.raises(ConflictError, match="model.safetensors exists"):
        (out / "model.safetensors").write_text("mine")
        run(mp_store, out)
    assert (out / "config.json").read_text() == "mine"  # refused before anything moved
    run(mp_store, out, force=True)
    assert (out / "config.json").read_bytes() == b'{"architectures": ["X"]}'
    run(mp_store, out, force=True)  # again, over read-only files
    (out / "README.md").unlink()
    (out / "README.md").mkdir()
    with pytest.raises(ConflictError, match="is a directory"):
        run(mp_store, out, force=True)


def test_a_symlink_inside_the_directory_is_never_followed(mp_store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "tokenizer").symlink_to(outside)
    with pytest.raises(UnsafePathError) as e:
        run(mp_store, out)
    assert "tokenizer is a symbolic link" in e.value.message
    assert list(outside.iterdir()) == []
    (out / "tokenizer").unlink()
    (out / "model.safetensors").unlink()  # placed before the refusal
    (out / "model.safetensors").symlink_to(outside / "victim")
    run(mp_store, out, force=True)  # the link itself is replaced, its target never written
    assert not (outside / "victim").exists() and not (out / "model.safetensors").is_symlink()


def test_include_exclude(mp_store, tmp_path):
    result = run(mp_store, tmp_path / "a", include=["*.json"], exclude=["tokenizer"])
    assert sorted(f.path for f in result.files) == ["config.json"]
    with pytest.raises(UsageError, match="no file of"):
        run(mp_store, tmp_path / "b", include=["*.gguf"])


def test_unannotated_docker_v01_and_its_vllm_config_tar(store, tmp_path):
    layers = [layer(mt.SAFETENSORS, b"shard-one"), layer(mt.SAFETENSORS, b"shard-two"),
              layer(mt.VLLM_CONFIG_TAR, tar_bytes([("config.json", b"{}"), ("tokenizer.json", b"[]")])),
              layer(mt.LICENSE, b"MIT")]
    store_model(store, "docker.io/ai/legacy:1", layers, modelpack=False)
    run(store, tmp_path / "out", "ai/legacy:1")
    assert files_under(tmp_path / "out") == {
        "model-00001-of-00002.safetensors": b"shard-one", "model-00002-of-00002.safetensors": b"shard-two",
        "config.json": b"{}", "tokenizer.json": b"[]", "license.txt": b"MIT"}


def test_a_packaged_gguf_extracts_under_its_file_name(store, tmp_path):
    gguf = models.write_tiny_gguf(tmp_path / "tiny.gguf")[0]
    package(store, PackageRequest(gguf=str(gguf)), parse_reference("ai/tiny:1"))
    result = run(store, tmp_path / "out", "ai/tiny:1")
    assert (tmp_path / "out" / "tiny.gguf").read_bytes() == gguf.read_bytes()
    # the blob is the user's own file, linked into the store: never linked out again, copied read-only
    assert result.files[0].how == "copied"
    assert stat.S_IMODE((tmp_path / "out" / "tiny.gguf").stat().st_mode) == 0o444


# -- hostile archives ----------------------------------------------------------------------------------


def hostile(store, members: list[tuple], compression=None, media="application/vnd.cncf.model.weight.config.v1.tar"):
    suffix = {None: "", "gzip": "+gzip", "zstd": "+zstd"}[compression]
    data = compress(tar_bytes(members), compression)
    store_model(store, "docker.io/org/bad:1", [layer(mt.CNCF_WEIGHT_RAW, b"w", "w.bin"),
                                                layer(media + suffix, data, "conf")])


@pytest.mark.parametrize("members, problem", [
    ([("ok.json", b"{}"), ("../evil", b"x")], "'..' segment"),
    ([("/etc/evil", b"x")], "is absolute"),
    ([("a\\..\\evil", b"x")], "backslash"),
    ([("link", {"type": b"2", "linkname": "../../etc/passwd"})], "outside the model directory"),
    ([("link", {"type": b"2", "linkname": "/etc/passwd"})], "outside the model directory"),
    ([("d/link", {"type": b"2", "linkname": "../.."})], "outside the model directory"),
    ([("hard", {"type": b"1", "linkname": "/etc/passwd"})], "is absolute"),
    ([("hard", {"type": b"1", "linkname": "later.json"}), ("later.json", b"{}")], "not a file earlier in this layer"),
    ([("dev", {"type": b"3", "devmajor": 1, "devminor": 3})], "a device"),
    ([("fifo", {"type": b"6"})], "a device, a FIFO"),
])
def test_hostile_members_are_refused_and_nothing_is_placed(store, tmp_path, members, problem):
    hostile(store, members)
    out = tmp_path / "d" / "out"
    with pytest.raises(UnsafeArchiveError) as e:
        run(store, out, "org/bad:1")
    assert problem in e.value.message and "org/bad:1 layer 1 (conf)" in e.value.message
    assert e.value.kind == "unsafe-archive"
    assert files_under(tmp_path / "d") == {"out/w.bin": b"w"}  # the raw layer before it; nothing of this one


def test_links_inside_the_directory_are_kept(store, tmp_path):
    hostile(store, [("a", None), ("a/real.json", b"{}"), ("a/soft.json", {"type": b"2", "linkname": "real.json"}),
                    ("hard.json", {"type": b"1", "linkname": "a/real.json"})])
    run(store, tmp_path / "out", "org/bad:1")
    out = tmp_path / "out"
    assert os.readlink(out / "a" / "soft.json") == "real.json"
    assert (out / "hard.json").stat().st_ino == (out / "a" / "real.json").stat().st_ino


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_a_decompression_bomb_is_refused_naming_the_layer(store, tmp_path, compression):
    hostile(store, [("zeros.bin", b"\x00" * (8 << 20))], compression)
    with pytest.raises(ArchiveTooLargeError) as e:
        run(store, tmp_path / "out", "org/bad:1", max_unpacked=1 << 20)
    assert "org/bad:1 layer 1 (conf) unpacks to more than 1048576 bytes" in e.value.message
    assert e.value.kind == "archive-too-large" and "--max-unpacked" in e.value.hint
    assert not (tmp_path / "out" / "zeros.bin").exists() and leftovers(tmp_path / "out") == []
    run(store, tmp_path / "trusted", "org/bad:1", max_unpacked=16 << 20)  # the user may raise the limit


def test_the_default_limit_of_a_compressed_layer(store, tmp_path, monkeypatch):
    monkeypatch.setattr(unpack_mod, "COMPRESSED_FLOOR", 1 << 20)
    hostile(store, [("zeros.bin", b"\x00" * (4 << 20))], "gzip")
    with pytest.raises(ArchiveTooLargeError):
        run(store, tmp_path / "out", "org/bad:1")
    assert unpack_mod.default_limit(None, 1000) == 1000  # a plain tar never grows


def test_an_extended_header_bomb_is_refused_before_it_is_read(store, tmp_path):
    hostile(store, [("x", {"type": b"x", "size": 64 << 20})])  # a pax header claiming 64 MiB
    with pytest.raises(UnsafeArchiveError, match="extended header"):
        run(store, tmp_path / "out", "org/bad:1")


def test_a_damaged_compressed_layer_is_a_clear_error(store, tmp_path):
    data = b"\x1f\x8b\x08\x00garbage-not-gzip"
    store_model(store, "docker.io/org/bad:1",
                [layer("application/vnd.cncf.model.weight.config.v1.tar+gzip", data, "conf")])
    with pytest.raises(LayoutError, match="cannot be decompressed|not a tar archive"):
        run(store, tmp_path / "out", "org/bad:1")


def test_zstd_without_the_package_says_what_to_install(mp_store, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(MissingZstdError) as e:
        run(mp_store, tmp_path / "out", include=["README.md"])
    assert e.value.kind == "missing-extra" and "pip install zstandard" in e.value.hint


def test_an_interrupted_extract_leaves_no_file_under_its_final_name(mp_store, tmp_path, monkeypatch):
    from mdl.layout import modeldir

    real = modeldir.PendingFile.write
    calls = []

    def interrupt(self, view):
        calls.append(1)
        if len(calls) == 1:
            real(self, view)
            raise KeyboardInterrupt
        return real(self, view)

    monkeypatch.setattr(modeldir.PendingFile, "write", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run(mp_store, tmp_path / "out", copy=True)
    assert files_under(tmp_path / "out") == {}


def test_no_file_goes_where_mdl_keeps_its_scratch_download(store, tmp_path):
    hostile(store, [(".mdl-extract/blobs/x", b"x")])
    with pytest.raises(UnsafePathError, match="mdl's own"):
        run(store, tmp_path / "out", "org/bad:1")


def test_a_second_extract_into_a_directory_being_written_is_refused(mp_store, tmp_path):
    out = tmp_path / "out"
    with ModelDir(out):  # an extract in progress holds the directory
        with pytest.raises(ConflictError, match="another mdl extract is writing into this directory"):
            run(mp_store, out)
        assert os.listdir(out) == []  # no scratch store, no file
    assert run(mp_store, out).files  # free again once the first is done


def test_the_store_itself_is_never_a_target(mp_store):
    for inside in (mp_store.root, mp_store.root / "blobs"):
        with pytest.raises(UsageError, match="inside the local store"):
            run(mp_store, inside, force=True)


def test_unknown_model_without_a_registry(store, tmp_path):
    with pytest.raises(ModelNotFoundError):
        extract(store, "sha256:" + "ab" * 32, tmp_path / "out", open_repository=no_registry)


# -- the command -----------------------------------------------------------------------------------


def test_cli_extract(mdl, tmp_path):
    store = LayoutStore(mdl.home)
    store_model(store, REF, modelpack_archive_layers())
    done = mdl("extract", "org/mp:1", str(tmp_path / "out"), "--include", "*.json", "--exclude", "tokenizer")
    assert done.returncode == 0, done.stderr
    assert "1 files (1 unpacked)" in done.stdout and "config.json" in done.stdout
    again = mdl("extract", "org/mp:1", str(tmp_path / "out"), "--include", "config.json")
    assert_clean_error(again, 1, "config.json exists", "--force")
    bad = mdl("extract", "org/mp:1", str(tmp_path / "x"), "--max-unpacked", "lots")
    assert_clean_error(bad, 2, "invalid --max-unpacked 'lots'")
    (tmp_path / "file").write_text("x")
    not_dir = mdl("extract", "org/mp:1", str(tmp_path / "file"))
    assert_clean_error(not_dir, 1, "is not a directory")
    busy = tmp_path / "busy"
    with ModelDir(busy):  # this process is extracting there: the command's process is refused
        held = mdl("extract", "org/mp:1", str(busy))
    assert_clean_error(held, 1, "another mdl extract is writing into this directory")
    js = mdl("extract", "org/mp:1", str(tmp_path / "js"), "--json", "--copy", "--include", "model.safetensors")
    assert js.returncode == 0, js.stderr
    assert '"how": "copied"' in js.stdout and '"source": "store"' in js.stdout
