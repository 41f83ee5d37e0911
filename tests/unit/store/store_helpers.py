"""Helpers shared by the store tests (a module of its own: `conftest` names collide across test folders)."""

from __future__ import annotations

from mdl.content import Descriptor, Manifest
from mdl.store import LayoutStore
from mdl.spec import mediatypes as mt


def put_model(store: LayoutStore, *layers: bytes, config: bytes = b'{"config":{"format":"gguf"}}') -> Manifest:
    """Store a config, the given layer blobs and their manifest (untagged); return the manifest."""
    cd, cn = store.write_blob(config)
    descs = []
    for data in layers:
        ld, ln = store.write_blob(data)
        descs.append(Descriptor(mt.GGUF, ld, ln))
    m = Manifest.build(Descriptor(mt.DOCKER_CONFIG_V01, cd, cn), descs)
    store.put_manifest(m)
    return m
