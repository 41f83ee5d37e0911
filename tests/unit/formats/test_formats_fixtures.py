"""The generators in tests/fixtures/models.py: deterministic, and what they claim to write."""

import hashlib
import os

import gguf
import pytest

from tests.fixtures import models


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_tiny_gguf_deterministic(tmp_path):
    a = models.write_tiny_gguf(tmp_path / "a.gguf")[0]
    b = models.write_tiny_gguf(tmp_path / "b.gguf")[0]
    c = models.write_tiny_gguf(tmp_path / "c.gguf", seed=1)[0]
    assert _sha(a) == _sha(b) != _sha(c)


def test_tiny_gguf_content(tiny_gguf):
    r = gguf.GGUFReader(tiny_gguf)
    names = {t.name for t in r.tensors}
    for n in ("token_embd.weight", "output_norm.weight", "output.weight"):
        assert n in names
    for i in range(models.N_LAYER):
        for part in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate",
                     "ffn_up", "ffn_down"):
            assert f"blk.{i}.{part}.weight" in names
    assert len(r.tensors) == models.TINY_TENSOR_COUNT
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    assert tokens[:3] == ["<unk>", "<s>", "</s>"]
    assert tokens[3:259] == [f"<0x{i:02X}>" for i in range(256)]
    assert len(tokens) > 300
    assert r.fields["tokenizer.ggml.model"].contents() == "llama"
    assert r.fields["tokenizer.chat_template"].contents() == models.DEFAULT_TEMPLATE
    assert r.fields["llama.attention.head_count_kv"].contents() == 2
    out = next(t for t in r.tensors if t.name == "output.weight")
    assert (out.data.reshape(len(tokens), -1)[:3] == 0).all()
    assert tiny_gguf.stat().st_size < 1_000_000


def test_tiny_gguf_options(tmp_path):
    p = models.write_tiny_gguf(tmp_path / "e.gguf", pooling="mean", chat_template=None, context_length=128)[0]
    r = gguf.GGUFReader(p)
    assert r.fields["llama.pooling_type"].contents() == int(gguf.PoolingType.MEAN)
    assert "tokenizer.chat_template" not in r.fields
    assert r.fields["llama.context_length"].contents() == 128


@pytest.mark.parametrize("n", [2, 3, 7])
def test_tiny_gguf_shards(tmp_path, n):
    files = models.write_tiny_gguf(tmp_path / "s.gguf", n_shards=n)
    assert [f.name for f in files] == [f"s-{i:05d}-of-{n:05d}.gguf" for i in range(1, n + 1)]
    assert all(f.exists() for f in files)
    assert sum(len(gguf.GGUFReader(f).tensors) for f in files) == models.TINY_TENSOR_COUNT
    assert not (tmp_path / "s.gguf").exists()


def test_tiny_gguf_impossible_split(tmp_path):
    with pytest.raises(ValueError):
        models.write_tiny_gguf(tmp_path / "s.gguf", n_shards=8)  # 21 tensors: 3 per shard -> 7 shards


def test_safetensors_dir_layout(tmp_path):
    d = models.write_safetensors_dir(tmp_path / "m", license_text="MIT\n")
    assert sorted(p.name for p in d.iterdir()) == [
        "LICENSE", "config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
        "model.safetensors.index.json", "tokenizer.json"]
    d2 = models.write_safetensors_dir(tmp_path / "m2", license_text="MIT\n")
    assert all(_sha(p) == _sha(d2 / p.name) for p in d.iterdir())


def test_hf_cache_snapshot_layout(hf_cache_snapshot):
    repo = hf_cache_snapshot.parent.parent
    assert repo.name == "models--org--name"
    assert (repo / "refs" / "main").read_text() == hf_cache_snapshot.name
    files = sorted(hf_cache_snapshot.iterdir())
    assert files
    for f in files:
        assert f.is_symlink()
        target = os.readlink(f)
        assert target.startswith("../../blobs/")
        assert f.resolve().parent == (repo / "blobs").resolve()
        assert f.resolve().name == _sha(f)
    assert not (repo / ".staging").exists()


def test_random_file(tmp_path):
    a = models.write_random_file(tmp_path / "a", 3 * 1024 * 1024 + 5, seed=3)
    b = models.write_random_file(tmp_path / "b", 3 * 1024 * 1024 + 5, seed=3)
    assert a.stat().st_size == 3 * 1024 * 1024 + 5
    assert _sha(a) == _sha(b)
    assert _sha(models.write_random_file(tmp_path / "c", 10, seed=4)) != _sha(models.write_random_file(tmp_path / "d", 10))


def test_tiny_gguf_loads_in_llama_cpp(tiny_gguf, tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(model_path=str(tiny_gguf), n_threads=1, n_ctx=64, verbose=False)
    out1 = llm("hello world", max_tokens=4, temperature=0.0)["choices"][0]["text"]
    out2 = llm("hello world", max_tokens=4, temperature=0.0)["choices"][0]["text"]
    assert out1 == out2
    shards = models.write_tiny_gguf(tmp_path / "split.gguf", n_shards=2)
    llm2 = llama_cpp.Llama(model_path=str(shards[0]), n_threads=1, n_ctx=64, verbose=False)
    assert llm2.n_vocab() == llm.n_vocab()
