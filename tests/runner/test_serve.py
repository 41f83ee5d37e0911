"""`mdl serve` end to end: a real server process on 127.0.0.1, driven with the official `openai` client
and plain HTTP, over a private store holding the runner test models (it is changed here: a model is
damaged, pulled and deleted, so the session's `runner_store` is not used)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

pytest.importorskip("llama_cpp")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

from mdl.store import LayoutStore  # noqa: E402
from mdl.ops.package import PackageRequest, package  # noqa: E402
from mdl.reference import parse_reference  # noqa: E402
from mdl.spec import mediatypes as mt  # noqa: E402
from tests.conftest import assert_clean_error  # noqa: E402
from tests.fixtures import models  # noqa: E402
from tests.integration.registry import free_port, start_registry  # noqa: E402

from .conftest import CREATED, build_runner_store  # noqa: E402

START_TIMEOUT = 30.0
CHAT = [{"role": "user", "content": "hello world"}]


def _serve_argv() -> list[str]:
    """`python -m mdl serve`, or the module itself while `serve` is not registered in the CLI yet."""
    from mdl.cli.app import app

    names = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    if "serve" in names:
        return [sys.executable, "-m", "mdl", "serve"]
    return [sys.executable, "-m", "mdl.cli.serve"]


class Server:
    def __init__(self, home: Path, tmp: Path, *extra: str, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k not in ("MDL_DEBUG", "MDL_API_KEY")}
        self.env["MDL_HOME"] = str(home)
        self.env["DOCKER_CONFIG"] = str(tmp / "docker-config")
        self.env.update(env or {})
        env = self.env
        self.log = tmp / f"serve-{self.port}.log"
        self._err = open(self.log, "wb")
        self.proc = subprocess.Popen([*_serve_argv(), "--port", str(self.port), "--threads", "1", *extra],
                                     env=env, stdout=subprocess.PIPE, stderr=self._err, text=True,
                                     stdin=subprocess.DEVNULL)
        self.banner = self.proc.stdout.readline()  # printed once listening
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mdl serve exited with {self.proc.returncode}: {self.stderr()}")
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mdl serve did not answer /health: {self.stderr()}")
            time.sleep(0.05)

    def stderr(self) -> str:
        self._err.flush()
        return self.log.read_text(errors="replace")

    def client(self, prefix: str = "/engines/v1", **kw):
        return openai.OpenAI(base_url=self.url + prefix, api_key="x", max_retries=0, timeout=60, **kw)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()
        return self.proc.returncode


def _damage(store: LayoutStore, ref: str) -> None:
    """Remove the weight blob of `ref` from the store, as a failing disk or a careless `rm` would."""
    manifest = store.manifest(store.resolve(ref))
    for d in manifest.layers:
        if d.media_type == mt.GGUF:
            path = store.blob_path(d.digest)
            path.chmod(0o644)
            path.unlink()


@pytest.fixture(scope="module")
def serve_home(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("serve")
    store = build_runner_store(base / "home", base / "inputs")
    broken = models.write_tiny_gguf(base / "inputs" / "broken.gguf", seed=9)[0]
    package(store, PackageRequest(created=CREATED, gguf=str(broken)), parse_reference("ai/tiny-broken:latest"))
    _damage(store, "ai/tiny-broken:latest")
    return store.root


@pytest.fixture(scope="module")
def server(serve_home, tmp_path_factory):
    srv = Server(serve_home, tmp_path_factory.mktemp("serve-run"), "--max-models", "2")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return server.client()


def _chat(client, model="ai/tiny", **kw):
    args = dict(model=model, messages=CHAT, temperature=0, seed=42, max_tokens=12)
    args.update(kw)
    return client.chat.completions.create(**args)


# ---------------------------------------------------------------------------------------------
# OpenAI API


def test_banner_names_the_url(server):
    assert f"http://127.0.0.1:{server.port}" in server.banner


def test_models_lists_gguf_models(client):
    ids = {m.id for m in client.models.list().data}
    assert {"ai/tiny:latest", "ai/tiny-sharded:latest", "ai/tiny-template:latest", "ai/tiny-cncf:latest",
            "ai/tiny-embed:latest"} <= ids
    assert "ai/st:latest" not in ids  # safetensors: not servable here
    assert client.models.retrieve("ai/tiny").id == "ai/tiny:latest"


def test_chat_plain_and_streamed_give_the_same_text(client):
    plain = _chat(client)
    text = plain.choices[0].message.content
    assert text and plain.usage.completion_tokens > 0
    assert plain.choices[0].message.role == "assistant"
    pieces = []
    for chunk in _chat(client, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == text
    assert _chat(client).choices[0].message.content == text  # deterministic


def test_every_path_prefix_and_reference_form_works(server):
    text = _chat(server.client()).choices[0].message.content
    for prefix in ("/engines/v1", "/engines/llama.cpp/v1", "/v1"):
        for model in ("ai/tiny", "ai/tiny:latest", "docker.io/ai/tiny:latest"):
            assert _chat(server.client(prefix), model=model).choices[0].message.content == text
    model_id = requests.get(server.url + "/models/ai/tiny").json()["id"]
    assert _chat(server.client(), model=model_id.split(":")[1][:12]).choices[0].message.content == text


def test_completion(client):
    r = client.completions.create(model="ai/tiny", prompt="hello world", temperature=0, seed=1, max_tokens=8)
    assert r.choices[0].text and r.usage.completion_tokens > 0
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="ai/tiny", prompt="hello world", temperature=0, seed=1, max_tokens=8, stream=True) if c.choices)
    assert streamed == r.choices[0].text


def test_embeddings(client):
    r = client.embeddings.create(model="ai/tiny-embed", input=["hello world", "the model"])
    assert len(r.data) == 2
    assert len(r.data[0].embedding) == models.N_EMBD
    assert r.data[0].embedding != r.data[1].embedding


def test_sharded_and_modelpack_models_serve(client):
    for model in ("ai/tiny-sharded", "ai/tiny-cncf"):
        assert _chat(client, model=model).choices[0].message.content


def test_chat_template_layer_changes_the_prompt(client):
    plain = _chat(client, model="ai/tiny", max_tokens=1)
    templated = _chat(client, model="ai/tiny-template", max_tokens=1)
    # the layer's template wraps each message in many more words than the GGUF's own
    assert templated.usage.prompt_tokens > plain.usage.prompt_tokens


def test_concurrent_requests_to_one_model(client):
    expected = _chat(client).choices[0].message.content
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: _chat(client).choices[0].message.content, range(4)))
    assert results == [expected] * 4


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as e:
        _chat(client, model="ai/no-such-model")
    assert e.value.body["code"] == "model_not_found"
    assert "ai/no-such-model" in e.value.body["message"]


def test_bad_requests_are_400(server):
    url = server.url + "/engines/v1/chat/completions"
    r = requests.post(url, data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    r = requests.post(url, json={"model": "ai/tiny"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = requests.post(url, json={"messages": CHAT})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    r = requests.post(url, json=[1, 2])
    assert r.status_code == 400
    r = requests.post(url, data=b"x" * (9 << 20), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    r = requests.get(url)
    assert r.status_code == 405 and "error" in r.json()


def test_non_gguf_model_is_400_naming_the_format(client):
    with pytest.raises(openai.BadRequestError) as e:
        _chat(client, model="ai/st")
    assert "safetensors" in e.value.body["message"]


def test_damaged_model_is_a_clear_error(server, client):
    r = requests.post(server.url + "/engines/v1/chat/completions",
                      json={"model": "ai/tiny-broken", "messages": CHAT, "max_tokens": 4})
    assert r.status_code == 500
    err = r.json()["error"]
    assert err["code"] == "model_damaged" and "Traceback" not in r.text
    assert requests.get(server.url + "/health").status_code == 200
    assert _chat(client).choices[0].message.content
    assert server.proc.poll() is None


def _metric(server, line_prefix: str) -> float:
    for line in requests.get(server.url + "/metrics").text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_client_disconnect_mid_stream_frees_the_model(server, client):
    tokens = 'mdl_tokens_generated_total{model="ai/tiny:latest"}'
    before, cancelled = _metric(server, tokens), _metric(server, "mdl_streams_cancelled_total")
    body = {"model": "ai/tiny", "messages": CHAT, "max_tokens": 240, "stream": True, "temperature": 0}
    with requests.post(server.url + "/engines/v1/chat/completions", json=body, stream=True, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        first = next(line for line in r.iter_lines() if line)
        assert first.startswith(b"data: {")
    # the connection is closed: the next request gets the model promptly
    start = time.monotonic()
    assert _chat(client, max_tokens=4).choices[0].message.content
    assert time.monotonic() - start < 10
    assert _metric(server, "mdl_streams_cancelled_total") == cancelled + 1
    # generation stopped early: fewer than the 240 tokens asked for (plus the 4 just above)
    assert _metric(server, tokens) - before < 240


def test_stream_ends_with_done(server):
    body = {"model": "ai/tiny", "messages": CHAT, "max_tokens": 4, "stream": True, "temperature": 0}
    r = requests.post(server.url + "/v1/chat/completions", json=body, timeout=30)
    events = [e for e in r.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    for e in events[:-1]:
        assert json.loads(e[len("data: "):])["object"] == "chat.completion.chunk"


# ---------------------------------------------------------------------------------------------
# Docker's model API, health, metrics


def test_docker_models_api(server):
    listed = requests.get(server.url + "/models").json()
    tiny = next(m for m in listed if "ai/tiny:latest" in m["tags"])
    assert tiny["id"].startswith("sha256:") and tiny["created"] == int(CREATED.timestamp())
    assert tiny["config"]["format"] == "gguf"
    one = requests.get(server.url + "/models/ai/tiny").json()
    assert one == tiny
    assert requests.get(server.url + f"/models/{tiny['id']}").json()["id"] == tiny["id"]
    r = requests.get(server.url + "/models/ai/absent")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_create_pulls_from_a_registry_then_delete(server, mdl, tmp_path):
    registry = start_registry(tmp_path / "registry")
    try:
        gguf = models.write_tiny_gguf(tmp_path / "pushed.gguf", seed=11)[0]
        target = f"{registry.host}/test/pushed:1"
        done = mdl("package", "--gguf", str(gguf), target, "--push")
        assert done.returncode == 0, done.stderr

        r = requests.post(server.url + "/models/create", json={"from": target}, stream=True, timeout=60)
        assert r.status_code == 200
        events = [json.loads(line) for line in r.iter_lines() if line]
        assert events[-1]["type"] == "success", events
        assert any(e["type"] == "progress" for e in events)
        ids = {m.id for m in server.client().models.list().data}
        assert target in ids
        assert _chat(server.client(), model=target).choices[0].message.content

        missing = requests.post(server.url + "/models/create", json={"from": f"{registry.host}/test/absent:1"})
        assert missing.status_code == 404 and "error" in missing.json()
        bad = requests.post(server.url + "/models/create", json={"from": "UPPER/Case::bad"})
        assert bad.status_code == 400

        r = requests.delete(server.url + f"/models/{target}")
        assert r.status_code == 200, r.text
        assert r.json()["untagged"] == [target]
        assert requests.get(server.url + f"/models/{target}").status_code == 404
        assert requests.delete(server.url + f"/models/{target}").status_code == 404
    finally:
        registry.stop()


def test_health_and_metrics(server, client):
    assert requests.get(server.url + "/health").json() == {"status": "ok"}
    assert requests.get(server.url + "/health/ready").status_code == 200
    _chat(client)
    text = requests.get(server.url + "/metrics").text
    assert 'mdl_requests_total{route="/v1/chat/completions",status="200"}' in text
    assert 'mdl_tokens_generated_total{model="ai/tiny:latest"}' in text
    assert "mdl_model_load_seconds_count" in text
    loaded = [line for line in text.splitlines() if line.startswith("mdl_models_loaded ")]
    assert loaded and int(loaded[0].split()[1]) >= 1
    count = [line for line in text.splitlines() if line.startswith("mdl_model_load_seconds_count ")]
    assert int(count[0].split()[1]) >= 1


# ---------------------------------------------------------------------------------------------
# process life


def test_idle_models_unload_and_sigterm_stops_cleanly(serve_home, tmp_path):
    srv = Server(serve_home, tmp_path, "--idle-timeout", "0.5")
    try:
        assert _chat(srv.client()).choices[0].message.content
        deadline = time.monotonic() + 10
        while _metric(srv, "mdl_models_loaded") != 0:  # unloaded by the idle reaper
            assert time.monotonic() < deadline, "the idle model was not unloaded"
            time.sleep(0.1)
        assert _chat(srv.client()).choices[0].message.content  # loads again; stays loaded for SIGTERM
        start = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(10) == 0, srv.stderr()
        assert time.monotonic() - start < 5
        assert "Traceback" not in srv.stderr()
    finally:
        srv.stop()


def test_port_in_use_is_a_clean_error(server, serve_home, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MDL_DEBUG"} | {"MDL_HOME": str(serve_home)}
    argv = _serve_argv()
    proc = subprocess.run([*argv, "--port", str(server.port)], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_serve_without_the_extra_says_how_to_install(monkeypatch):
    import importlib.util

    from mdl.cli import serve
    from mdl.errors import MissingExtraError

    real = importlib.util.find_spec
    monkeypatch.setattr(serve.importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    with pytest.raises(MissingExtraError) as e:
        serve.check_serve_extra()
    assert e.value.kind == "missing-extra"
    assert "llama-cpp-python" in e.value.message and "pip install 'mdl[serve]'" in e.value.hint


def test_the_cli_does_not_import_the_serve_extra():
    code = ("import sys, mdl.cli.app, mdl.cli.serve; "
            "bad = [m for m in ('llama_cpp', 'starlette', 'uvicorn') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_memory_budget_reads_sizes_like_the_other_options(mdl):
    """--memory-budget takes mdl.sizes' rule (tests/unit/test_sizes.py); a bad value is a usage error."""
    assert_clean_error(mdl("serve", "--memory-budget", "lots"), 2, "invalid --memory-budget 'lots'")
    assert_clean_error(mdl("serve", "--memory-budget", "0"), 2, "invalid --memory-budget '0': must be positive")