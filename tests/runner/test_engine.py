"""The engine: real llama.cpp on tiny models, compared with direct llama-cpp-python calls."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mdl.runner import links_dir
from mdl.runner.engine import load_engine
from mdl.runner.resolve import resolve_model
from mdl.runner.validation import InvalidRequestError
from tests.conftest import REPO_ROOT
from tests.fixtures import models
from tests.runner.conftest import TEMPLATE_LAYER

llama_cpp = pytest.importorskip("llama_cpp")

MESSAGES = [{"role": "system", "content": "you are a model"}, {"role": "user", "content": "hello world"}]


def _load(store, ref, **kw):
    return load_engine(resolve_model(store, ref, links_dir(store)), n_threads=1, **kw)


@pytest.fixture(scope="module")
def tiny(runner_store):
    engine = _load(runner_store, "ai/tiny")
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def direct(tiny):
    """The same GGUF opened with llama-cpp-python directly, as its docs show."""
    llm = llama_cpp.Llama(model_path=str(tiny.resolved.model_path), n_threads=1, n_ctx=256, verbose=False)
    yield llm
    llm.close()


def _text(chunks) -> str:
    out = []
    for c in chunks:
        for choice in c["choices"]:
            out.append(choice.get("delta", {}).get("content") or choice.get("text") or "")
    return "".join(out)


def test_load(tiny):
    assert tiny.embedding is False
    assert tiny.load_seconds > 0
    assert tiny.n_ctx == 256  # config.context_size


def test_chat_equals_direct_call(tiny, direct):
    params = {"temperature": 0, "max_tokens": 24, "top_p": 0.9, "seed": 7, "presence_penalty": 0.5}
    ours = tiny.chat({"model": "ai/tiny", "messages": MESSAGES, **params})
    theirs = direct.create_chat_completion(messages=MESSAGES, **params)
    assert ours["object"] == "chat.completion"
    assert ours["model"] == "ai/tiny"
    assert ours["choices"][0]["message"] == theirs["choices"][0]["message"]
    assert ours["choices"][0]["message"]["content"]
    assert ours["choices"][0]["finish_reason"] == theirs["choices"][0]["finish_reason"] == "length"
    assert ours["usage"] == theirs["usage"]
    assert ours["usage"]["completion_tokens"] == 24
    again = tiny.chat({"model": "ai/tiny", "messages": MESSAGES, **params})
    assert again["choices"][0]["message"] == ours["choices"][0]["message"]


def test_default_repeat_penalty_is_the_librarys(tiny, direct):
    # no repeat_penalty in the request: 1.0, as Llama.create_chat_completion (llama_cpp.server uses 1.1)
    ours = tiny.chat({"messages": MESSAGES, "temperature": 0, "max_tokens": 40})
    theirs = direct.create_chat_completion(messages=MESSAGES, temperature=0, max_tokens=40)
    assert ours["choices"][0]["message"]["content"] == theirs["choices"][0]["message"]["content"]
    assert ours["model"] == tiny.resolved.reference  # no model in the request


def test_stream_equals_non_stream(tiny):
    req = {"model": "ai/tiny", "messages": MESSAGES, "temperature": 0, "max_tokens": 20}
    whole = tiny.chat(req)
    chunks = list(tiny.chat_stream({**req, "stream": True, "stream_options": {"include_usage": True}}))
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "ai/tiny" for c in chunks)
    assert chunks[0]["choices"][0]["delta"].get("role") == "assistant"
    assert _text(chunks) == whole["choices"][0]["message"]["content"]
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"] == whole["usage"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    plain = list(tiny.chat_stream({**req, "stream": True}))
    assert "usage" not in plain[-1] and plain[-1]["choices"][0]["finish_reason"] == "length"


def test_stream_usage_with_stop(tiny):
    base = tiny.chat({"messages": MESSAGES, "temperature": 0, "max_tokens": 20})["choices"][0]["message"]["content"]
    word = base.split()[1] if len(base.split()) > 1 else base[-3:]
    req = {"messages": MESSAGES, "temperature": 0, "max_tokens": 20, "stop": [word]}
    whole = tiny.chat(req)
    assert whole["choices"][0]["finish_reason"] == "stop"
    assert word not in whole["choices"][0]["message"]["content"]
    chunks = list(tiny.chat_stream({**req, "stream_options": {"include_usage": True}}))
    assert _text(chunks) == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["usage"] == whole["usage"]


def test_completion(tiny, direct):
    req = {"model": "m", "prompt": "the water is", "temperature": 0, "max_tokens": 12}
    ours = tiny.complete(req)
    theirs = direct.create_completion("the water is", temperature=0, max_tokens=12)
    assert ours["object"] == "text_completion" and ours["model"] == "m"
    assert ours["choices"][0]["text"] == theirs["choices"][0]["text"]
    assert ours["usage"] == theirs["usage"]
    chunks = list(tiny.complete_stream({**req, "stream_options": {"include_usage": True}}))
    assert _text(chunks) == ours["choices"][0]["text"]
    assert chunks[-1]["usage"] == ours["usage"]


def test_embeddings(runner_store):
    engine = _load(runner_store, "ai/tiny-embed", embedding=True)
    try:
        one = engine.embed({"model": "ai/tiny-embed", "input": "hello world"})
        assert one["object"] == "list" and one["model"] == "ai/tiny-embed"
        (item,) = one["data"]
        assert item["object"] == "embedding" and item["index"] == 0
        assert len(item["embedding"]) == models.N_EMBD
        assert all(isinstance(x, float) for x in item["embedding"])
        two = engine.embed({"input": ["hello world", "the model"]})
        assert [d["index"] for d in two["data"]] == [0, 1]
        assert two["data"][0]["embedding"] == pytest.approx(item["embedding"], rel=1e-4, abs=1e-5)
        assert two["data"][0]["embedding"] != two["data"][1]["embedding"]
        assert two["usage"]["prompt_tokens"] > one["usage"]["prompt_tokens"] > 0
        with pytest.raises(InvalidRequestError) as info:
            engine.chat({"messages": MESSAGES})
        assert info.value.param == "model"
        with pytest.raises(InvalidRequestError) as info:
            engine.embed({"input": [1, 2]})
        assert info.value.param == "input"
    finally:
        engine.close()


def test_embeddings_of_a_chat_model(runner_store, tiny):
    engine = _load(runner_store, "ai/tiny", embedding=True)  # no pooling in the GGUF: mean pooling
    try:
        out = engine.embed({"input": "hello"})
        assert len(out["data"][0]["embedding"]) == models.N_EMBD
    finally:
        engine.close()
    with pytest.raises(InvalidRequestError):
        tiny.embed({"input": "hello"})


@pytest.mark.parametrize("field, value", [
    ("n", 17), ("n", 0), ("temperature", -1), ("temperature", "hot"), ("top_p", 1.5), ("max_tokens", 0),
    ("max_tokens", 1.5), ("stop", 3), ("seed", "x"), ("stream_options", "yes"), ("presence_penalty", 3),
    ("logprobs", "yes"), ("top_logprobs", 21), ("messages", []), ("messages", [{"role": "wizard", "content": "x"}]),
    ("messages", [{"role": "user", "content": 3}]),
])
def test_invalid_requests(tiny, field, value):
    req = {"messages": MESSAGES, "max_tokens": 4, field: value}
    with pytest.raises(InvalidRequestError) as info:
        tiny.chat(req)
    assert info.value.kind == "invalid-request"
    assert info.value.param.split("[")[0] == field.split("[")[0]
    with pytest.raises(InvalidRequestError):
        tiny.chat_stream(req)


def test_prompt_over_the_context(tiny):
    long = [{"role": "user", "content": "hello world " * 300}]
    for call in (tiny.chat, tiny.chat_stream):  # the stream raises before returning its first chunk
        with pytest.raises(InvalidRequestError) as info:
            call({"messages": long})
        assert info.value.code == "context_length_exceeded"
    with pytest.raises(InvalidRequestError) as info:
        tiny.complete({"prompt": "hello world " * 300})
    assert (info.value.code, info.value.param) == ("context_length_exceeded", "prompt")
    with pytest.raises(InvalidRequestError) as info:
        tiny.complete_stream({"prompt": "hello world " * 300})
    assert (info.value.code, info.value.param) == ("context_length_exceeded", "prompt")
    assert tiny.chat({"messages": MESSAGES, "max_tokens": 3, "temperature": 0})["usage"]["completion_tokens"] == 3


def test_template_layer_changes_the_prompt(runner_store, tiny):
    import jinja2

    engine = _load(runner_store, "ai/tiny-template")
    try:
        req = {"messages": MESSAGES, "temperature": 0, "max_tokens": 2}
        with_layer = engine.chat(req)["usage"]["prompt_tokens"]
        rendered = jinja2.Environment().from_string(TEMPLATE_LAYER).render(
            messages=MESSAGES, add_generation_prompt=True)
        assert with_layer == len(engine.tokenize(rendered, add_bos=False, special=True))
        gguf_rendered = jinja2.Environment().from_string(models.DEFAULT_TEMPLATE).render(
            messages=MESSAGES, add_generation_prompt=True)
        without = tiny.chat(req)["usage"]["prompt_tokens"]
        assert without == len(tiny.tokenize(gguf_rendered, add_bos=False, special=True))
        assert with_layer != without
    finally:
        engine.close()


def test_abandoned_stream_leaves_the_engine_usable(tiny):
    req = {"messages": MESSAGES, "temperature": 0, "max_tokens": 30}
    expected = tiny.chat(req)["choices"][0]["message"]["content"]
    stream = tiny.chat_stream(req)
    next(stream), next(stream), next(stream)
    stream.close()  # the client went away
    assert tiny.chat(req)["choices"][0]["message"]["content"] == expected
    # never closed: the next request settles it
    stream = tiny.chat_stream(req)
    next(stream), next(stream)
    other = {"messages": [{"role": "user", "content": "the model"}], "temperature": 0, "max_tokens": 10}
    fresh = tiny.chat(other)["choices"][0]["message"]["content"]
    assert _text(tiny.chat_stream(req)) == expected
    assert tiny.chat(other)["choices"][0]["message"]["content"] == fresh
    del stream


def test_sharded_and_modelpack_models_chat(runner_store):
    for ref in ("ai/tiny-sharded", "ai/tiny-cncf"):
        engine = _load(runner_store, ref)
        try:
            out = engine.chat({"messages": MESSAGES, "temperature": 0, "max_tokens": 5})
            assert out["usage"]["completion_tokens"] == 5
            assert engine.n_ctx == 256  # cncf: no context size; the GGUF's (under the cap)
        finally:
            engine.close()


def test_projector_that_cannot_load_leaves_a_text_engine(tmp_path, caplog):
    """The tiny projector is not a real clip model: llama.cpp refuses it; the engine runs text-only."""
    from mdl.store import LayoutStore
    from mdl.ops.package import PackageRequest, package
    from mdl.reference import parse_reference
    from tests.runner.test_resolve import _write_clip

    store = LayoutStore(tmp_path / "home")
    g = models.write_tiny_gguf(tmp_path / "tiny.gguf")[0]
    package(store, PackageRequest(gguf=str(g), mmproj=str(_write_clip(tmp_path / "p.gguf"))),
            parse_reference("ai/vision"))
    engine = _load(store, "ai/vision")
    try:
        assert engine.vision is False
        assert "projector" in caplog.text
        out = engine.chat({"messages": MESSAGES, "max_tokens": 3, "temperature": 0})
        assert out["choices"][0]["message"]["content"] and out["usage"]["completion_tokens"] >= 3
    finally:
        engine.close()


def test_llama_cpp_is_optional():
    """`mdl` and its CLI import without llama-cpp-python; loading a model then says what to install."""
    code = (
        "import sys; sys.modules['llama_cpp'] = None\n"
        "import mdl.cli.app, mdl.cli.run, mdl.runner.scheduler, mdl.runner.engine\n"
        "from mdl.errors import MissingExtraError\nfrom mdl.runner.engine import load_engine\n"
        "from mdl.runner.resolve import ResolvedModel\n"
        "from pathlib import Path\n"
        "r = ResolvedModel('x', 'sha256:0', [], 0, Path('x'), None, None, None, False, 0)\n"
        "try:\n    load_engine(r)\nexcept MissingExtraError as e:\n"
        "    print(e.kind); print(e.hint)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "missing-extra"
    assert "pip install 'mdl[serve]'" in out.stdout and "-DGGML_NATIVE=OFF" in out.stdout
    out = subprocess.run([sys.executable, "-c", "import sys, mdl.cli.app, mdl.cli.run, mdl.runner.scheduler;"
                          "print('llama_cpp' in sys.modules)"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert out.stdout.strip() == "False", out.stderr
