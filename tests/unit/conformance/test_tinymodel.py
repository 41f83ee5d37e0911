"""mdl.conformance.tinymodel: the same seed writes the same bytes; the test fixtures use this one generator."""

from __future__ import annotations

import hashlib

from mdl.conformance import tinymodel
from mdl.formats.gguf import read_header
from tests.fixtures import models


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = tinymodel.write_tiny_gguf(tmp_path / "a.gguf", seed=7, context_length=256)
    b = tinymodel.write_tiny_gguf(tmp_path / "b.gguf", seed=7, context_length=256)
    c = tinymodel.write_tiny_gguf(tmp_path / "c.gguf", seed=8, context_length=256)
    assert [p.name for p in a] == ["a.gguf"]
    assert _sha(a[0]) == _sha(b[0]) != _sha(c[0])
    assert a[0].stat().st_size == c[0].stat().st_size  # only the weights differ


def test_shards_are_deterministic_too(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    x = tinymodel.write_tiny_gguf(tmp_path / "x" / "m.gguf", seed=3, n_shards=3)
    y = tinymodel.write_tiny_gguf(tmp_path / "y" / "m.gguf", seed=3, n_shards=3)
    assert [p.name for p in x] == [f"m-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert [_sha(p) for p in x] == [_sha(p) for p in y]


def test_header_says_what_the_e2e_relies_on(tmp_path):
    path = tinymodel.write_tiny_gguf(tmp_path / "m.gguf", seed=7, context_length=256)[0]
    header = read_header(path, keep_arrays_up_to=0)
    assert header.get("general.architecture") == "llama"
    assert header.get("llama.context_length") == 256
    assert header.get("tokenizer.chat_template") == tinymodel.DEFAULT_TEMPLATE
    tokens, scores, types = tinymodel.tiny_vocab()
    assert len(tokens) == len(scores) == len(types) == header.get("llama.vocab_size")
    assert tinymodel.tiny_vocab() == (tokens, scores, types)


def test_fixtures_reexport_the_toolkit_generator():
    for name in ("write_tiny_gguf", "tiny_vocab", "LlamaDims", "TINY", "DEFAULT_TEMPLATE", "N_EMBD", "N_LAYER",
                 "TINY_TENSOR_COUNT"):
        assert getattr(models, name) is getattr(tinymodel, name)
