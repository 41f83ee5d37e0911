import struct
import time
import tracemalloc

import gguf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdl.errors import FormatError, InputPathError, MissingShardError
from mdl.formats import gguf as gguf_reader
from mdl.formats.gguf import GGUFArray, read_header, shard_files
from mdl.formats.gguf_docker import describe_gguf
from tests.fixtures import models

from tests.fixtures.ggufbuild import ARR, BOOL, F32, I32, STR, U8, U32, U64, build, kv, s, small_valid


def _write(tmp_path, data: bytes, name="x.gguf"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


# --- generated model, checked against gguf.GGUFReader ------------------------------------------


def test_generated_gguf_matches_gguf_reader(tiny_gguf):
    ours = read_header(tiny_gguf)
    ref = gguf.GGUFReader(tiny_gguf)
    assert ours.version == 3
    assert ours.data_offset == ref.data_offset
    assert ours.alignment == ref.alignment
    assert [t.name for t in ours.tensors] == [t.name for t in ref.tensors]
    assert [t.dims for t in ours.tensors] == [tuple(int(d) for d in t.shape) for t in ref.tensors]
    assert [t.n_bytes for t in ours.tensors] == [int(t.n_bytes) for t in ref.tensors]
    assert ours.parameters == sum(int(t.n_elements) for t in ref.tensors)
    keys = [k for k in ref.fields if not k.startswith("GGUF.")]
    assert list(ours.kv) == keys
    for key in keys:
        expected = ref.fields[key].contents()
        got = ours.get(key)
        if isinstance(got, GGUFArray):  # longer than 50: skipped, length kept
            assert got.skipped and got.length == len(expected), key
        else:
            assert got == expected, key


def test_describe_generated_gguf(tiny_gguf):
    ref = gguf.GGUFReader(tiny_gguf)
    info = describe_gguf(tiny_gguf)
    assert info.format == "gguf"
    assert info.files == [tiny_gguf]
    assert info.architecture == ref.fields["general.architecture"].contents() == "llama"
    assert info.parameters == sum(int(t.n_elements) for t in ref.tensors)
    assert info.context_size == ref.fields["llama.context_length"].contents() == 256
    assert info.size_bytes == tiny_gguf.stat().st_size - ref.data_offset
    # no general.file_type: guessed from the tensor types like gguf-parser-go does (all F32)
    assert info.quantization == "MOSTLY_F32"
    md = info.metadata
    assert md["llama.embedding_length"] == "64"
    assert md["llama.attention.layer_norm_rms_epsilon"] == "0.000010"
    assert md["llama.rope.freq_base"] == "10000.000000"
    assert md["tokenizer.ggml.add_bos_token"] == "true"
    assert md["tokenizer.chat_template"] == models.DEFAULT_TEMPLATE
    # the vocabulary arrays are longer than 50 elements: left out
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        assert key not in md
    cfg = info.docker_config()
    assert list(cfg) == ["format", "quantization", "parameters", "architecture", "size", "gguf",
                         "context_size"]


def test_file_type_named_like_docker(tmp_path):
    p = models.write_tiny_gguf(tmp_path / "t.gguf", file_type=15, context_length=4096)[0]
    info = describe_gguf(p)
    assert info.quantization == "MOSTLY_Q4_K_M"
    assert info.context_size == 4096
    assert info.metadata["general.file_type"] == "15"


def test_file_type_absent_and_unguessable_is_unknown(tmp_path):
    p = _write(tmp_path, build([("general.architecture", STR, "llama")],
                               [("tensor_0", [2], 0, b"\0" * 8)]))
    assert describe_gguf(p).quantization == "Unknown"


def test_architecture_defaults_to_llama_and_context_is_absent(tmp_path):
    p = _write(tmp_path, build([("x", U8, 1)]))
    info = describe_gguf(p)
    assert info.architecture == "llama"
    assert info.context_size is None
    assert info.parameters == 0


def test_arrays_up_to_50_kept_longer_left_out(tmp_path):
    p = _write(tmp_path, build([
        ("a.50", ARR, (I32, list(range(50)))),
        ("a.51", ARR, (I32, list(range(51)))),
        ("a.str3", ARR, (STR, ["x", "y", "z"])),
        ("a.str51", ARR, (STR, ["w"] * 51)),
        ("a.bool", ARR, (BOOL, [1, 0])),
        ("a.nested", ARR, (ARR, [(U8, [1, 2]), (U8, [3])])),
    ]))
    md = describe_gguf(p).metadata
    assert md["a.50"] == ", ".join(str(i) for i in range(50))
    assert "a.51" not in md and "a.str51" not in md
    assert md["a.str3"] == "x, y, z"
    assert md["a.bool"] == "true, false"
    assert md["a.nested"] == ""  # Docker does not render nested arrays
    h = read_header(p)
    assert h.get("a.51").length == 51 and h.get("a.51").skipped
    assert h.get("a.str51").length == 51


def test_keep_arrays_up_to_parameter(tmp_path):
    p = _write(tmp_path, build([("a", ARR, (STR, ["x"] * 10))]))
    assert read_header(p, keep_arrays_up_to=10).get("a") == ["x"] * 10
    assert read_header(p, keep_arrays_up_to=9).get("a").skipped


def test_floats_and_invalid_utf8_like_go(tmp_path):
    p = _write(tmp_path, build([
        ("f.inf", F32, float("inf")), ("f.ninf", F32, float("-inf")), ("f.nan", F32, float("nan")),
        ("f.neg", F32, -2.5), ("s.bad", STR, b"ok\xff"),
    ]))
    md = describe_gguf(p).metadata
    assert md["f.inf"] == "+Inf" and md["f.ninf"] == "-Inf" and md["f.nan"] == "NaN"
    assert md["f.neg"] == "-2.500000"
    assert md["s.bad"] == "ok\ufffd"


# --- shards -------------------------------------------------------------------------------------


def test_shards_found_from_any_shard(tiny_gguf_shards, tiny_gguf):
    whole = describe_gguf(tiny_gguf)
    for shard in tiny_gguf_shards:
        assert shard_files(shard) == tiny_gguf_shards
        info = describe_gguf(shard)
        assert info.files == tiny_gguf_shards
        assert info.parameters == whole.parameters
        assert info.architecture == "llama" and info.context_size == 256
        assert "split.no" not in info.metadata
        assert info.metadata["split.count"] == "3"
    ref_params = sum(int(t.n_elements) for f in tiny_gguf_shards for t in gguf.GGUFReader(f).tensors)
    assert whole.parameters == ref_params


def test_missing_shard_named(tiny_gguf_shards):
    missing = tiny_gguf_shards[1]
    missing.unlink()
    for given_shard in (tiny_gguf_shards[0], tiny_gguf_shards[2]):
        with pytest.raises(MissingShardError) as e:
            shard_files(given_shard)
        assert e.value.path == str(missing)
        assert "tiny-00002-of-00003.gguf" in str(e.value)
        assert "3 files" in str(e.value)
    with pytest.raises(MissingShardError):
        describe_gguf(tiny_gguf_shards[0])


@pytest.mark.parametrize("name", ["model.gguf", "model-00001-of-00000.gguf", "model-00000-of-00002.gguf",
                                  "model-1-of-2.gguf", "model-00001-of-00002.gguf.bak"])
def test_not_sharded_names(tmp_path, name):
    assert shard_files(tmp_path / name) == [tmp_path / name]


# --- hostile input ------------------------------------------------------------------------------


def _expect_format_error(path, fragment, **kw):
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(FormatError) as e:
            read_header(path, **kw)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 1.0
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes"
    assert fragment in str(e.value), str(e.value)
    assert e.value.format == "GGUF"
    return e.value


def test_wrong_magic(tmp_path):
    _expect_format_error(_write(tmp_path, b"GGUX" + small_valid()[4:]), "bad magic")


@pytest.mark.parametrize("version, fragment", [(1, "version 1 is not supported"),
                                               (4, "unsupported GGUF version 4"),
                                               (0, "unsupported GGUF version 0")])
def test_versions_refused(tmp_path, version, fragment):
    data = bytearray(small_valid())
    data[4:8] = struct.pack("<I", version)
    _expect_format_error(_write(tmp_path, bytes(data)), fragment)


def test_big_endian_refused(tmp_path):
    data = bytearray(small_valid())
    data[4:8] = struct.pack(">I", 3)
    _expect_format_error(_write(tmp_path, bytes(data)), "big-endian")


@pytest.mark.parametrize("data, fragment", [(b"", "too short"), (b"GGU", "too short"),
                                            (b"GGUF", "truncated: version")])
def test_tiny_files(tmp_path, data, fragment):
    _expect_format_error(_write(tmp_path, data), fragment)


def test_truncation_at_every_offset(tmp_path):
    data = small_valid()
    p = tmp_path / "t.gguf"
    for cut in range(len(data)):
        p.write_bytes(data[:cut])
        with pytest.raises(FormatError):
            read_header(p)
    p.write_bytes(data)
    assert read_header(p).parameters == 12


def test_truncation_of_a_real_model(tiny_gguf, tmp_path):
    data = tiny_gguf.read_bytes()
    header_end = read_header(tiny_gguf).data_offset
    p = tmp_path / "cut.gguf"
    cuts = list(range(0, header_end, max(1, header_end // 300))) + [header_end, len(data) - 1]
    for cut in cuts:
        p.write_bytes(data[:cut])
        with pytest.raises(FormatError):
            describe_gguf(p)


@pytest.mark.parametrize("bufsize", [1, 7, 64, 1000, 4096])
def test_small_buffers_read_the_same(tiny_gguf, monkeypatch, bufsize):
    """The buffer refill and string-skipping paths give the same header at any buffer size."""
    expected = read_header(tiny_gguf)
    monkeypatch.setattr(gguf_reader._Reader, "BUFSIZE", bufsize)
    got = read_header(tiny_gguf)
    assert got.kv == expected.kv
    assert got.tensors == expected.tensors
    assert got.data_offset == expected.data_offset
    assert read_header(tiny_gguf, keep_arrays_up_to=10**6).get("tokenizer.ggml.tokens") == (
        gguf.GGUFReader(tiny_gguf).fields["tokenizer.ggml.tokens"].contents())


def test_truncation_at_every_offset_small_buffer(tmp_path, monkeypatch):
    monkeypatch.setattr(gguf_reader._Reader, "BUFSIZE", 16)
    data = small_valid()
    p = tmp_path / "t.gguf"
    for cut in range(len(data)):
        p.write_bytes(data[:cut])
        with pytest.raises(FormatError):
            read_header(p, keep_arrays_up_to=0)
    p.write_bytes(data)
    assert read_header(p, keep_arrays_up_to=0).get("t.strs").length == 60


def test_huge_kv_count(tmp_path):
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 2**62) + kv("a", U8, 1)
    _expect_format_error(_write(tmp_path, data), "key/value count")


def test_huge_tensor_count(tmp_path):
    data = b"GGUF" + struct.pack("<IQQ", 3, 2**63, 0)
    _expect_format_error(_write(tmp_path, data), "tensor count")


def test_huge_key_length(tmp_path):
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2**60) + b"abc" * 30
    _expect_format_error(_write(tmp_path, data), "exceeds")


def test_huge_string_value_length(tmp_path):
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + s("k") + struct.pack("<IQ", STR, 2**40) + b"x" * 100
    _expect_format_error(_write(tmp_path, data), "length 1099511627776")


@pytest.mark.parametrize("etype", [U8, U64, STR, ARR])
@pytest.mark.parametrize("keep", [0, 50])
def test_huge_array_length(tmp_path, etype, keep):
    data = (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + s("k") + struct.pack("<IIQ", ARR, etype, 2**61)
            + b"\0" * 64)
    _expect_format_error(_write(tmp_path, data), "array length", keep_arrays_up_to=keep)


def test_string_array_element_past_end_while_skipping(tmp_path):
    body = s("k") + struct.pack("<IIQ", ARR, STR, 60) + s("ok") * 58 + struct.pack("<Q", 2**50) + b"zz" * 8
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + body
    _expect_format_error(_write(tmp_path, data), "truncated")


@pytest.mark.parametrize("position", [0, 30, 59])
@pytest.mark.parametrize("length", [2**63 - 1, 2**63, 2**64 - 1, 5000])
def test_absurd_string_length_inside_skipped_array(tmp_path, position, length):
    items = [s("ok")] * 60
    items[position] = struct.pack("<Q", length) + b"ok"
    body = s("k") + struct.pack("<IIQ", ARR, STR, 60) + b"".join(items)
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + body
    _expect_format_error(_write(tmp_path, data), "truncated")


def test_unknown_value_type(tmp_path):
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + s("k") + struct.pack("<I", 77) + b"\0" * 32
    _expect_format_error(_write(tmp_path, data), "unknown value type 77")


def test_arrays_nested_too_deep(tmp_path):
    v = (U8, [1])
    for _ in range(6):
        v = (ARR, [v])
    _expect_format_error(_write(tmp_path, build([("deep", ARR, v)])), "nested")


@pytest.mark.parametrize("alignment", [0, 3, 48])
def test_bad_alignment(tmp_path, alignment):
    _expect_format_error(_write(tmp_path, build([("general.alignment", U32, alignment)])), "alignment")


def test_alignment_of_wrong_type(tmp_path):
    _expect_format_error(_write(tmp_path, build([("general.alignment", U64, 32)])), "alignment")


def test_too_many_dimensions(tmp_path):
    data = build([], [("t", [1, 1, 1, 1, 1], 0, b"\0" * 4)])
    _expect_format_error(_write(tmp_path, data), "5 dimensions")


def test_huge_dims(tmp_path):
    data = build([], [("t", [2**20, 2**20], 0, b"\0" * 32)])
    _expect_format_error(_write(tmp_path, data), "past the end of the file")


def test_absurd_dims(tmp_path):
    data = build([], [("t", [2**63, 4], 0, b"\0" * 32)])
    _expect_format_error(_write(tmp_path, data), "absurd dimensions")


def test_block_size_mismatch(tmp_path):
    data = build([], [("t", [31], 2, b"\0" * 18)])  # Q4_0 blocks hold 32 elements
    _expect_format_error(_write(tmp_path, data), "block size")


def test_tensor_offset_past_end(tmp_path):
    data = bytearray(build([], [("t", [4], 0, b"\0" * 16)]))
    # patch the tensor's offset (last 8 bytes of its info, before the padding) to point past the end
    info_end = 4 + 4 + 8 + 8 + len(s("t")) + 4 + 8 + 4 + 8
    data[info_end - 8:info_end] = struct.pack("<Q", 1 << 20)
    _expect_format_error(_write(tmp_path, bytes(data)), "past the end of the file")


def test_unknown_tensor_type_counts_parameters(tmp_path):
    p = _write(tmp_path, build([], [("t", [3, 5], 200, b"\0" * 8)]))
    assert read_header(p).parameters == 15


def test_paths(tmp_path):
    with pytest.raises(InputPathError, match="no such file"):
        read_header(tmp_path / "absent.gguf")
    with pytest.raises(InputPathError, match="directory"):
        read_header(tmp_path)


_VALID = small_valid()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8),
       st.integers(0, 60))
def test_mutated_header_only_format_error(tmp_path_factory, mutations, keep):
    data = bytearray(_VALID)
    for i, b in mutations:
        data[i] = b
    p = tmp_path_factory.mktemp("m") / "m.gguf"
    p.write_bytes(bytes(data))
    try:
        read_header(p, keep_arrays_up_to=keep)
        describe_gguf(p)
    except FormatError:
        pass
