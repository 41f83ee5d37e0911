"""A hex text names a stored model by ID only when the store has that model; otherwise it is a repository
name, `docker.io/ai/<hex>:latest` (spec/references.md §3)."""

from __future__ import annotations

import pytest

from mdl.content.descriptor import Descriptor, Manifest
from mdl.errors import ModelNotFoundError
from mdl.reference import parse_reference
from mdl.spec import mediatypes as mt
from mdl.store import LayoutStore


@pytest.fixture
def store(tmp_path) -> LayoutStore:
    return LayoutStore(tmp_path / "store")


def _model(store: LayoutStore, weights: bytes) -> Manifest:
    config, config_size = store.write_blob(b'{"config":{"format":"gguf"}}')
    layer, layer_size = store.write_blob(weights)
    m = Manifest.build(Descriptor(mt.DOCKER_CONFIG_V01, config, config_size), [Descriptor(mt.GGUF, layer, layer_size)])
    store.put_manifest(m)
    return m


def test_64_hex_of_a_stored_model_is_its_id(store):
    m = _model(store, b"a")
    hexd = m.digest.removeprefix("sha256:")
    store.add_tag(m.digest, parse_reference(hexd))  # a tag spelled as the ID does not shadow the ID
    other = _model(store, b"b")
    store.add_tag(other.digest, parse_reference(hexd + ":v1"))
    assert store.resolve(hexd) == m.digest
    assert store.resolve(hexd.upper()) == m.digest


def test_64_hex_of_no_stored_model_is_a_name(store):
    m = _model(store, b"a")
    hexd = "0123456789abcdef" * 4
    assert str(parse_reference(hexd)) == f"docker.io/ai/{hexd}:latest"
    with pytest.raises(ModelNotFoundError) as info:  # not found as a name, not refused as a reference
        store.resolve(hexd)
    assert info.value.reference == hexd
    store.add_tag(m.digest, parse_reference(f"docker.io/ai/{hexd}:latest"))
    assert store.resolve(hexd) == m.digest


def test_12_hex_of_no_stored_model_is_a_name(store):
    m = _model(store, b"a")
    name = "cafe" * 3 if not m.digest[7:].startswith("cafe" * 3) else "beef" * 3
    with pytest.raises(ModelNotFoundError):
        store.resolve(name)
    store.add_tag(m.digest, parse_reference(name))
    assert store.resolve(name) == m.digest
