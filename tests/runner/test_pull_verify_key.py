"""`mdl serve --pull-verify-key`: POST /models/create stores a model only when a signature by that key
names its manifest (either cosign form), as `mdl pull --verify-key` does; the answer says which form
and key verified it. Against the real registry (distribution 2.8.2) and a real `mdl serve`."""

from __future__ import annotations

import json

import pytest
import requests

pytest.importorskip("llama_cpp")
pytest.importorskip("starlette")

from tests.integration.registry import start_registry  # noqa: E402
from tests.integration.signing_fixtures import cli, keys, ok, push_model  # noqa: E402,F401 (fixtures)

from .test_serve import Server  # noqa: E402


def _create(server: Server, ref: str) -> tuple[int, list[dict]]:
    r = requests.post(server.url + "/models/create", json={"from": ref}, stream=True, timeout=60)
    if r.status_code != 200:
        return r.status_code, [r.json()]
    return r.status_code, [json.loads(line) for line in r.iter_lines() if line]


def test_create_pulls_only_what_the_key_signed(cli, keys, tmp_path):
    registry = start_registry(tmp_path / "registry")
    server = None
    try:
        signed, digest = push_model(cli, registry, "test/signed", seed=1)
        ok(cli("sign", signed, "--key", keys["alice"][0]))
        unsigned, _ = push_model(cli, registry, "test/unsigned", seed=2)
        by_bob, _ = push_model(cli, registry, "test/bob", seed=3)
        ok(cli("sign", by_bob, "--key", keys["bob"][0]))

        home = tmp_path / "serve-home"
        server = Server(home, tmp_path, "--pull-verify-key", keys["alice"][1])

        status, events = _create(server, signed)
        assert status == 200 and events[-1]["type"] == "success", events
        assert events[-1]["digest"] == digest
        assert events[-1]["signature"]["form"] in ("bundle", "legacy")
        assert events[-1]["signature"]["key"] == keys["alice"][1]

        for ref, kind in ((unsigned, "unsigned"), (by_bob, "bad_signature")):
            status, events = _create(server, ref)
            assert status >= 400, events
            assert events[-1]["error"]["code"].replace("-", "_") == kind, events
        listed = {t for m in requests.get(server.url + "/models").json() for t in m["tags"]}
        assert signed in listed and unsigned not in listed and by_bob not in listed
    finally:
        if server is not None:
            server.stop()
        registry.stop()


def test_a_bad_key_file_stops_serve_at_once(tmp_path):
    bad = tmp_path / "nokey.pub"
    bad.write_text("not a key")
    with pytest.raises(RuntimeError, match="exited") as e:
        Server(tmp_path / "home", tmp_path, "--pull-verify-key", str(bad))
    assert "error: " in str(e.value) and "nokey.pub" in str(e.value) and "Traceback" not in str(e.value)
