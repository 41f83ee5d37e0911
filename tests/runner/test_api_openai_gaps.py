"""OpenAI chat completions on `mdl serve`, the parts beyond plain text: log probabilities (equal to
llama-cpp-python's own, computed with `logits_all`), `n` choices, `stream_options.include_usage`,
`parallel_tool_calls`."""

from __future__ import annotations

import math

import pytest
import requests

llama_cpp = pytest.importorskip("llama_cpp")
openai = pytest.importorskip("openai")

from .api_server import FILES, api_base, api_server, direct  # noqa: E402,F401

MESSAGES = [{"role": "user", "content": "hello world"}]


@pytest.fixture(scope="module")
def client(api_server):
    return openai.OpenAI(base_url=api_server.url + "/v1", api_key="x", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def with_logits(api_base):
    """llama-cpp-python's own log probabilities need every position's logits (`logits_all`)."""
    llm = llama_cpp.Llama(model_path=str(api_base / "inputs" / FILES["ai/tiny"]), n_threads=1, n_ctx=256,
                          logits_all=True, verbose=False)
    yield llm
    llm.close()


def test_chat_logprobs_equal_llama_cpps(client, with_logits):
    r = client.chat.completions.create(model="ai/tiny", messages=MESSAGES, temperature=0, max_tokens=8, logprobs=True,
                                       top_logprobs=3)
    theirs = with_logits.create_chat_completion(messages=MESSAGES, temperature=0, max_tokens=8, logprobs=True,
                                                top_logprobs=3)
    ours = r.choices[0].logprobs.content
    expected = theirs["choices"][0]["logprobs"]["content"]
    assert "".join(e.token for e in ours) == r.choices[0].message.content == theirs["choices"][0]["message"]["content"]
    assert [e.token for e in ours] == [e["token"] for e in expected]
    for mine, their in zip(ours, expected):
        assert math.isclose(mine.logprob, their["logprob"], abs_tol=1e-4)
        # llama-cpp-python keeps the alternatives in a map by text (two byte tokens that both decode to ""
        # are one there); here they are OpenAI's list of 3, likeliest first
        assert {t.token for t in mine.top_logprobs} == {t["token"] for t in their["top_logprobs"]}
        assert len(mine.top_logprobs) == 3
        assert [t.logprob for t in mine.top_logprobs] == sorted((t.logprob for t in mine.top_logprobs), reverse=True)
        assert mine.top_logprobs[0].logprob == mine.logprob  # greedy: the likeliest token was chosen
    streamed = []
    for chunk in client.chat.completions.create(model="ai/tiny", messages=MESSAGES, temperature=0, max_tokens=8,
                                                logprobs=True, top_logprobs=3, stream=True):
        for c in chunk.choices:
            if c.logprobs and c.logprobs.content:
                streamed += c.logprobs.content
    assert [(e.token, round(e.logprob, 4)) for e in streamed] == [(e.token, round(e.logprob, 4)) for e in ours]
    plain = client.chat.completions.create(model="ai/tiny", messages=MESSAGES, temperature=0, max_tokens=8)
    assert plain.choices[0].logprobs is None


def test_completion_logprobs(client, with_logits):
    r = client.completions.create(model="ai/tiny", prompt="hello world", temperature=0, max_tokens=6, logprobs=2)
    theirs = with_logits.create_completion("hello world", temperature=0, max_tokens=6, logprobs=2)
    lp = r.choices[0].logprobs
    assert "".join(lp.tokens) == r.choices[0].text == theirs["choices"][0]["text"]
    assert lp.tokens == theirs["choices"][0]["logprobs"]["tokens"]
    assert all(len(top) == 2 for top in lp.top_logprobs)
    for mine, their in zip(lp.token_logprobs, theirs["choices"][0]["logprobs"]["token_logprobs"]):
        assert math.isclose(mine, their, abs_tol=1e-4)
    assert lp.text_offset[0] == 0


def test_n_choices_one_after_another(client):
    args = dict(model="ai/tiny", messages=MESSAGES, temperature=1.5, max_tokens=6)
    r = client.chat.completions.create(n=3, seed=5, **args)
    assert [c.index for c in r.choices] == [0, 1, 2]
    singles = [client.chat.completions.create(seed=5 + i, **args).choices[0].message.content for i in range(3)]
    assert [c.message.content for c in r.choices] == singles
    assert r.usage.completion_tokens == 18
    texts: dict[int, str] = {}
    finishes = {}
    for chunk in client.chat.completions.create(n=3, seed=5, stream=True, **args):
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
            finishes[c.index] = c.finish_reason or finishes.get(c.index)
    assert [texts[i] for i in range(3)] == singles and finishes == {0: "length", 1: "length", 2: "length"}
    completions = client.completions.create(model="ai/tiny", prompt="hello", n=2, seed=1, temperature=1.5, max_tokens=4)
    assert [c.index for c in completions.choices] == [0, 1]


def test_include_usage_streams_a_last_usage_chunk(client):
    args = dict(model="ai/tiny", messages=MESSAGES, temperature=0, max_tokens=5, stream=True)
    chunks = list(client.chat.completions.create(stream_options={"include_usage": True}, **args))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + 5
    assert all(c.usage is None for c in chunks[:-1])
    assert all(c.usage is None for c in client.chat.completions.create(**args))
    assert all(c.usage is None for c in client.chat.completions.create(stream_options={"include_usage": False}, **args))


def test_parallel_tool_calls(client, api_server):
    tools = [{"type": "function", "function": {"name": "ping", "parameters": {
        "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}}]
    r = client.chat.completions.create(model="ai/tools", messages=MESSAGES, tools=tools, tool_choice="required",
                                       parallel_tool_calls=False, temperature=0, max_tokens=100)
    assert len(r.choices[0].message.tool_calls) == 1 and r.choices[0].finish_reason == "tool_calls"
    bad = requests.post(api_server.url + "/v1/chat/completions", json={
        "model": "ai/tools", "messages": MESSAGES, "tools": tools, "parallel_tool_calls": "no"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "parallel_tool_calls"
    ignored = requests.post(api_server.url + "/v1/chat/completions", json={
        "model": "ai/tools", "messages": MESSAGES, "tool_choice": {"type": "function", "function": {"name": "x"}}})
    assert ignored.status_code == 400 and ignored.json()["error"]["param"] == "tool_choice"
