"""Tool calls through every API on `mdl serve`, with the official clients (and langchain-openai).

ai/tools has a chat template of its own that renders tools, past calls and tool results (Hermes
syntax). A forced call (`required`, a named function, Anthropic's `any`/`tool`) is generated under
the function's schema, so its arguments always validate, streamed or not; `auto` answers equal
llama.cpp's own answer to the same messages and tools; tool results are rendered back through the
template (the answer equals llama.cpp's to the same conversation)."""

from __future__ import annotations

import json

import pytest
import requests

pytest.importorskip("llama_cpp")
openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")
ollama = pytest.importorskip("ollama")
jsonschema = pytest.importorskip("jsonschema")

from .api_server import api_base, api_server, direct  # noqa: E402,F401

WEATHER = {"type": "object", "additionalProperties": False, "required": ["city", "days", "unit"],
           "properties": {"city": {"type": "string", "maxLength": 12}, "days": {"type": "integer"},
                          "unit": {"enum": ["celsius", "fahrenheit"]}}}
ADD = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}},
       "required": ["a", "b"], "additionalProperties": False}
SCHEMAS = {"get_weather": WEATHER, "add": ADD}
OPENAI_TOOLS = [{"type": "function", "function": {"name": n, "description": f"the {n} tool", "parameters": s}}
                for n, s in SCHEMAS.items()]
MESSAGES = [{"role": "user", "content": "what is the weather in Paris"}]
SEEDS = (1, 2, 3)


def _openai(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=60)


def _valid(name: str, arguments) -> None:
    value = json.loads(arguments) if isinstance(arguments, str) else arguments
    jsonschema.validate(value, SCHEMAS[name])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "add"}}])
def test_openai_forced_calls_validate(api_server, choice, seed):
    client = _openai(api_server)
    args = dict(model="ai/tools", messages=MESSAGES, tools=OPENAI_TOOLS, tool_choice=choice, temperature=0.8,
                seed=seed, max_tokens=300)
    r = client.chat.completions.create(**args)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls" and len(c.message.tool_calls) == 1 and c.message.content is None
    call = c.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    if isinstance(choice, dict):
        assert call.function.name == "add"
    _valid(call.function.name, call.function.arguments)
    # streamed: the same call, in OpenAI's tool-call deltas
    name, arguments, finish = None, "", None
    for chunk in client.chat.completions.create(stream=True, **args):
        for choice_ in chunk.choices:
            for d in choice_.delta.tool_calls or ():
                name = d.function.name or name
                arguments += d.function.arguments or ""
            finish = choice_.finish_reason or finish
    assert finish == "tool_calls" and name == call.function.name
    assert json.loads(arguments) == json.loads(call.function.arguments)


def test_auto_equals_llama_cpp_and_tool_results_go_through_the_template(api_server, direct):
    client = _openai(api_server)
    theirs = direct.chat(MESSAGES, "ai/tools", tools=OPENAI_TOOLS, max_tokens=16)
    r = client.chat.completions.create(model="ai/tools", messages=MESSAGES, tools=OPENAI_TOOLS, temperature=0,
                                       max_tokens=16)
    assert r.choices[0].message.content == theirs["choices"][0]["message"]["content"]
    assert r.usage.prompt_tokens == theirs["usage"]["prompt_tokens"]  # the tools are in the prompt
    plain = client.chat.completions.create(model="ai/tools", messages=MESSAGES, temperature=0, max_tokens=1)
    assert plain.usage.prompt_tokens < r.usage.prompt_tokens
    # a past call and its result, rendered by the template (it takes arguments as objects, as llama.cpp's --jinja)
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    history = [*MESSAGES, {"role": "assistant", "content": None, "tool_calls": [call]},
               {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 degrees"}]
    as_template_sees_it = [*MESSAGES, {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 degrees"}]
    theirs = direct.chat(as_template_sees_it, "ai/tools", tools=OPENAI_TOOLS, max_tokens=16)
    r = client.chat.completions.create(model="ai/tools", messages=history, tools=OPENAI_TOOLS, temperature=0,
                                       max_tokens=16)
    assert r.choices[0].message.content == theirs["choices"][0]["message"]["content"]
    assert r.usage.prompt_tokens == theirs["usage"]["prompt_tokens"]
    # the same conversation in Anthropic's blocks gives the same answer
    msg = anthropic.Anthropic(base_url=api_server.url, api_key="x", max_retries=0).messages.create(
        model="ai/tools", max_tokens=16, extra_body={"temperature": 0},
        tools=[{"name": n, "description": f"the {n} tool", "input_schema": s} for n, s in SCHEMAS.items()],
        messages=[*MESSAGES, {"role": "assistant", "content": [
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1",
                                          "content": "sunny, 21 degrees"}]}])
    assert msg.content[0].text == theirs["choices"][0]["message"]["content"]


@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "get_weather"}])
def test_anthropic_forced_tool_use(api_server, choice):
    client = anthropic.Anthropic(base_url=api_server.url, api_key="x", max_retries=0, timeout=60)
    tools = [{"name": n, "description": f"the {n} tool", "input_schema": s} for n, s in SCHEMAS.items()]
    args = dict(model="ai/tools", max_tokens=300, messages=MESSAGES, tools=tools, tool_choice=choice,
                extra_body={"temperature": 0})
    msg = client.messages.create(**args)
    assert msg.stop_reason == "tool_use"
    uses = [b for b in msg.content if b.type == "tool_use"]
    assert len(uses) == 1 and uses[0].id.startswith("toolu_")
    _valid(uses[0].name, uses[0].input)
    with client.messages.stream(**args) as s:
        final = s.get_final_message()
    streamed = [b for b in final.content if b.type == "tool_use"]
    assert final.stop_reason == "tool_use" and [b.name for b in streamed] == [uses[0].name]
    # (the texts may differ where the tiny model writes stray byte tokens: llama-cpp-python's stream
    # decodes them piece by piece; both are valid)
    _valid(streamed[0].name, streamed[0].input)


@pytest.mark.parametrize("choice", ["required", {"type": "function", "name": "get_weather"}])
def test_responses_forced_function_call(api_server, choice):
    client = _openai(api_server)
    tools = [{"type": "function", "name": n, "description": f"the {n} tool", "parameters": s, "strict": True}
             for n, s in SCHEMAS.items()]
    args = dict(model="ai/tools", input="what is the weather in Paris", tools=tools, tool_choice=choice, temperature=0,
                max_output_tokens=300)
    r = client.responses.create(**args)
    calls = [o for o in r.output if o.type == "function_call"]
    assert r.status == "completed" and len(calls) == 1
    _valid(calls[0].name, calls[0].arguments)
    events = list(client.responses.create(stream=True, **args))
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert json.loads(deltas) == json.loads(done.arguments) == json.loads(calls[0].arguments)
    # the call's output continues the conversation
    follow = client.responses.create(model="ai/tools", previous_response_id=r.id, tools=tools, temperature=0,
                                     max_output_tokens=8, input=[{"type": "function_call_output",
                                                                  "call_id": calls[0].call_id, "output": "sunny"}])
    assert follow.output_text and follow.usage.input_tokens > r.usage.input_tokens


def test_ollama_tools_are_rendered(api_server, direct):
    theirs = direct.chat(MESSAGES, "ai/tools", tools=OPENAI_TOOLS, max_tokens=12)
    # plain HTTP here: the `ollama` client reshapes the tools' schemas (drops keys, reorders them)
    r = requests.post(api_server.url + "/api/chat", json={
        "model": "ai/tools", "messages": MESSAGES, "tools": OPENAI_TOOLS, "stream": False,
        "options": {"temperature": 0, "num_predict": 12}}).json()
    assert r["message"]["content"] == theirs["choices"][0]["message"]["content"]
    assert r["prompt_eval_count"] == theirs["usage"]["prompt_tokens"]
    client = ollama.Client(host=api_server.url, timeout=60)
    r = client.chat(model="ai/tools", messages=MESSAGES, tools=OPENAI_TOOLS, options={"temperature": 0, "num_predict": 12},
                    stream=False)
    past = client.chat(model="ai/tools", stream=False, options={"temperature": 0, "num_predict": 12}, tools=OPENAI_TOOLS,
                       messages=[*MESSAGES, {"role": "assistant", "content": "", "tool_calls": [
                           {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                           {"role": "tool", "content": "sunny, 21 degrees", "tool_name": "get_weather"}])
    assert past.prompt_eval_count > r.prompt_eval_count


def test_langchain_openai(api_server, direct):
    langchain_openai = pytest.importorskip("langchain_openai")
    llm = langchain_openai.ChatOpenAI(base_url=api_server.url + "/v1", api_key="x", model="ai/tiny", temperature=0,
                                      max_tokens=12, max_retries=0)
    expected = direct.chat(MESSAGES, max_tokens=12)["choices"][0]["message"]["content"]
    assert llm.invoke(MESSAGES[0]["content"]).content == expected
    assert "".join(c.content for c in llm.stream(MESSAGES[0]["content"])) == expected
    tools = langchain_openai.ChatOpenAI(base_url=api_server.url + "/v1", api_key="x", model="ai/tools", temperature=0,
                                        max_tokens=300, max_retries=0)
    bound = tools.bind_tools(OPENAI_TOOLS, tool_choice="get_weather")
    answer = bound.invoke(MESSAGES[0]["content"])
    assert [c["name"] for c in answer.tool_calls] == ["get_weather"]
    _valid("get_weather", answer.tool_calls[0]["args"])
