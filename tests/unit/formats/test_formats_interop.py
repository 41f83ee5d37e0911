"""Docker's own test vectors (../shared/interop/docker-model-runner): what Docker derives from them."""

import hashlib

import pytest

from mdl.formats.gguf import shard_files
from mdl.formats.gguf_docker import describe_gguf

EXPECTED_GGUF = {
    "some.parameter.uint8": "18",
    "some.parameter.int8": "-19",
    "some.parameter.uint16": "4660",
    "some.parameter.int16": "-4661",
    "some.parameter.uint32": "305419896",
    "some.parameter.int32": "-305419897",
    "some.parameter.float32": "0.123457",
    "some.parameter.uint64": "1311768467463790320",
    "some.parameter.int64": "-1311768467463790321",
    "some.parameter.float64": "0.123457",
    "some.parameter.bool": "true",
    "some.parameter.string": "hello world",
    "some.parameter.arr.i16": "1, 2, 3, 4",
}


@pytest.fixture
def docker_assets(interop_dir):
    d = interop_dir / "docker-model-runner"
    if not d.is_dir():
        pytest.skip(f"{d} absent")
    return d


def test_vectors_are_the_documented_files(docker_assets):
    assert hashlib.sha256((docker_assets / "dummy.gguf").read_bytes()).hexdigest() == (
        "c7790a0a70161f1bfd441cf157313e9efb8fcd1f0831193101def035ead23b32")


def test_dummy_gguf_like_docker(docker_assets):
    info = describe_gguf(docker_assets / "dummy.gguf")
    cfg = info.docker_config()
    assert cfg["format"] == "gguf"
    assert cfg["parameters"] == "183"
    assert cfg["architecture"] == "llama"
    assert cfg["quantization"] == "Unknown"
    assert cfg["size"] == "864B"
    assert "context_size" not in cfg
    for key, value in EXPECTED_GGUF.items():
        assert cfg["gguf"][key] == value, key
    assert info.parameters == 183 and info.size_bytes == 864


@pytest.mark.parametrize("shard", ["dummy-00001-of-00002.gguf", "dummy-00002-of-00002.gguf"])
def test_either_shard_finds_both(docker_assets, shard):
    expected = [docker_assets / "dummy-00001-of-00002.gguf", docker_assets / "dummy-00002-of-00002.gguf"]
    assert shard_files(docker_assets / shard) == expected
    info = describe_gguf(docker_assets / shard)
    assert info.files == expected
    cfg = info.docker_config()
    assert cfg["parameters"] == "183"
    assert cfg["size"] == "864B"
    assert cfg["architecture"] == "llama"
    for key, value in EXPECTED_GGUF.items():
        assert cfg["gguf"][key] == value, key
    assert "split.no" not in cfg["gguf"]
