"""`GET /models/{name}/export` on a real `mdl serve`: the model streamed as an OCI layout tar, byte for
byte what `mdl save` writes, loadable by `mdl load`; a partial model is refused (409) and a model whose
name ends in /export is still found."""

from __future__ import annotations

import hashlib

import pytest
import requests

pytest.importorskip("llama_cpp")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from mdl.ops.load import load_layout  # noqa: E402
from mdl.ops.package import PackageRequest, package  # noqa: E402
from mdl.ops.pull import pull  # noqa: E402
from mdl.ops.save import save_model  # noqa: E402
from mdl.reference import Reference, parse_reference  # noqa: E402
from mdl.store import LayoutStore  # noqa: E402
from mdl.store.sides import StoreSource  # noqa: E402
from tests.fixtures import models  # noqa: E402

from .test_serve import Server  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    store = LayoutStore(base / "home")
    gguf = models.write_tiny_gguf(base / "tiny.gguf", seed=5)[0]
    (base / "LICENSE").write_text("MIT")
    package(store, PackageRequest(gguf=str(gguf), licenses=[str(base / "LICENSE")]), parse_reference("ai/tiny:1"))
    package(store, PackageRequest(gguf=str(gguf)), parse_reference("org/export"))
    origin = LayoutStore(base / "origin")
    other = models.write_tiny_gguf(base / "other.gguf", seed=6)[0]  # blobs the served store does not have
    package(origin, PackageRequest(gguf=str(other), licenses=[str(base / "LICENSE")]), parse_reference("ai/part:1"))
    digest = origin.resolve("ai/part:1")
    pull(store, StoreSource(origin), Reference("docker.io", "ai/part", "1", digest), include=["LICENSE"])
    srv = Server(store.root, base)
    srv.store = store
    srv.base = base
    yield srv
    srv.stop()


def test_export_streams_what_save_writes_and_load_reads(server):
    r = requests.get(server.url + "/models/ai/tiny:1/export", stream=True, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-tar"
    assert r.headers["content-disposition"].startswith('attachment; filename="')
    exported = server.base / "exported.tar"
    with open(exported, "wb") as f:
        for chunk in r.iter_content(1 << 20):
            f.write(chunk)
    saved = server.base / "saved.tar"
    save_model(server.store, "ai/tiny:1", saved)
    assert hashlib.sha256(exported.read_bytes()).digest() == hashlib.sha256(saved.read_bytes()).digest()
    loaded = LayoutStore(server.base / "loaded")
    result = load_layout(loaded, exported)
    assert [m.digest for m in result.models] == [server.store.resolve("ai/tiny:1")]
    assert loaded.resolve("ai/tiny:1") == server.store.resolve("ai/tiny:1")


def test_export_of_a_partial_model_is_refused(server):
    r = requests.get(server.url + "/models/ai/part:1/export", timeout=30)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "model_partial" and "other.gguf" in r.json()["error"]["message"]


def test_export_of_an_unknown_model_is_404(server):
    r = requests.get(server.url + "/models/ai/absent/export", timeout=30)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_a_model_named_export_is_still_found(server):
    r = requests.get(server.url + "/models/org/export:latest", timeout=30)
    assert r.status_code == 200 and r.json()["tags"] == ["org/export:latest"]
    bare = requests.get(server.url + "/models/org/export", timeout=30)  # the route of `org`'s export
    assert bare.status_code == 200 and bare.json()["tags"] == ["org/export:latest"], bare.text


def test_the_runner_refuses_to_serve_a_partial_model(server):
    r = requests.post(server.url + "/engines/v1/chat/completions", timeout=60,
                      json={"model": "ai/part:1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert r.status_code == 409, r.text
    assert "pulled partially" in r.json()["error"]["message"]
