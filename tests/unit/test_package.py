"""`mdl package` into a local store: layers, configs, manifests, determinism and bad input."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mdl.store import LayoutStore
from mdl.errors import (FormatError, InputPathError, MissingShardError, ModelNotFoundError, UsageError)
from mdl.ops.package import PackageRequest, package
from mdl.reference import parse_reference
from mdl.spec import mediatypes as mt
from mdl.spec import schemas
from mdl.model_check import check_model_in_store
from tests.fixtures.models import (write_dduf, write_hf_cache_snapshot, write_safetensors_dir,
                                   write_tiny_gguf)

CREATED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path) -> LayoutStore:
    return LayoutStore(tmp_path / "store")


def run(store, target="ai/tiny:latest", **kw):
    return package(store, PackageRequest(**kw), parse_reference(target))


def config_of(store, result) -> dict:
    return json.loads(store.read_blob(result.manifest.config.digest))


def blob_files(store) -> list[Path]:
    d = store.root / "blobs" / "sha256"
    return sorted(d.iterdir()) if d.exists() else []


def test_gguf_model_is_docker_v01_with_one_annotated_layer(store, tmp_path):
    [gguf] = write_tiny_gguf(tmp_path / "tiny.gguf")
    result = run(store, gguf=str(gguf))
    m = result.manifest
    assert m.config.media_type == mt.DOCKER_CONFIG_V01
    assert m.artifact_type is None
    assert [d.media_type for d in m.layers] == [mt.GGUF]
    ann = m.layers[0].annotations
    assert ann[mt.ANNOTATION_FILEPATH] == "tiny.gguf"
    assert ann[mt.ANNOTATION_MEDIATYPE_UNTESTED] == "false"
    meta = json.loads(ann[mt.ANNOTATION_FILE_METADATA])
    assert meta["name"] == "tiny.gguf" and meta["size"] == gguf.stat().st_size and meta["typeflag"] == 48
    cfg = config_of(store, result)
    assert cfg["config"]["format"] == "gguf"
    assert cfg["config"]["architecture"] == "llama"
    assert cfg["config"]["context_size"] == 256
    assert cfg["rootfs"] == {"type": "rootfs", "diff_ids": [m.layers[0].digest]}
    assert schemas.validate(cfg, schemas.DOCKER_CONFIG_WRITTEN) == []
    assert store.resolve("ai/tiny") == result.digest
    assert check_model_in_store(store, result.digest).ok


def test_layer_order_weights_licenses_template_mmproj(store, tmp_path):
    shards = write_tiny_gguf(tmp_path / "m.gguf", n_shards=3)
    lic1, lic2 = tmp_path / "LICENSE-a", tmp_path / "b.txt"
    lic1.write_text("license a\n")
    lic2.write_text("license b\n")
    tpl = tmp_path / "t.jinja"
    tpl.write_text("{{ messages }}")
    proj = tmp_path / "proj.mmproj"
    proj.write_bytes(b"projector")
    result = run(store, gguf=str(shards[1]), licenses=[str(lic2), str(lic1)], chat_template=str(tpl),
                 mmproj=str(proj), context_size=4096)
    types = [d.media_type for d in result.manifest.layers]
    assert types == [mt.GGUF] * 3 + [mt.LICENSE, mt.LICENSE, mt.CHAT_TEMPLATE, mt.MMPROJ]
    paths = [d.annotations[mt.ANNOTATION_FILEPATH] for d in result.manifest.layers]
    assert paths == [s.name for s in shards] + ["b.txt", "LICENSE-a", "t.jinja", "proj.mmproj"]
    assert config_of(store, result)["config"]["context_size"] == 4096
    assert check_model_in_store(store, result.digest).ok


def test_missing_shard_is_named_and_nothing_is_stored(store, tmp_path):
    shards = write_tiny_gguf(tmp_path / "m.gguf", n_shards=3)
    shards[2].unlink()
    with pytest.raises(MissingShardError) as e:
        run(store, gguf=str(shards[0]))
    assert shards[2].name in e.value.message
    assert blob_files(store) == []


def test_safetensors_directory_is_v02_one_layer_per_file(store, tmp_path):
    d = write_safetensors_dir(tmp_path / "model", n_shards=2, license_text="MIT")
    (d / ".hidden").write_text("skip me")
    (d / "sub").mkdir()
    (d / "sub" / "extra.json").write_text("{}")
    result = run(store, safetensors_dir=str(d))
    m = result.manifest
    assert m.config.media_type == mt.DOCKER_CONFIG_V02
    paths = [l.annotations[mt.ANNOTATION_FILEPATH] for l in m.layers]
    expected = sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert paths == expected
    kinds = {l.annotations[mt.ANNOTATION_FILEPATH]: l.media_type for l in m.layers}
    assert kinds["model-00001-of-00002.safetensors"] == mt.SAFETENSORS
    assert kinds["LICENSE"] == mt.LICENSE
    assert kinds["config.json"] == mt.MODEL_FILE
    assert kinds["sub/extra.json"] == mt.MODEL_FILE
    cfg = config_of(store, result)
    assert cfg["config"]["format"] == "safetensors"
    assert check_model_in_store(store, result.digest).ok


def test_hugging_face_cache_snapshot_packages(store, tmp_path):
    snap = write_hf_cache_snapshot(tmp_path / "hub")
    assert any(p.is_symlink() for p in snap.iterdir())
    result = run(store, safetensors_dir=str(snap))
    assert any(l.media_type == mt.SAFETENSORS for l in result.manifest.layers)
    assert check_model_in_store(store, result.digest).ok


def test_symlink_out_of_the_model_directory_is_refused(store, tmp_path):
    d = write_safetensors_dir(tmp_path / "model")
    secret = tmp_path / "secret.txt"
    secret.write_text("not part of the model")
    (d / "notes.txt").symlink_to(secret)
    with pytest.raises(InputPathError) as e:
        run(store, safetensors_dir=str(d))
    assert "outside the model directory" in e.value.message
    assert blob_files(store) == []


def test_dduf(store, tmp_path):
    f = write_dduf(tmp_path / "pipe.dduf")
    result = run(store, dduf=str(f))
    cfg = config_of(store, result)
    assert result.manifest.config.media_type == mt.DOCKER_CONFIG_V01
    assert [l.media_type for l in result.manifest.layers] == [mt.DDUF]
    assert cfg["config"]["format"] == "dduf"
    assert cfg["config"]["diffusers"] == {"layout": "dduf", "dduf_file": "pipe.dduf"}


def test_cncf_format_maps_layers_and_config(store, tmp_path):
    d = write_safetensors_dir(tmp_path / "model", license_text="Apache-2.0")
    tpl = tmp_path / "chat_template.jinja"
    tpl.write_text("{{ x }}")
    result = run(store, safetensors_dir=str(d), chat_template=str(tpl), format="cncf", created=CREATED)
    m = result.manifest
    assert m.artifact_type == mt.CNCF_ARTIFACT_TYPE
    assert m.config.media_type == mt.CNCF_CONFIG
    kinds = {l.annotations[mt.ANNOTATION_FILEPATH]: l.media_type for l in m.layers}
    assert kinds["model-00001-of-00002.safetensors"] == mt.CNCF_WEIGHT_RAW
    assert kinds["config.json"] == mt.CNCF_WEIGHT_CONFIG_RAW
    assert kinds["chat_template.jinja"] == mt.CNCF_WEIGHT_CONFIG_RAW
    assert kinds["LICENSE"] == mt.CNCF_DOC_RAW
    cfg = config_of(store, result)
    assert cfg["descriptor"]["createdAt"] == "2025-01-02T03:04:05Z"
    assert cfg["config"]["format"] == "safetensors"
    assert cfg["modelfs"] == {"type": "layers", "diffIds": [l.digest for l in m.layers]}
    assert check_model_in_store(store, result.digest).ok


def test_cncf_config_passes_the_upstream_schema(store, tmp_path, interop_dir):
    from jsonschema import Draft202012Validator

    upstream = json.loads((interop_dir / "modelpack" / "config-schema.json").read_text())
    [gguf] = write_tiny_gguf(tmp_path / "tiny.gguf")
    result = run(store, gguf=str(gguf), format="cncf")
    errors = list(Draft202012Validator(upstream).iter_errors(config_of(store, result)))
    assert errors == []


def test_reproducible_build_gives_the_same_digest_from_different_copies(tmp_path):
    (tmp_path / "a").mkdir()
    [a] = write_tiny_gguf(tmp_path / "a" / "tiny.gguf", seed=3)
    b = tmp_path / "b" / "tiny.gguf"
    b.parent.mkdir()
    b.write_bytes(a.read_bytes())
    os.chmod(b, 0o600)
    os.utime(b, (1, 1))
    r1 = run(LayoutStore(tmp_path / "s1"), gguf=str(a), created=CREATED)
    r2 = run(LayoutStore(tmp_path / "s2"), gguf=str(b), created=CREATED)
    assert r1.digest == r2.digest
    meta = json.loads(r1.manifest.layers[0].annotations[mt.ANNOTATION_FILE_METADATA])
    assert meta == {"name": "tiny.gguf", "mode": 0o644, "uid": 0, "gid": 0, "size": a.stat().st_size,
                    "mtime": "2025-01-02T03:04:05Z", "typeflag": 48}


def test_without_created_the_time_is_now(store, tmp_path):
    [gguf] = write_tiny_gguf(tmp_path / "tiny.gguf")
    before = datetime.now(timezone.utc)
    result = run(store, gguf=str(gguf))
    created = datetime.fromisoformat(config_of(store, result)["descriptor"]["created"].replace("Z", "+00:00"))
    assert before.replace(microsecond=0) <= created <= datetime.now(timezone.utc)


def test_same_filesystem_links_instead_of_copying(store, tmp_path):
    [gguf] = write_tiny_gguf(tmp_path / "tiny.gguf")
    result = run(store, gguf=str(gguf))
    assert store.blob_path(result.manifest.layers[0].digest).stat().st_ino == gguf.stat().st_ino


def test_from_adds_a_license_and_context_size(store, tmp_path):
    [gguf] = write_tiny_gguf(tmp_path / "tiny.gguf")
    base = run(store, gguf=str(gguf), created=CREATED)
    lic = tmp_path / "LICENSE"
    lic.write_text("MIT")
    result = run(store, target="ai/tiny:licensed", from_ref="ai/tiny", licenses=[str(lic)], context_size=128,
                 created=CREATED)
    assert [l.digest for l in result.manifest.layers[:1]] == [base.manifest.layers[0].digest]
    assert [l.media_type for l in result.manifest.layers] == [mt.GGUF, mt.LICENSE]
    assert config_of(store, result)["config"]["context_size"] == 128
    assert check_model_in_store(store, result.digest).ok
    with pytest.raises(ModelNotFoundError):
        run(store, target="ai/x", from_ref="ai/absent")


def test_from_hashes_only_the_files_it_adds(store, tmp_path, monkeypatch):
    """`package --from` takes the stored layers over by descriptor: it reads and hashes none of them."""
    [gguf] = write_tiny_gguf(tmp_path / "tiny.gguf")
    base = run(store, gguf=str(gguf))
    weights = base.manifest.layers[0].digest
    lic = tmp_path / "LICENSE"
    lic.write_text("MIT")
    imported, opened = [], []
    real_import, real_open = LayoutStore.import_file, LayoutStore.open_blob
    monkeypatch.setattr(LayoutStore, "import_file",
                        lambda self, path, **kw: imported.append(Path(path).name) or real_import(self, path, **kw))
    monkeypatch.setattr(LayoutStore, "open_blob",
                        lambda self, digest, *a, **kw: opened.append(digest) or real_open(self, digest, *a, **kw))
    result = run(store, target="ai/tiny:licensed", from_ref="ai/tiny", licenses=[str(lic)])
    assert imported == ["LICENSE"]
    assert weights not in opened and result.manifest.layers[0].digest == weights


def test_ctrl_c_while_hashing_leaves_no_blob_behind(store, tmp_path, monkeypatch):
    """Interrupted while the files hash: the files not started are dropped, and the blob the running
    import published is removed again, like any failure's."""
    import time

    import mdl.ops.package as package_mod

    model = write_safetensors_dir(tmp_path / "model", n_shards=3)
    store.write_blob(b"kept")
    before = sorted(p.name for p in (store.root / "blobs" / "sha256").iterdir())
    started = []
    real_import = LayoutStore.import_file

    def slow_import(self, path, **kw):
        started.append(Path(path).name)
        time.sleep(0.3)
        return real_import(self, path, **kw)

    def interrupted(*names):
        raise KeyboardInterrupt

    monkeypatch.setattr(package_mod, "hash_workers", lambda n: 1)
    monkeypatch.setattr(LayoutStore, "import_file", slow_import)
    monkeypatch.setattr(package_mod.schemas, "warm_up", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(store, safetensors_dir=str(model))
    assert len(started) == 1 and len(list(model.iterdir())) > 1
    assert sorted(p.name for p in (store.root / "blobs" / "sha256").iterdir()) == before


def test_retagging_moves_the_tag(store, tmp_path):
    [a] = write_tiny_gguf(tmp_path / "a.gguf", seed=1)
    [b] = write_tiny_gguf(tmp_path / "b.gguf", seed=2)
    first = run(store, gguf=str(a))
    second = run(store, gguf=str(b))
    assert second.previous == first.digest
    assert store.resolve("ai/tiny:latest") == second.digest


@pytest.mark.parametrize("kwargs", [
    {},
    {"gguf": "x.gguf", "dduf": "y.dduf"},
    {"gguf": "x.gguf", "format": "oci"},
    {"gguf": "x.gguf", "context_size": 0},
])
def test_bad_requests_are_usage_errors(store, kwargs):
    with pytest.raises(UsageError):
        run(store, **kwargs)


def test_bad_inputs_name_the_file_and_store_nothing(store, tmp_path):
    not_gguf = tmp_path / "fake.gguf"
    not_gguf.write_bytes(b"NOPE" + bytes(100))
    with pytest.raises(FormatError) as e:
        run(store, gguf=str(not_gguf))
    assert str(not_gguf) in e.value.message
    with pytest.raises(InputPathError) as e:
        run(store, gguf=str(tmp_path / "absent.gguf"))
    assert "not found" in e.value.message
    with pytest.raises(InputPathError) as e:
        run(store, gguf=str(tmp_path))
    assert "is a directory" in e.value.message
    [gguf] = write_tiny_gguf(tmp_path / "ok.gguf")
    with pytest.raises(InputPathError) as e:
        run(store, gguf=str(gguf), licenses=[str(tmp_path / "NOLICENSE")])
    assert "license file not found" in e.value.message
    bad_tpl = tmp_path / "bad.jinja"
    bad_tpl.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InputPathError) as e:
        run(store, gguf=str(gguf), chat_template=str(bad_tpl))
    assert "UTF-8" in e.value.message
    with pytest.raises(InputPathError) as e:
        run(store, safetensors_dir=str(gguf))
    assert "must be a directory" in e.value.message
    assert blob_files(store) == []


def test_interop_dummy_gguf_matches_docker(store, interop_dir):
    dmr = interop_dir / "docker-model-runner"
    result = run(store, gguf=str(dmr / "dummy.gguf"), licenses=[str(dmr / "license.txt")],
                 chat_template=str(dmr / "template.jinja"), mmproj=str(dmr / "dummy.mmproj"))
    cfg = config_of(store, result)["config"]
    assert (cfg["format"], cfg["parameters"], cfg["architecture"], cfg["quantization"], cfg["size"]) == \
        ("gguf", "183", "llama", "Unknown", "864B")
    assert cfg["gguf"]["some.parameter.arr.i16"] == "1, 2, 3, 4"
    assert check_model_in_store(store, result.digest).ok


def test_interop_either_shard_finds_both(store, interop_dir):
    dmr = interop_dir / "docker-model-runner"
    for shard in ("dummy-00001-of-00002.gguf", "dummy-00002-of-00002.gguf"):
        result = run(store, gguf=str(dmr / shard))
        paths = [l.annotations[mt.ANNOTATION_FILEPATH] for l in result.manifest.layers]
        assert paths == ["dummy-00001-of-00002.gguf", "dummy-00002-of-00002.gguf"]
        assert config_of(store, result)["config"]["parameters"] == "183"
