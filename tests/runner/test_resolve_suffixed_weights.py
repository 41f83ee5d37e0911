"""Docker Model Runner's format-suffixed ModelPack weights (spec/modelpack.md §3.2): the runner serves a
`weight.v1.gguf` layer as GGUF by its media type, whatever the config's format and the file name say."""

from __future__ import annotations

import pytest

from mdl.artifact import to_json_bytes
from mdl.content.descriptor import Descriptor, Manifest
from mdl.reference import parse_reference
from mdl.runner import links_dir
from mdl.runner.resolve import UnsupportedModelFormatError, resolve_model
from mdl.spec import mediatypes as mt
from mdl.store import LayoutStore
from tests.fixtures import models

W_GGUF, W_SAFETENSORS = (next(t for t, f in mt.SUFFIXED_WEIGHT_FORMATS.items() if f == fmt)
                         for fmt in ("gguf", "safetensors"))


def _store_dmr_artifact(store: LayoutStore, gguf, media_type: str, filepath: str, config: dict) -> str:
    """A ModelPack artifact as Docker Model Runner wrote it: one suffixed weight layer; its reference."""
    weight, size = store.import_file(gguf)
    config["modelfs"] = {"type": "layers", "diffIds": [weight]}
    raw = to_json_bytes(config)
    config_digest, config_size = store.write_blob(raw)
    layer = Descriptor(media_type, weight, size, {mt.ANNOTATION_FILEPATH: filepath,
                                                  mt.ANNOTATION_MEDIATYPE_UNTESTED: "false"})
    m = Manifest.build(Descriptor(mt.CNCF_CONFIG, config_digest, config_size), [layer],
                       artifact_type=mt.CNCF_ARTIFACT_TYPE)
    store.put_manifest(m)
    ref = parse_reference(f"ai/dmr-{media_type.rsplit('.', 1)[1]}")
    store.add_tag(m.digest, ref)
    return str(ref)


@pytest.fixture
def store(tmp_path) -> LayoutStore:
    return LayoutStore(tmp_path / "home")


def test_weight_v1_gguf_is_served_by_its_media_type(store, tmp_path):
    gguf = models.write_tiny_gguf(tmp_path / "tiny.gguf")[0]
    # No format in the config and no .gguf in the file name: only the media type says GGUF.
    ref = _store_dmr_artifact(store, gguf, W_GGUF, "weights/model",
                              {"descriptor": {"createdAt": "2026-01-01T00:00:00Z", "name": "dummy-modelpack"},
                               "config": {"paramSize": "8B"}})
    r = resolve_model(store, ref, links_dir(store))
    (layer,) = store.manifest(r.digest).layers
    assert layer.media_type == W_GGUF
    assert r.model_path == store.blob_path(layer.digest)
    assert r.architecture == "llama" and r.mmproj_path is None


def test_weight_v1_safetensors_is_never_gguf(store, tmp_path):
    gguf = models.write_tiny_gguf(tmp_path / "tiny.gguf")[0]
    ref = _store_dmr_artifact(store, gguf, W_SAFETENSORS, "model.gguf",
                              {"descriptor": {"createdAt": "2026-01-01T00:00:00Z"}, "config": {"format": "gguf"}})
    with pytest.raises(UnsupportedModelFormatError) as info:
        resolve_model(store, ref, links_dir(store))
    assert info.value.kind == "unsupported-format" and info.value.reference == ref
