"""Anthropic's Messages API on `mdl serve`, driven with the official `anthropic` client: answers equal
llama.cpp's on the same file at temperature 0, streamed and not, on every path prefix."""

from __future__ import annotations

import pytest
import requests

pytest.importorskip("llama_cpp")
anthropic = pytest.importorskip("anthropic")

from .api_server import api_base, api_server, direct  # noqa: E402,F401

SYSTEM = "you are a model"
USER = [{"role": "user", "content": "hello world"}]
OPENAI_MESSAGES = [{"role": "system", "content": SYSTEM}, *USER]


def _client(server, prefix: str = ""):
    return anthropic.Anthropic(base_url=server.url + prefix, api_key="x", max_retries=0, timeout=60)


def _create(client, sampling: dict | None = None, **kw):
    """messages.create at temperature 0 (this client version has no sampling arguments of its own: they
    go in the body as Anthropic's API takes them)."""
    args = dict(model="ai/tiny", max_tokens=12, system=SYSTEM, messages=USER,
                extra_body={"temperature": 0, **(sampling or {})})
    args.update(kw)
    return client.messages.create(**args)


def test_message_equals_llama_cpp(api_server, direct):
    theirs = direct.chat(OPENAI_MESSAGES, max_tokens=12)
    msg = _create(_client(api_server))
    assert msg.type == "message" and msg.role == "assistant" and msg.model == "ai/tiny"
    assert msg.id.startswith("msg_")
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == theirs["choices"][0]["message"]["content"]
    assert msg.stop_reason == "max_tokens" and msg.stop_sequence is None
    assert msg.usage.input_tokens == theirs["usage"]["prompt_tokens"]
    assert msg.usage.output_tokens == 12


def test_every_prefix_answers(api_server, direct):
    expected = direct.chat(OPENAI_MESSAGES, max_tokens=12)["choices"][0]["message"]["content"]
    for prefix in ("", "/anthropic", "/engines", "/engines/llama.cpp"):
        assert _create(_client(api_server, prefix)).content[0].text == expected


def test_stream_gives_the_same_text_in_anthropics_event_order(api_server, direct):
    expected = direct.chat(OPENAI_MESSAGES, max_tokens=12)["choices"][0]["message"]["content"]
    client = _client(api_server)
    with client.messages.stream(model="ai/tiny", max_tokens=12, system=SYSTEM, messages=USER,
                                extra_body={"temperature": 0}) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == expected
    assert final.content[0].text == expected and final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 12
    events = list(_create(client, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert events[0].message.usage.input_tokens == final.usage.input_tokens
    assert events[-2].delta.stop_reason == "max_tokens" and events[-2].usage.output_tokens == 12


def test_stop_sequences(api_server, direct):
    full = direct.chat(OPENAI_MESSAGES, max_tokens=12)["choices"][0]["message"]["content"]
    stop = full.split()[2]  # a word in the middle of the answer
    theirs = direct.chat(OPENAI_MESSAGES, max_tokens=12, stop=[stop])["choices"][0]["message"]["content"]
    msg = _create(_client(api_server), stop_sequences=["never appears", stop])
    assert msg.content[0].text == theirs == full[:full.index(stop)]
    assert msg.stop_reason == "stop_sequence" and msg.stop_sequence == stop
    with _client(api_server).messages.stream(model="ai/tiny", max_tokens=12, system=SYSTEM, messages=USER,
                                             extra_body={"temperature": 0}, stop_sequences=[stop]) as s:
        assert "".join(s.text_stream) == theirs
        final = s.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == stop


def test_sampling_parameters_are_passed(api_server, direct):
    theirs = direct.chat(OPENAI_MESSAGES, max_tokens=10, top_p=0.5, top_k=3)
    msg = _create(_client(api_server), {"top_p": 0.5, "top_k": 3}, max_tokens=10)
    assert msg.content[0].text == theirs["choices"][0]["message"]["content"]


def test_content_blocks_and_a_system_list(api_server, direct):
    theirs = direct.chat([{"role": "system", "content": "you are a model"},
                          {"role": "user", "content": "hello world"},
                          {"role": "assistant", "content": "the model"},
                          {"role": "user", "content": "hot water"}], max_tokens=8)
    msg = _create(_client(api_server), max_tokens=8,
                  system=[{"type": "text", "text": "you are "}, {"type": "text", "text": "a model"}],
                  messages=[{"role": "user", "content": [{"type": "text", "text": "hello "},
                                                         {"type": "text", "text": "world"}]},
                            {"role": "assistant", "content": [{"type": "text", "text": "the model"}]},
                            {"role": "user", "content": "hot water"}])
    assert msg.content[0].text == theirs["choices"][0]["message"]["content"]


def test_count_tokens(api_server, direct):
    client = _client(api_server)
    counted = client.messages.count_tokens(model="ai/tiny", system=SYSTEM, messages=USER)
    assert counted.input_tokens == direct.chat(OPENAI_MESSAGES, max_tokens=1)["usage"]["prompt_tokens"]
    assert counted.input_tokens == _create(client, max_tokens=1).usage.input_tokens
    r = requests.post(api_server.url + "/anthropic/v1/messages/count_tokens",
                      json={"model": "ai/tiny", "messages": USER})
    assert r.status_code == 200 and set(r.json()) == {"input_tokens"}


def test_unknown_model_is_anthropics_404(api_server):
    with pytest.raises(anthropic.NotFoundError) as e:
        _create(_client(api_server), model="ai/no-such-model")
    assert e.value.status_code == 404
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "not_found_error"
    assert "ai/no-such-model" in e.value.body["error"]["message"]
    r = requests.post(api_server.url + "/v1/messages/count_tokens", json={"model": "ai/nope", "messages": USER})
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


@pytest.mark.parametrize("change, param", [
    ({"max_tokens": None}, "max_tokens"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"temperature": 1.5}, "temperature"),
    ({"top_k": -1}, "top_k"),
    ({"stop_sequences": "x"}, "stop_sequences"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "document"}]}]}, "messages[0].content[0]"),
    ({"tools": [{"name": "x"}]}, "tools[0]"),
    ({"tool_choice": {"type": "tool", "name": "absent"}}, "tool_choice"),
    ({"system": 3}, "system"),
])
def test_bad_parameters_are_anthropics_400_naming_them(api_server, change, param):
    body = {"model": "ai/tiny", "max_tokens": 4, "messages": USER, **change}
    body = {k: v for k, v in body.items() if v is not None}
    r = requests.post(api_server.url + "/v1/messages", json=body)
    assert r.status_code == 400, r.text
    doc = r.json()
    assert set(doc) == {"type", "error"} and doc["type"] == "error"
    assert doc["error"]["type"] == "invalid_request_error"
    assert param in doc["error"]["message"]


def test_bad_json_and_images_on_a_text_model_are_400(api_server):
    r = requests.post(api_server.url + "/v1/messages", data=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    with pytest.raises(anthropic.BadRequestError) as e:
        _create(_client(api_server), messages=[{"role": "user", "content": [image]}])
    assert "messages[0].content" in e.value.body["error"]["message"]
