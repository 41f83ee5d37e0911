import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdl.errors import FormatError, InputPathError
from mdl.formats.safetensors import context_size_from_config, describe_safetensors, read_header
from mdl.formats.units import format_decimal_size
from tests.fixtures import models


def _raw(tmp_path, header: bytes | dict, data: bytes = b"", length: int | None = None, name="x.safetensors"):
    if isinstance(header, dict):
        header = json.dumps(header).encode()
    n = len(header) if length is None else length
    p = tmp_path / name
    p.write_bytes(struct.pack("<Q", n) + header + data)
    return p


def _weights(d):
    return sorted(d.glob("*.safetensors"))


def test_sharded_dir_sums_all_files(safetensors_dir):
    files = _weights(safetensors_dir)
    assert [f.name for f in files] == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    arrays = models._st_arrays(0, "float16")
    info = describe_safetensors(files, safetensors_dir / "config.json")
    assert info.parameters == sum(a.size for a in arrays.values())
    # the first file alone (what Docker reads) has fewer
    assert read_header(files[0]).parameters < info.parameters
    assert info.format == "safetensors"
    assert info.files == files
    assert info.quantization == info.precision == "F16"
    assert info.size_bytes == sum(f.stat().st_size for f in files)
    assert info.size_text == format_decimal_size(info.size_bytes)
    assert info.context_size == 2048
    assert info.metadata == {"format": "pt", "tensor_count": str(len(arrays))}
    cfg = info.docker_config()
    # no architecture in __metadata__: omitted, like Go's omitempty
    assert list(cfg) == ["format", "quantization", "parameters", "size", "safetensors", "context_size"]
    assert cfg["safetensors"]["tensor_count"] == str(len(arrays))


def test_files_sorted(safetensors_dir):
    files = _weights(safetensors_dir)
    assert describe_safetensors(list(reversed(files)), None).files == files


def test_single_file_bf_and_mixed(tmp_path):
    d1 = models.write_safetensors_dir(tmp_path / "one", n_shards=1, dtype="float32")
    info = describe_safetensors(_weights(d1), d1 / "config.json")
    assert [f.name for f in info.files] == ["model.safetensors"]
    assert info.quantization == "F32"
    d2 = models.write_safetensors_dir(tmp_path / "mix", dtype=["float16", "float32"])
    info = describe_safetensors(_weights(d2), None)
    assert info.quantization == info.precision == "mixed"
    assert info.context_size is None


def test_mixed_across_files_only(tmp_path):
    a = _raw(tmp_path, {"a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4, name="a.safetensors")
    b = _raw(tmp_path, {"b": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4, name="b.safetensors")
    assert describe_safetensors([a], None).quantization == "F16"
    assert describe_safetensors([a, b], None).quantization == "mixed"


def test_no_tensors_unknown(tmp_path):
    p = _raw(tmp_path, {"__metadata__": {"architecture": "bert"}})
    info = describe_safetensors([p], None)
    assert info.quantization == "unknown" and info.precision is None
    assert info.parameters == 0
    assert info.architecture == "bert"
    assert info.metadata == {"architecture": "bert", "tensor_count": "0"}


def test_header_length_over_100_mib_refused(tmp_path):
    p = _raw(tmp_path, b"{}", length=100 * 1024 * 1024 + 1)
    with pytest.raises(FormatError, match="over the 104857600-byte limit"):
        read_header(p)


def test_header_length_past_eof_refused(tmp_path):
    p = _raw(tmp_path, b"{}", length=4096)
    with pytest.raises(FormatError, match="runs past the end of the file"):
        read_header(p)


@pytest.mark.parametrize("header, fragment", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe{}", "not valid JSON"),
    (b"[1, 2]", "expected an object"),
    (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
    (b'{"__metadata__": {"a": 1}}', "__metadata__"),
    (b'{"t": 5}', "not an object"),
    (b'{"t": {"shape": [1], "data_offsets": [0, 2]}}', "dtype"),
    (b'{"t": {"dtype": "F16", "shape": [-1], "data_offsets": [0, 2]}}', "shape"),
    (b'{"t": {"dtype": "F16", "shape": [1.5], "data_offsets": [0, 2]}}', "shape"),
    (b'{"t": {"dtype": "F16", "shape": [1], "data_offsets": [0]}}', "data_offsets"),
    (b'{"t": {"dtype": "F16", "shape": [1], "data_offsets": [2, 0]}}', "outside"),
    (b'{"t": {"dtype": "F16", "shape": [1], "data_offsets": [0, 1000000]}}', "outside"),
    (b'{"t": {"dtype": "F16", "shape": [4], "data_offsets": [0, 2]}}', "needs 8 bytes"),
])
def test_bad_headers(tmp_path, header, fragment):
    p = _raw(tmp_path, header, b"\0" * 16)
    with pytest.raises(FormatError) as e:
        read_header(p)
    assert fragment in str(e.value)
    assert e.value.format == "safetensors"


def test_short_file(tmp_path):
    p = tmp_path / "s.safetensors"
    p.write_bytes(b"\x01\x02")
    with pytest.raises(FormatError, match="too short"):
        read_header(p)


def test_unknown_dtype_accepted(tmp_path):
    p = _raw(tmp_path, {"t": {"dtype": "F7_NEW", "shape": [3], "data_offsets": [0, 5]}}, b"\0" * 5)
    assert read_header(p).parameters == 3


def test_paths(tmp_path):
    with pytest.raises(InputPathError, match="no such file"):
        read_header(tmp_path / "absent.safetensors")
    with pytest.raises(InputPathError, match="directory"):
        read_header(tmp_path)


@pytest.mark.parametrize("config, expected", [
    ({"max_position_embeddings": 4096, "n_ctx": 10}, 4096),
    ({"n_ctx": 1024, "n_positions": 2048}, 1024),
    ({"n_positions": 2048}, 2048),
    ({"max_length": 77}, 77),
    ({"max_sequence_length": 512}, 512),
    ({"model_max_length": 333}, 333),
    ({"seq_length": 8192}, 8192),
    ({"max_position_embeddings": 0, "n_positions": 64}, 64),
    ({"max_position_embeddings": "4096"}, None),
    ({"max_position_embeddings": 4096.0}, None),
    ({"max_position_embeddings": True}, None),
    ({"max_position_embeddings": 2**31}, None),
    ({"hidden_size": 4}, None),
])
def test_context_size_from_config(tmp_path, config, expected):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(config))
    assert context_size_from_config(p) == expected


@pytest.mark.parametrize("content", [b"{oops", b"[]", b"\xff"])
def test_bad_config_json_gives_none(tmp_path, content):
    p = tmp_path / "config.json"
    p.write_bytes(content)
    assert context_size_from_config(p) is None
    assert context_size_from_config(tmp_path / "absent.json") is None
    assert context_size_from_config(None) is None


def test_hf_cache_snapshot_follows_symlinks(hf_cache_snapshot):
    files = _weights(hf_cache_snapshot)
    assert files and all(f.is_symlink() for f in files)
    info = describe_safetensors(files, hf_cache_snapshot / "config.json")
    assert info.parameters == sum(a.size for a in models._st_arrays(0, "float16").values())
    assert info.context_size == 2048


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_file_only_format_error(tmp_path_factory, data):
    d = tmp_path_factory.mktemp("s")
    src = models.write_safetensors_dir(d / "m", n_shards=1, with_config=False, with_tokenizer=False)
    raw = bytearray((src / "model.safetensors").read_bytes())
    (n,) = struct.unpack("<Q", raw[:8])
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, 8 + n - 1))  # the length and the JSON header
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.none() | st.integers(0, len(raw)))
    p = d / "x.safetensors"
    p.write_bytes(bytes(raw[:cut]))
    try:
        describe_safetensors([p], None)
    except FormatError:
        pass
