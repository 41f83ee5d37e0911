"""A tiny llama-architecture GGUF that llama.cpp loads, generated from a seed (no downloads).

`mdl conformance e2e` makes its own model with it; the tests and benchmarks use it through
`tests/fixtures/models.py`. Everything here is a pure function of its arguments (and `seed`): the
same call writes the same bytes.

- `write_tiny_gguf`: n_embd 64, 2 layers, 4 heads, 2 KV heads, ctx 256, a ~330-token
  SentencePiece-style vocabulary with byte fallback, F32 weights (docs/notes.md §3); optionally split
  into shards with `GGUFWriter(split_max_tensors=...)`, or shaped otherwise with `dims`.
- `tiny_vocab`: its tokens, scores and token types; `LlamaDims`: its shape.

The output rows of the special tokens are zero, which keeps greedy decoding away from EOS: a chat
answer at temperature 0 runs to `max_tokens` and is the same text on every run.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '</s>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 2
N_FF = 128
HEAD_DIM = N_EMBD // N_HEAD


@dataclass(frozen=True)
class LlamaDims:
    """The shape of a generated llama model; the defaults make the tiny test model."""

    n_embd: int = N_EMBD
    n_layer: int = N_LAYER
    n_head: int = N_HEAD
    n_head_kv: int = N_HEAD_KV
    n_ff: int = N_FF
    n_vocab: int | None = None  # pad the tiny vocabulary to this many tokens
    dtype: type = np.float32

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


TINY = LlamaDims()

_WORDS = (
    "the a an and of to in is it you that he was for on are with as I his they be at one have this "
    "from or had by hot word but what some we can out other were all there when up use your how said "
    "each she which do their time if will way about many then them write would like so these her long "
    "make thing see him two has look more day could go come did number sound no most people my over "
    "know water than call first who may down side been now find hello world model docker llama test"
).split()

# llama.cpp token types
_NORMAL, _UNKNOWN, _CONTROL, _BYTE = 1, 2, 3, 6


def tiny_vocab(n_vocab: int | None = None) -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types of the tiny SentencePiece-style vocabulary, padded with
    distinct low-scoring pieces to `n_vocab` tokens when given."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [_UNKNOWN, _CONTROL, _CONTROL]
    tokens += [f"<0x{i:02X}>" for i in range(256)]
    types += [_BYTE] * 256
    pieces = ["\u2581"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    seen = set(tokens)
    for w in _WORDS:
        for piece in ("\u2581" + w,):
            if piece not in seen:
                pieces.append(piece)
                seen.add(piece)
    for piece in pieces:
        tokens.append(piece)
        types.append(_NORMAL)
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(len(pieces))]
    # longer pieces score higher so SentencePiece merges prefer whole words
    first = 3 + 256
    for i, piece in enumerate(pieces):
        scores[first + i] = -100.0 + 10.0 * len(piece) - i * 1e-3
    i = 0
    while n_vocab is not None and len(tokens) < n_vocab:
        tokens.append(f"\u2581w{i}")
        scores.append(-1000.0 - i * 1e-3)
        types.append(_NORMAL)
        i += 1
    return tokens, scores, types


def _tiny_tensors(seed: int, n_vocab: int, dims: LlamaDims = TINY) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(dims.dtype)

    e, kv = dims.n_embd, dims.n_head_kv * dims.head_dim
    ones = np.ones(e, dtype=np.float32)
    out = w(n_vocab, e)
    out[:3, :] = 0.0  # special tokens never win a greedy decode
    tensors = [("token_embd.weight", w(n_vocab, e))]
    for i in range(dims.n_layer):
        tensors += [
            (f"blk.{i}.attn_norm.weight", ones.copy()),
            (f"blk.{i}.attn_q.weight", w(e, e)),
            (f"blk.{i}.attn_k.weight", w(kv, e)),
            (f"blk.{i}.attn_v.weight", w(kv, e)),
            (f"blk.{i}.attn_output.weight", w(e, e)),
            (f"blk.{i}.ffn_norm.weight", ones.copy()),
            (f"blk.{i}.ffn_gate.weight", w(dims.n_ff, e)),
            (f"blk.{i}.ffn_up.weight", w(dims.n_ff, e)),
            (f"blk.{i}.ffn_down.weight", w(e, dims.n_ff)),
        ]
    tensors += [("output_norm.weight", ones.copy()), ("output.weight", out)]
    return tensors


TINY_TENSOR_COUNT = 3 + 9 * N_LAYER


def write_tiny_gguf(path: str | os.PathLike, *, seed: int = 0, n_shards: int = 1,
                    chat_template: str | None = DEFAULT_TEMPLATE, pooling: str | int | None = None,
                    context_length: int = 256, file_type: int | None = None,
                    dims: LlamaDims = TINY) -> list[Path]:
    """Write a tiny (or, with `dims`, larger) llama model; returns the files written (shards in order).

    `file_type` is written as `general.file_type` when given (weights stay F32); `pooling`
    ("none", "mean", "cls", "last" or an int) sets `llama.pooling_type`.
    """
    import gguf

    path = Path(path)
    tokens, scores, types = tiny_vocab(dims.n_vocab)
    tensors = _tiny_tensors(seed, len(tokens), dims)
    if n_shards < 1 or n_shards > len(tensors):
        raise ValueError(f"n_shards must be 1..{len(tensors)}")
    per_shard = math.ceil(len(tensors) / n_shards) if n_shards > 1 else 0
    if n_shards > 1 and math.ceil(len(tensors) / per_shard) != n_shards:
        raise ValueError(f"{len(tensors)} tensors cannot be split into exactly {n_shards} shards")

    writer = gguf.GGUFWriter(path, "llama", split_max_tensors=per_shard)
    writer.add_name("tiny-llama")
    writer.add_context_length(context_length)
    writer.add_embedding_length(dims.n_embd)
    writer.add_block_count(dims.n_layer)
    writer.add_feed_forward_length(dims.n_ff)
    writer.add_head_count(dims.n_head)
    writer.add_head_count_kv(dims.n_head_kv)
    writer.add_rope_dimension_count(dims.head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    if file_type is not None:
        writer.add_file_type(file_type)
    if pooling is not None:
        if isinstance(pooling, str):
            pooling = gguf.PoolingType[pooling.upper()]
        writer.add_pooling_type(gguf.PoolingType(int(pooling)))
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    for name, arr in tensors:
        writer.add_tensor(name, arr)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    if n_shards == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i:05d}-of-{n_shards:05d}.gguf") for i in range(1, n_shards + 1)]
