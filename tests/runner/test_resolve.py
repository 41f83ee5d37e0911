"""Resolution: a stored model -> the files llama.cpp opens (spec/runtime.md)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mdl.errors import ModelNotFoundError
from mdl.ops.package import PackageRequest, package
from mdl.reference import parse_reference
from mdl.runner import links_dir
from mdl.placement import shard_name
from mdl.runner.resolve import (ModelDamagedError, UnsupportedModelFormatError, resolve_model,
                                verify_model)
from mdl.spec import mediatypes as mt
from tests.fixtures import models
from tests.runner.conftest import CREATED, TEMPLATE_LAYER, build_runner_store


def _weights(store, ref):
    manifest = store.manifest(store.resolve(ref))
    return [d for d in manifest.layers if d.media_type in (mt.GGUF, mt.CNCF_WEIGHT_RAW)]


def test_docker_single_file(runner_store):
    r = resolve_model(runner_store, "ai/tiny", links_dir(runner_store))
    digest = runner_store.resolve("ai/tiny:latest")
    (weight,) = _weights(runner_store, "ai/tiny")
    assert r.reference == "docker.io/ai/tiny:latest"
    assert r.digest == digest
    assert r.tags == ["docker.io/ai/tiny:latest"]
    assert r.created == int(CREATED.timestamp())
    assert r.model_path == runner_store.blob_path(weight.digest)
    assert r.chat_template is None and r.mmproj_path is None
    assert r.context_size == 256
    assert r.embedding is False
    assert r.size == weight.size


def test_sharded_links_load_in_llama_cpp(runner_store):
    llama_cpp = pytest.importorskip("llama_cpp")
    r = resolve_model(runner_store, "ai/tiny-sharded", links_dir(runner_store))
    shards = _weights(runner_store, "ai/tiny-sharded")
    assert len(shards) == 3
    directory = r.model_path.parent
    assert directory == links_dir(runner_store) / r.digest.split(":")[1]
    assert r.model_path.name == "model-00001-of-00003.gguf"
    assert sorted(p.name for p in directory.iterdir()) == [shard_name(i, 3) for i in (1, 2, 3)]
    for i, d in enumerate(shards, 1):
        assert (directory / shard_name(i, 3)).resolve() == runner_store.blob_path(d.digest).resolve()
    assert r.size == sum(d.size for d in shards)
    llm = llama_cpp.Llama(model_path=str(r.model_path), n_threads=1, n_ctx=64, verbose=False)
    try:
        assert llm.n_embd() == models.N_EMBD
    finally:
        llm.close()


def test_shard_links_are_reused_and_repaired(runner_store):
    first = resolve_model(runner_store, "ai/tiny-sharded", links_dir(runner_store)).model_path
    inode = first.parent.stat().st_ino
    assert resolve_model(runner_store, "ai/tiny-sharded", links_dir(runner_store)).model_path == first
    assert first.parent.stat().st_ino == inode  # reused, not rebuilt
    # a broken link directory (a link removed) is rebuilt in full
    (first.parent / shard_name(2, 3)).unlink()
    again = resolve_model(runner_store, "ai/tiny-sharded", links_dir(runner_store)).model_path
    assert again == first and (first.parent / shard_name(2, 3)).is_symlink()
    assert not [p for p in links_dir(runner_store).iterdir() if p.name.startswith(".")]


def test_chat_template_layer(runner_store):
    r = resolve_model(runner_store, "ai/tiny-template:latest", links_dir(runner_store))
    assert r.chat_template == TEMPLATE_LAYER
    assert r.model_path == resolve_model(runner_store, "ai/tiny", links_dir(runner_store)).model_path


def test_modelpack_gguf(runner_store):
    r = resolve_model(runner_store, "ai/tiny-cncf", links_dir(runner_store))
    (weight,) = _weights(runner_store, "ai/tiny-cncf")
    assert weight.media_type == mt.CNCF_WEIGHT_RAW
    assert r.model_path == runner_store.blob_path(weight.digest)
    assert r.context_size is None  # ModelPack has no context size
    assert r.created == int(CREATED.timestamp())
    assert r.embedding is False


def test_embedding_model(runner_store):
    assert resolve_model(runner_store, "ai/tiny-embed", links_dir(runner_store)).embedding is True


def test_safetensors_is_unsupported(runner_store):
    with pytest.raises(UnsupportedModelFormatError) as info:
        resolve_model(runner_store, "ai/st", links_dir(runner_store))
    assert info.value.kind == "unsupported-format"
    assert info.value.format == "safetensors"
    assert info.value.reference == "ai/st"
    assert str(info.value) == "ai/st is a safetensors model; mdl serve runs GGUF models"


def test_by_id(runner_store):
    digest = runner_store.resolve("ai/tiny")
    hexd = digest.split(":")[1]
    for text in (hexd[:12], hexd, digest):
        r = resolve_model(runner_store, text, links_dir(runner_store))
        assert r.digest == digest and r.reference == digest
    r = resolve_model(runner_store, f"ai/tiny@{digest}", links_dir(runner_store))
    assert r.reference == f"docker.io/ai/tiny@{digest}"


def test_unknown_model(runner_store):
    with pytest.raises(ModelNotFoundError):
        resolve_model(runner_store, "ai/nothing", links_dir(runner_store))
    with pytest.raises(ModelNotFoundError):
        resolve_model(runner_store, "0123456789ab", links_dir(runner_store))


@pytest.fixture
def own_store(tmp_path):
    """A store of our own, to damage."""
    return build_runner_store(tmp_path / "home", tmp_path / "inputs")


def test_missing_weight_blob(own_store):
    (weight,) = _weights(own_store, "ai/tiny")
    own_store.blob_path(weight.digest).unlink()
    with pytest.raises(ModelDamagedError) as info:
        resolve_model(own_store, "ai/tiny", links_dir(own_store))
    assert info.value.kind == "model-damaged"
    assert weight.digest in str(info.value)
    assert "mdl pull" in info.value.hint and "mdl verify" in info.value.hint


def test_missing_shard_blob(own_store):
    shards = _weights(own_store, "ai/tiny-sharded")
    own_store.blob_path(shards[2].digest).unlink()
    with pytest.raises(ModelDamagedError, match=shards[2].digest):
        resolve_model(own_store, "ai/tiny-sharded", links_dir(own_store))


def test_corrupt_weight_blob_fails_verification(own_store):
    (weight,) = _weights(own_store, "ai/tiny")
    path = own_store.blob_path(weight.digest)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, different bytes: resolution (cheap) passes, verification does not
    os.chmod(path, 0o644)
    path.unlink()
    path.write_bytes(bytes(data))
    r = resolve_model(own_store, "ai/tiny", links_dir(own_store))
    with pytest.raises(ModelDamagedError, match="corrupt"):
        verify_model(own_store, r)


def _write_clip(path: Path) -> Path:
    import gguf

    w = gguf.GGUFWriter(path, "clip")
    w.add_name("tiny-clip")
    w.add_tensor("mm.0.weight", np.zeros((4, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("fmt", ["docker", "cncf"])
def test_projector(tmp_path, fmt):
    from mdl.store import LayoutStore

    store = LayoutStore(tmp_path / "home")
    gguf_path = models.write_tiny_gguf(tmp_path / "tiny.gguf")[0]
    clip = _write_clip(tmp_path / "mmproj.gguf")
    package(store, PackageRequest(gguf=str(gguf_path), mmproj=str(clip), format=fmt, created=CREATED),
            parse_reference("ai/vision"))
    r = resolve_model(store, "ai/vision", links_dir(store))
    manifest = store.manifest(r.digest)
    by_size = {d.size: d for d in manifest.layers}
    clip_desc = by_size[clip.stat().st_size]
    assert r.mmproj_path == store.blob_path(clip_desc.digest)
    assert r.model_path == store.blob_path(by_size[gguf_path.stat().st_size].digest)
    assert r.architecture == "llama"
