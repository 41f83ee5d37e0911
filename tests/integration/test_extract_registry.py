"""`mdl extract` and `mdl pull --include` against the real registry: a model streamed into a directory
without touching the store, `--store`, a corrupted registry blob, an interrupted download that leaves no
file under its final name and resumes, ModelPack archive layers through the registry, and a partial
model listed, verified and completed from the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mdl.errors import DigestMismatchError
from mdl.ops.extract import SCRATCH, extract
from mdl.ops.push import push
from mdl.reference import parse_reference
from mdl.registry.open import open_repository
from mdl.store import LayoutStore
from tests.conftest import assert_clean_error
from tests.fixtures import models
from tests.unit.archive_models import modelpack_archive_layers, store_model


def opener(ref):
    return open_repository(ref)


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def pushed(registry, tmp_path_factory) -> tuple[str, dict[str, bytes], LayoutStore]:
    """A safetensors model (5 files) pushed to the registry; (reference, its files, the store it came from)."""
    base = tmp_path_factory.mktemp("pushed")
    src = models.write_safetensors_dir(base / "st", n_shards=2)
    store = LayoutStore(base / "home")
    from mdl.ops.package import PackageRequest, package

    package(store, PackageRequest(safetensors_dir=str(src)), parse_reference("org/st:1"))
    target = parse_reference(f"{registry.host}/test/extract-st:1")
    push(store, open_repository(target), "org/st:1", target)
    return str(target), files_under(src), store


def test_extract_from_the_registry_leaves_the_store_alone(pushed, tmp_path):
    ref, expected, _ = pushed
    store = LayoutStore(tmp_path / "home")
    result = extract(store, ref, tmp_path / "out", open_repository=opener)
    assert files_under(tmp_path / "out") == expected
    assert result.source == "registry" and result.hashed and result.fetched == sum(map(len, expected.values()))
    assert not store.root.exists()  # nothing stored
    assert not (tmp_path / "out" / SCRATCH).exists()
    assert all(os.stat(tmp_path / "out" / name).st_mode & 0o777 == 0o444 for name in expected)


def test_store_keeps_the_download_and_links_from_it(pushed, tmp_path):
    ref, expected, _ = pushed
    store = LayoutStore(tmp_path / "home")
    extract(store, ref, tmp_path / "out", open_repository=opener, keep=True, include=["*.safetensors"])
    digest = store.resolve(ref)
    assert store.is_partial(digest)
    for d in store.manifest(digest).layers:
        if store.has_blob(d.digest):
            path = next(p for p in (tmp_path / "out").iterdir() if p.stat().st_ino == store.blob_path(d.digest).stat().st_ino)
            assert path.read_bytes() == expected[path.name]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model-00001-of-00002.safetensors",
                                                                    "model-00002-of-00002.safetensors"]


def test_a_corrupted_registry_blob_places_nothing(registry, pushed, tmp_path):
    ref, expected, source_store = pushed
    # a second repository with its own copy of one layer, corrupted in the registry's storage
    target = parse_reference(f"{registry.host}/test/extract-corrupt:1")
    push(source_store, open_repository(target), "org/st:1", target)
    manifest = source_store.manifest(source_store.resolve("org/st:1"))
    config_layer = next(d for d in manifest.layers if d.annotations["org.cncf.model.filepath"] == "config.json")
    blob = registry.blob_path(config_layer.digest)
    original = blob.read_bytes()
    blob.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    try:
        with pytest.raises(DigestMismatchError):
            extract(LayoutStore(tmp_path / "home"), str(target), tmp_path / "out", open_repository=opener,
                    include=["config.json"])
        assert files_under(tmp_path / "out") == {}  # neither the file nor the scratch store's leftovers
    finally:
        blob.write_bytes(original)


class _Interrupting:
    """A repository whose blob streams raise KeyboardInterrupt after `after` bytes, once."""

    def __init__(self, repo, after: int):
        self._repo, self._after, self.fired = repo, after, False

    def __getattr__(self, name):
        return getattr(self._repo, name)

    def open_blob(self, desc, offset=0):
        stream, start = self._repo.open_blob(desc, offset)
        if self.fired or desc.size < self._after * 2:
            return stream, start
        outer = self

        class Cut:
            def __init__(self):
                self.n = 0

            def readinto(self, b):
                if self.n >= outer._after:
                    outer.fired = True
                    raise KeyboardInterrupt
                n = stream.readinto(memoryview(b)[:outer._after - self.n])
                self.n += n
                return n

            def read(self, size=-1):
                buf = bytearray(size if size > 0 else 1 << 20)
                n = self.readinto(buf)
                return bytes(buf[:n])

            def close(self):
                stream.close()

        return Cut(), start


def test_an_interrupted_extract_leaves_no_final_file_and_resumes(pushed, tmp_path):
    ref, expected, _ = pushed
    store = LayoutStore(tmp_path / "home")
    out = tmp_path / "out"
    shard = "model-00001-of-00002.safetensors"
    cut = _Interrupting(open_repository(parse_reference(ref)), after=8192)
    with pytest.raises(KeyboardInterrupt):
        extract(store, ref, out, open_repository=lambda r: cut, include=[shard], concurrency=1)
    assert cut.fired and not (out / shard).exists()
    assert (out / SCRATCH).is_dir()  # the partial download, kept to resume
    result = extract(store, ref, out, open_repository=opener, include=[shard])
    assert (out / shard).read_bytes() == expected[shard]
    assert result.fetched == len(expected[shard]) - 8192  # resumed where it stopped
    assert not (out / SCRATCH).exists()


def test_modelpack_archive_layers_through_the_registry(registry, tmp_path):
    store = LayoutStore(tmp_path / "home")
    store_model(store, "docker.io/org/mp:1", modelpack_archive_layers())
    target = parse_reference(f"{registry.host}/test/extract-mp:1")
    push(store, open_repository(target), "org/mp:1", target)
    result = extract(LayoutStore(tmp_path / "empty"), str(target), tmp_path / "out", open_repository=opener)
    assert sorted(f.path for f in result.files) == ["README.md", "config.json", "model.safetensors",
                                                   "tokenizer/tokenizer.json", "tokenizer/vocab.txt"]
    assert (tmp_path / "out" / "tokenizer" / "vocab.txt").read_bytes() == b"a\nb\n"


def test_pull_include_list_verify_extract_and_complete_from_the_command_line(mdl, pushed, tmp_path):
    ref, expected, _ = pushed
    done = mdl("pull", ref, "--include", "config.json", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["partial"] and "model-00001-of-00002.safetensors" in summary["absent"]
    assert "skipped" in summary["blobs"].values()
    listed = mdl("list")
    assert "(partial)" in listed.stdout, listed.stdout
    assert json.loads(mdl("list", "--json").stdout)[0]["partial"] is True
    verified = mdl("verify", ref)
    assert verified.returncode == 0 and "partial: 4 layer(s) not pulled" in verified.stdout, verified.stdout
    everything = mdl("verify", "--all", "--json")
    assert everything.returncode == 0 and json.loads(everything.stdout)["ok"], everything.stdout
    assert mdl("prune").returncode == 0
    only_config = mdl("extract", ref, str(tmp_path / "cfg"), "--include", "config.json")
    assert only_config.returncode == 0 and "from the store" in only_config.stdout, only_config.stdout
    assert files_under(tmp_path / "cfg") == {"config.json": expected["config.json"]}
    saved = mdl("save", ref, "-o", str(tmp_path / "m.tar"))
    assert_clean_error(saved, 1, "pulled partially", "mdl pull")
    completed = mdl("pull", ref)
    assert completed.returncode == 0, completed.stderr
    assert "(partial)" not in mdl("list").stdout
    again = mdl("verify", ref)
    assert again.returncode == 0 and "partial" not in again.stdout


def test_extract_errors_from_the_command_line(mdl, pushed, registry, tmp_path):
    ref, _, _ = pushed
    nothing = mdl("extract", ref, str(tmp_path / "x"), "--include", "*.gguf")
    assert_clean_error(nothing, 2, "no file of", "--include '*.gguf'")
    missing = mdl("extract", f"{registry.host}/test/absent:1", str(tmp_path / "y"))
    assert_clean_error(missing, 1, "absent")
    unknown_id = mdl("extract", "sha256:" + "0" * 64, str(tmp_path / "z"))
    assert_clean_error(unknown_id, 1, "not found in the local store")
