"""OpenAI's Responses API on `mdl serve`, driven with the official `openai` client: answers equal
llama.cpp's at temperature 0, streamed (with its event types) and not; responses kept, listed,
chained with previous_response_id, and deleted."""

from __future__ import annotations

import json

import pytest
import requests

pytest.importorskip("llama_cpp")
openai = pytest.importorskip("openai")
jsonschema = pytest.importorskip("jsonschema")

from .api_server import api_base, api_server, direct  # noqa: E402,F401

INSTRUCTIONS = "you are a model"
MESSAGES = [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": "hello world"}]
SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer"}},
          "required": ["ok", "n"], "additionalProperties": False}


def _client(server, prefix: str = "/v1"):
    return openai.OpenAI(base_url=server.url + prefix, api_key="x", max_retries=0, timeout=60)


def _create(client, **kw):
    args = dict(model="ai/tiny", instructions=INSTRUCTIONS, input="hello world", temperature=0, max_output_tokens=12)
    args.update(kw)
    return client.responses.create(**args)


def test_text_input_equals_llama_cpp(api_server, direct):
    theirs = direct.chat(MESSAGES, max_tokens=12)
    r = _create(_client(api_server))
    assert r.object == "response" and r.id.startswith("resp_") and r.model == "ai/tiny"
    assert r.output_text == theirs["choices"][0]["message"]["content"]
    assert [o.type for o in r.output] == ["message"] and r.output[0].role == "assistant"
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.input_tokens == theirs["usage"]["prompt_tokens"] and r.usage.output_tokens == 12
    assert r.instructions == INSTRUCTIONS and r.max_output_tokens == 12


def test_message_items_and_every_prefix(api_server, direct):
    expected = direct.chat(MESSAGES, max_tokens=12)["choices"][0]["message"]["content"]
    items = [{"role": "system", "content": INSTRUCTIONS},
             {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello "},
                                                             {"type": "input_text", "text": "world"}]}]
    for prefix in ("", "/v1", "/engines/v1", "/engines/llama.cpp/v1"):
        r = _client(api_server, prefix).responses.create(model="ai/tiny", input=items, temperature=0,
                                                         max_output_tokens=12)
        assert r.output_text == expected


def test_stream_events_and_the_kept_response(api_server, direct):
    expected = direct.chat(MESSAGES, max_tokens=12)["choices"][0]["message"]["content"]
    client = _client(api_server)
    events = list(_create(client, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.incomplete"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == expected
    final = events[-1].response
    assert final.output_text == expected and final.usage.output_tokens == 12
    assert client.responses.retrieve(final.id).output_text == expected
    # the client's stream helper finishes on `response.completed` only: an answer that ends by itself
    fmt = {"format": {"type": "json_schema", "name": "answer", "schema": SCHEMA}}
    whole = _create(client, max_output_tokens=100, text=fmt)
    with client.responses.stream(model="ai/tiny", instructions=INSTRUCTIONS, input="hello world", temperature=0,
                                 max_output_tokens=100, text=fmt) as s:
        streamed = s.get_final_response()
    assert streamed.status == whole.status == "completed"
    assert streamed.output_text == whole.output_text
    jsonschema.validate(json.loads(streamed.output_text), SCHEMA)


def test_retrieve_input_items_delete(api_server):
    client = _client(api_server)
    r = _create(client, input=[{"role": "user", "content": "hello"}, {"role": "assistant", "content": "the model"},
                               {"role": "user", "content": "world"}])
    assert client.responses.retrieve(r.id).output_text == r.output_text
    items = client.responses.input_items.list(r.id, order="asc")
    assert [i.role for i in items.data] == ["user", "assistant", "user"]
    assert items.data[2].content[0].text == "world"
    client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.retrieve(r.id)
    assert e.value.body["code"] == "response_not_found"
    not_kept = _create(client, store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(not_kept.id)


def test_previous_response_id_continues_the_conversation(api_server, direct):
    client = _client(api_server)
    first = _create(client, instructions=None, input="hello world")
    second = _create(client, instructions=None, input="hot water", previous_response_id=first.id)
    theirs = direct.chat([{"role": "user", "content": "hello world"},
                          {"role": "assistant", "content": first.output_text},
                          {"role": "user", "content": "hot water"}], max_tokens=12)
    assert second.output_text == theirs["choices"][0]["message"]["content"]
    assert second.previous_response_id == first.id
    with pytest.raises(openai.NotFoundError) as e:
        _create(client, previous_response_id="resp_nope")
    assert e.value.body["param"] == "previous_response_id"


def test_json_formats(api_server):
    r = _create(_client(api_server), max_output_tokens=100,
                text={"format": {"type": "json_schema", "name": "answer", "schema": SCHEMA}})
    jsonschema.validate(json.loads(r.output_text), SCHEMA)
    assert r.status == "completed"
    # any JSON: the tiny model writes one long object, cut at the limit (greedy decoding, so always the same)
    r = _create(_client(api_server), max_output_tokens=30, text={"format": {"type": "json_object"}})
    assert r.output_text.startswith("{") and r.status == "incomplete"


def test_errors_in_openais_shape(api_server):
    with pytest.raises(openai.NotFoundError) as e:
        _create(_client(api_server), model="ai/no-such-model")
    assert e.value.body["code"] == "model_not_found" and e.value.body["param"] == "model"
    for body, param in (({"temperature": 3}, "temperature"), ({"max_output_tokens": 0}, "max_output_tokens"),
                        ({"input": []}, "input"), ({"input": [{"type": "file_search_call"}]}, "input[0].type"),
                        ({"text": {"format": {"type": "xml"}}}, "text.format"),
                        ({"tool_choice": {"type": "function", "name": "absent"}, "tools": []}, "tool_choice")):
        r = requests.post(api_server.url + "/v1/responses", json={"model": "ai/tiny", "input": "hi", **body})
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["param"] == param and err["type"] == "invalid_request_error"
    r = requests.get(api_server.url + "/v1/responses/resp_absent/input_items")
    assert r.status_code == 404 and r.json()["error"]["code"] == "response_not_found"
