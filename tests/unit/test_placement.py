"""Where each layer of a model goes (`mdl.placement`): filepaths, the names spec/runtime.md gives
unannotated Docker layers, archive layers, unsafe paths, and the --include/--exclude globs."""

from __future__ import annotations

import pytest

from mdl.content.descriptor import Descriptor, Manifest
from mdl.content.digest import sha256_bytes
from mdl.errors import UsageError
from mdl.placement import (UnsafePathError, check_patterns, layer_role, matches, no_match_error, place, select,
                           shard_name)
from mdl.spec import mediatypes as mt

CONFIG = Descriptor(mt.DOCKER_CONFIG_V01, sha256_bytes(b"{}"), 2)


def desc(media_type: str, seed: str, filepath: str | None = None, key: str = mt.ANNOTATION_FILEPATH) -> Descriptor:
    return Descriptor(media_type, sha256_bytes(seed.encode()), len(seed), {key: filepath} if filepath else None)


def manifest(*layers: Descriptor, config: Descriptor = CONFIG) -> Manifest:
    return Manifest.build(config, list(layers))


def test_filepaths_are_normalized_and_nested_paths_kept():
    m = manifest(desc(mt.MODEL_FILE, "a", "tokenizer/./tokenizer.json"), desc(mt.SAFETENSORS, "b", "model.safetensors"))
    assert [p.path for p in place(m, "m")] == ["tokenizer/tokenizer.json", "model.safetensors"]
    assert [p.role for p in place(m, "m")] == ["file", "weight"]


def test_only_modelpack_reads_the_legacy_filepath_key():
    """spec/annotations.md §1: Docker's reader reads no `org.cnai` key; ModelPack readers do."""
    legacy = desc(mt.MODEL_FILE, "c", "config.json", mt.ANNOTATION_CNAI_FILEPATH)
    with pytest.raises(UnsafePathError) as e:
        place(manifest(legacy), "m")
    assert e.value.kind == "unsafe-path" and "no org.cncf.model.filepath" in e.value.message
    cncf = Descriptor(mt.CNCF_CONFIG, sha256_bytes(b"{}"), 2)
    weights = Descriptor("application/vnd.cncf.model.weight.v1.raw", sha256_bytes(b"w"), 1,
                         {mt.ANNOTATION_CNAI_FILEPATH: "model.gguf"})
    assert [p.path for p in place(manifest(weights, config=cncf), "m")] == ["model.gguf"]


def test_unannotated_docker_v01_gets_the_runtime_names():
    m = manifest(desc(mt.GGUF, "1"), desc(mt.GGUF, "2"), desc(mt.GGUF, "3"), desc(mt.LICENSE, "l1"),
                 desc(mt.LICENSE, "l2"), desc(mt.CHAT_TEMPLATE, "t"), desc(mt.MMPROJ, "p"))
    assert [p.path for p in place(m, "m")] == [shard_name(1, 3), shard_name(2, 3), shard_name(3, 3), "license.txt",
                                              "license-2.txt", "template.jinja", "model.mmproj"]
    assert shard_name(2, 3) == "model-00002-of-00003.gguf"
    single = manifest(desc(mt.GGUF, "1"), desc(mt.SAFETENSORS, "s"), desc(mt.DDUF, "d"))
    assert [p.path for p in place(single, "m")] == ["model.gguf", "model.safetensors", "model.dduf"]


def test_archive_layers_are_unpacked_at_the_root_and_selected_by_their_own_path():
    m = manifest(desc(mt.SAFETENSORS, "w"), desc(mt.VLLM_CONFIG_TAR, "v"),
                 desc("application/vnd.cncf.model.weight.config.v1.tar+zstd", "z", "tokenizer"),
                 desc("application/vnd.cncf.model.doc.v1.tar+gzip", "g", "docs"))
    placed = place(m, "m")
    assert [(p.path, p.archive, p.compression) for p in placed] == [
        ("model.safetensors", False, None), ("vllm.config.tar", True, None), ("tokenizer", True, "zstd"),
        ("docs", True, "gzip")]
    assert [p.role for p in placed] == ["weight", "weight.config", "weight.config", "doc"]


@pytest.mark.parametrize("filepath, problem", [
    ("../escape", "'..' segment"), ("/etc/passwd", "absolute"), ("a\\b", "backslash"), ("a\x01b", "control"),
    ("", "empty"), ("./", "model directory itself"), ("a/../../b", "'..' segment"),
])
def test_unsafe_filepaths_are_refused_naming_the_layer(filepath, problem):
    m = manifest(desc(mt.MODEL_FILE, "ok", "ok.txt"), desc(mt.MODEL_FILE, "bad", filepath or "x"))
    if not filepath:  # an empty annotation value: build the layer by hand
        m = manifest(desc(mt.MODEL_FILE, "ok", "ok.txt"),
                     Descriptor(mt.MODEL_FILE, sha256_bytes(b"bad"), 3, {mt.ANNOTATION_FILEPATH: ""}))
    with pytest.raises(UnsafePathError) as e:
        place(m, "org/model")
    assert e.value.kind == "unsafe-path" and problem in e.value.message and "layer 1" in e.value.message


def test_two_layers_at_one_path_are_refused():
    m = manifest(desc(mt.MODEL_FILE, "a", "x/config.json"), desc(mt.MODEL_FILE, "b", "x//config.json"))
    with pytest.raises(UnsafePathError, match="layers 0 and 1"):
        place(m, "m")


def test_a_layer_without_any_name_is_refused():
    with pytest.raises(UnsafePathError, match="gives no file name"):
        place(manifest(desc(mt.MODEL_FILE, "a")), "m")
    with pytest.raises(UnsafePathError, match="gives no file name"):
        place(manifest(desc(mt.CNCF_WEIGHT_RAW, "a")), "m")


def test_globs():
    assert matches("config.json", ["config.json"])
    assert matches("tokenizer/tokenizer.json", ["*.json"])  # no '/': the name matches too
    assert matches("tokenizer/tokenizer.json", ["tokenizer/*"])
    assert not matches("a/tokenizer/x.json", ["tokenizer/*"])
    assert matches("a/b/c.bin", ["a/*"])  # with '/': fnmatch's '*' crosses '/'
    assert not matches("Config.json", ["config.json"])  # case-sensitive
    m = manifest(desc(mt.MODEL_FILE, "a", "config.json"), desc(mt.SAFETENSORS, "b", "m.safetensors"),
                 desc(mt.MODEL_FILE, "c", "tok/tokenizer.json"))
    placed = place(m, "m")
    assert [p.path for p in select(placed, ["*.json"])] == ["config.json", "tok/tokenizer.json"]
    assert [p.path for p in select(placed, [], ["*.safetensors"])] == ["config.json", "tok/tokenizer.json"]
    assert [p.path for p in select(placed, ["*.json"], ["tok/*"])] == ["config.json"]
    assert select(placed) == placed
    err = no_match_error("m", placed, ["*.gguf"], [])
    assert err.kind == "usage" and "--include '*.gguf'" in err.message and "config.json" in err.hint


@pytest.mark.parametrize("pattern", ["", "/abs/*"])
def test_bad_patterns_are_usage_errors(pattern):
    with pytest.raises(UsageError, match="invalid --include pattern"):
        check_patterns([pattern], "--include")


def test_roles():
    assert layer_role(desc(mt.GGUF, "g")) == "weight"
    assert layer_role(desc(mt.CHAT_TEMPLATE, "t")) == "template"
    assert layer_role(desc(mt.CNCF_WEIGHT_CONFIG_RAW, "t", "chat.jinja")) == "template"
    assert layer_role(desc(mt.CNCF_WEIGHT_CONFIG_RAW, "c", "config.json")) == "weight.config"
    assert layer_role(desc(mt.LICENSE, "l")) == "license"
