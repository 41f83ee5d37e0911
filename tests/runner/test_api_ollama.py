"""Ollama's API on `mdl serve`, driven with the official `ollama` client: answers equal llama.cpp's on
the same file at temperature 0, streamed (Ollama's default) and not; models listed, shown, loaded,
pulled and deleted."""

from __future__ import annotations

import json

import pytest
import requests

pytest.importorskip("llama_cpp")
ollama = pytest.importorskip("ollama")
jsonschema = pytest.importorskip("jsonschema")

from tests.fixtures import models  # noqa: E402
from tests.integration.registry import start_registry  # noqa: E402

from .api_server import api_base, api_server, direct  # noqa: E402,F401

MESSAGES = [{"role": "system", "content": "you are a model"}, {"role": "user", "content": "hello world"}]
GREEDY = {"temperature": 0, "num_predict": 12}


@pytest.fixture(scope="module")
def client(api_server):
    return ollama.Client(host=api_server.url, timeout=60)


def test_chat_equals_llama_cpp_streamed_and_not(client, direct):
    theirs = direct.chat(MESSAGES, max_tokens=12)
    r = client.chat(model="ai/tiny", messages=MESSAGES, options=GREEDY, stream=False)
    assert r.message.role == "assistant"
    assert r.message.content == theirs["choices"][0]["message"]["content"]
    assert r.done is True and r.done_reason == "length"
    assert r.eval_count == 12 and r.prompt_eval_count == theirs["usage"]["prompt_tokens"]
    assert r.total_duration > 0
    parts = list(client.chat(model="ai/tiny", messages=MESSAGES, options=GREEDY, stream=True))
    assert "".join(p.message.content for p in parts) == r.message.content
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert parts[-1].done_reason == "length" and parts[-1].eval_count == 12


def test_streaming_is_the_default(api_server):
    r = requests.post(api_server.url + "/api/chat", json={"model": "ai/tiny", "messages": MESSAGES, "options": GREEDY})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert len(lines) > 2 and lines[-1]["done"] is True and not any(x["done"] for x in lines[:-1])


def test_generate_through_the_template_and_raw(client, direct):
    theirs = direct.chat(MESSAGES, max_tokens=12)["choices"][0]["message"]["content"]
    r = client.generate(model="ai/tiny", prompt="hello world", system="you are a model", options=GREEDY, stream=False)
    assert r.response == theirs and r.done_reason == "length"
    streamed = "".join(p.response for p in client.generate(model="ai/tiny", prompt="hello world",
                                                            system="you are a model", options=GREEDY, stream=True))
    assert streamed == theirs
    raw = direct().create_completion("hello world", temperature=0, max_tokens=12)["choices"][0]["text"]
    assert client.generate(model="ai/tiny", prompt="hello world", raw=True, options=GREEDY).response == raw


def test_options_reach_the_sampler(client, direct):
    full = direct.chat(MESSAGES, max_tokens=12)["choices"][0]["message"]["content"]
    stop = full.split()[2]
    theirs = direct.chat(MESSAGES, max_tokens=12, stop=[stop], top_k=3, top_p=0.5)
    r = client.chat(model="ai/tiny", messages=MESSAGES, stream=False,
                    options={**GREEDY, "stop": [stop], "top_k": 3, "top_p": 0.5, "seed": 5})
    assert r.message.content == theirs["choices"][0]["message"]["content"] == full[:full.index(stop)]
    assert r.done_reason == "stop"


def test_format_json_schema_constrains_the_answer(client):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer"}},
              "required": ["ok", "n"], "additionalProperties": False}
    r = client.chat(model="ai/tiny", messages=MESSAGES, format=schema, options={"temperature": 0, "num_predict": 200},
                    stream=False)
    jsonschema.validate(json.loads(r.message.content), schema)
    r = client.generate(model="ai/tiny", prompt="hello", format="json", options={"temperature": 0, "num_predict": 200})
    assert r.done_reason == "stop"
    json.loads(r.response)


def test_tags_show_version_and_ps(client, api_server):
    names = {m.model for m in client.list().models}
    assert {"ai/tiny:latest", "ai/tools:latest", "ai/tiny-embed:latest"} <= names
    tiny = next(m for m in client.list().models if m.model == "ai/tiny:latest")
    assert tiny.details.format == "gguf" and tiny.size > 0 and len(tiny.digest) == 64
    shown = client.show("ai/tiny")
    assert shown.details.format == "gguf" and "completion" in shown.capabilities
    assert requests.get(api_server.url + "/api/version").json()["version"]
    client.generate(model="ai/tiny", prompt="hello", options={"num_predict": 1})
    running = {m.model: m for m in client.ps().models}
    assert running["ai/tiny:latest"].context_length == 256 and running["ai/tiny:latest"].expires_at is not None


def test_keep_alive_loads_and_unloads(client):
    loaded = client.generate(model="ai/tiny-embed", prompt="")  # empty prompt: load only (in chat mode)
    assert loaded.done and loaded.done_reason == "load"
    assert "ai/tiny-embed:latest" in {m.model for m in client.ps().models}
    gone = client.generate(model="ai/tiny-embed", prompt="", keep_alive=0)
    assert gone.done_reason == "unload"
    assert "ai/tiny-embed:latest" not in {m.model for m in client.ps().models}
    client.chat(model="ai/tiny", messages=MESSAGES, options={"num_predict": 1}, keep_alive="1h")
    expires = {m.model: m.expires_at for m in client.ps().models}["ai/tiny:latest"]
    client.chat(model="ai/tiny", messages=MESSAGES, options={"num_predict": 1}, keep_alive=-1)
    assert {m.model: m.expires_at for m in client.ps().models}["ai/tiny:latest"] is None and expires is not None


def test_num_ctx_loads_with_that_context(client, direct):
    theirs = direct.chat(MESSAGES, max_tokens=12)["choices"][0]["message"]["content"]
    r = client.chat(model="ai/tiny", messages=MESSAGES, options={**GREEDY, "num_ctx": 512}, stream=False)
    assert r.message.content == theirs
    assert {m.model: m.context_length for m in client.ps().models}["ai/tiny:latest"] == 512


def test_embed_equals_the_openai_route(client, api_server):
    r = client.embed(model="ai/tiny-embed", input=["hello world", "the model"])
    openai_doc = requests.post(api_server.url + "/v1/embeddings",
                               json={"model": "ai/tiny-embed", "input": ["hello world", "the model"]}).json()
    assert [list(v) for v in r.embeddings] == [d["embedding"] for d in openai_doc["data"]]
    assert r.prompt_eval_count == openai_doc["usage"]["prompt_tokens"]
    assert len(client.embed(model="ai/tiny-embed", input="hello", dimensions=8).embeddings[0]) == 8


def test_unknown_model_and_bad_options_in_ollamas_shape(client, api_server):
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(model="ai/no-such-model", messages=MESSAGES, stream=False)
    assert e.value.status_code == 404 and "ai/no-such-model" in e.value.error
    r = requests.post(api_server.url + "/api/generate", json={"model": "ai/nope", "prompt": "x"})
    assert r.status_code == 404 and set(r.json()) == {"error"}
    for body, param in (({"options": {"temperature": "hot"}}, "options.temperature"),
                        ({"options": {"num_predict": 1.5}}, "options.num_predict"),
                        ({"options": {"num_ctx": 0}}, "options.num_ctx"),
                        ({"format": "xml"}, "format"),
                        ({"keep_alive": "soon"}, "keep_alive"),
                        ({"messages": []}, "messages"),
                        ({"tools": [{"function": {"name": ""}}]}, "tools[0].name")):
        r = requests.post(api_server.url + "/api/chat", json={"model": "ai/tiny", "messages": MESSAGES, **body})
        assert r.status_code == 400, (body, r.text)
        assert set(r.json()) == {"error"} and param in r.json()["error"]


def test_pull_then_delete(client, api_server, mdl, tmp_path):
    registry = start_registry(tmp_path / "registry")
    try:
        gguf = models.write_tiny_gguf(tmp_path / "pushed.gguf", seed=12)[0]
        target = f"{registry.host}/test/pulled:1"
        done = mdl("package", "--gguf", str(gguf), target, "--push")
        assert done.returncode == 0, done.stderr
        statuses = [p.status for p in client.pull(target, stream=True)]
        assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
        assert any(s.startswith("pulling ") and s != "pulling manifest" for s in statuses)
        assert target in {m.model for m in client.list().models}
        assert client.chat(model=target, messages=MESSAGES, options={"num_predict": 2}).message.content
        assert client.pull(target, stream=False).status == "success"  # present: nothing to fetch
        assert client.delete(target).status == "success"
        assert target not in {m.model for m in client.list().models}
        with pytest.raises(ollama.ResponseError) as e:
            client.delete(target)
        assert e.value.status_code == 404
    finally:
        registry.stop()
