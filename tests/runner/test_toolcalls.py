"""mdl.runner.toolcalls: the tool-call syntax of each template family read out of answers, whole and
streamed, without a model."""

from __future__ import annotations

import json

import pytest

from mdl.runner import toolcalls
from mdl.runner.toolcalls import GENERIC, HERMES, LLAMA3, MISTRAL, StreamScanner, parse
from mdl.runner.validation import InvalidRequestError, choices_and_logprobs, tool_choice_checked, tools_checked

NAMES = {"get_weather", "add"}
PARIS = json.dumps({"city": "Paris"})


def test_family_of_templates():
    assert toolcalls.family_of("{% if tools %}<tool_call>{{ x }}</tool_call>{% endif %}") == HERMES
    assert toolcalls.family_of("[AVAILABLE_TOOLS]{{ tools }}[TOOL_CALLS]") == MISTRAL
    assert toolcalls.family_of("<|start_header_id|>ipython{% if tools %}<|python_tag|>{% endif %}") == LLAMA3
    assert toolcalls.family_of("<|start_header_id|>{% for t in tools %}{% endfor %}") == LLAMA3
    assert toolcalls.family_of("{{ messages }}") == GENERIC and toolcalls.family_of(None) == GENERIC


@pytest.mark.parametrize("family, text, content, calls", [
    (HERMES, 'Let me look.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
     "Let me look.", [("get_weather", PARIS)]),
    (HERMES, '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>\n'
             '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>',
     "", [("get_weather", PARIS), ("add", '{"a": 1, "b": 2}')]),
    (HERMES, '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}', "", [("get_weather", PARIS)]),
    (HERMES, '<tool_call>{"name": "add", "arguments": "{\\"a\\": 1}"}</tool_call>', "", [("add", '{"a": 1}')]),
    (LLAMA3, '{"name": "get_weather", "parameters": {"city": "Paris"}}', "", [("get_weather", PARIS)]),
    (LLAMA3, '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; '
             '{"type": "function", "name": "add", "parameters": {"a": 1}}',
     "", [("get_weather", PARIS), ("add", '{"a": 1}')]),
    (MISTRAL, '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]', "", [("get_weather", PARIS)]),
    (MISTRAL, 'ok [TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]add[ARGS]{"a": 1}',
     "ok", [("get_weather", PARIS), ("add", '{"a": 1}')]),
    (MISTRAL, '[{"name": "get_weather", "arguments": {"city": "Paris"}}]', "", [("get_weather", PARIS)]),
    (GENERIC, 'x <tool_call>{"name": "add", "arguments": {}}</tool_call>', "x", [("add", "{}")]),
    (GENERIC, '{"name": "add", "arguments": {"a": 1}}', "", [("add", '{"a": 1}')]),
])
def test_calls_are_read_in_each_family(family, text, content, calls):
    assert parse(text, family, NAMES) == (content, calls)


@pytest.mark.parametrize("family, text", [
    (LLAMA3, '{"answer": 42}'),  # JSON that is not a call
    (LLAMA3, '{"name": "unknown_tool", "parameters": {}}'),  # a name the request did not offer
    (MISTRAL, '[{"name": "unknown_tool", "arguments": {}}]'),  # a bare array is a call only with a known name
    (HERMES, "<tool_call>not json</tool_call>"),
    (HERMES, "just words"),
    (GENERIC, "[1, 2, 3]"),
])
def test_text_that_is_no_call_stays_text(family, text):
    assert parse(text, family, NAMES) == (text, [])


def _scan(family: str, pieces: list[str]) -> tuple[str, str, list]:
    scanner = StreamScanner(family, NAMES)
    sent = "".join(scanner.feed(p) for p in pieces)
    rest, calls = scanner.finish()
    return sent, rest, calls


def test_stream_scanner_holds_back_calls_and_passes_text():
    text = 'Let me look. <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    pieces = [text[i:i + 3] for i in range(0, len(text), 3)]  # the marker split across pieces
    sent, rest, calls = _scan(HERMES, pieces)
    assert sent == "Let me look. " and rest == "" and calls == [("get_weather", PARIS)]
    sent, rest, calls = _scan(HERMES, ["a <tool", "box> b"])  # a marker's prefix that was not one
    assert sent + rest == "a <toolbox> b" and calls == []
    sent, rest, calls = _scan(LLAMA3, ["  ", '{"name": "add", ', '"parameters": {"a": 1}}'])
    assert sent == "" and calls == [("add", '{"a": 1}')]
    sent, rest, calls = _scan(LLAMA3, ["{not", " a call"])  # held, then given back as text
    assert sent + rest == "{not a call" and calls == []
    sent, rest, calls = _scan(GENERIC, ["plain ", "words"])
    assert sent + rest == "plain words" and calls == []


def test_forced_schema_and_call():
    tools = [{"name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}},
             {"name": "get_weather", "parameters": None}]
    schema, name = toolcalls.forced_schema(tools, "add")
    assert name == "add" and schema == tools[0]["parameters"]
    schema, name = toolcalls.forced_schema(tools, None)
    assert name is None and [s["properties"]["name"]["const"] for s in schema["anyOf"]] == ["add", "get_weather"]
    assert schema["anyOf"][1]["properties"]["arguments"] == {"type": "object", "properties": {}}
    assert toolcalls.forced_call('{"a": 1}', "add") == ("add", '{"a": 1}')
    assert toolcalls.forced_call('{"name": "add", "arguments": {"a": 1}}', None) == ("add", '{"a": 1}')
    assert toolcalls.forced_call('{"a": ', "add") is None  # cut short
    raw = '{"city": "a\tb"}'  # a raw control character, as llama.cpp's byte tokens can write under a grammar
    assert json.loads(toolcalls.forced_call(raw, "w")[1]) == {"city": "a\tb"}


def test_string_escaper_makes_streamed_json_strict():
    escaper = toolcalls.StringEscaper()
    pieces = ['{"a": "x\t', 'y\\"', '\n"', ',\n "b": 1}']
    joined = "".join(escaper.feed(p) for p in pieces)
    assert json.loads(joined) == {"a": 'x\ty"\n', "b": 1}


def test_render_tools_for_a_template_without_tools():
    messages = [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "name": "add", "arguments": {"a": 1}}]},
                {"role": "tool", "content": "2", "tool_call_id": "c1"}]
    tools = [{"name": "add", "description": "adds", "parameters": None}]
    out, shaped = toolcalls.render_tools(messages, tools, "{{ messages }}")
    assert shaped is None and out[0]["role"] == "system" and '"name": "add"' in out[0]["content"]
    assert out[2]["content"] == '<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>'
    assert out[3] == {"role": "user", "content": "<tool_response>\n2\n</tool_response>"}
    out, shaped = toolcalls.render_tools(messages, tools, "{{ tools }} {{ m.tool_calls }} 'tool'")
    assert shaped[0]["function"]["name"] == "add" and out[1]["tool_calls"][0]["function"]["arguments"] == {"a": 1}
    assert out[2]["role"] == "tool"


def test_tool_checks_name_the_parameter():
    with pytest.raises(InvalidRequestError) as e:
        tools_checked([{"name": "a"}, {"name": "a"}])
    assert e.value.param == "tools[1].name"
    with pytest.raises(InvalidRequestError) as e:
        tools_checked([{"name": "a", "parameters": "x"}])
    assert e.value.param == "tools"
    with pytest.raises(InvalidRequestError) as e:
        tool_choice_checked("required", None, [])
    assert e.value.param == "tool_choice"
    assert choices_and_logprobs({"n": 3, "logprobs": True, "top_logprobs": 2}, chat=True) == (3, 2)
    assert choices_and_logprobs({}, chat=True) == (1, None)
    assert choices_and_logprobs({"logprobs": 0}, chat=False) == (1, 0)
    with pytest.raises(InvalidRequestError) as e:
        choices_and_logprobs({"top_logprobs": 2}, chat=True)
    assert e.value.param == "top_logprobs"
