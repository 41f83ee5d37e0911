"""mdl.runner.validation: a request's checks, without a model (test_engine.py sends the same through one)."""

from __future__ import annotations

import pytest

from mdl.runner.validation import (MAX_SCHEMA_REPETITIONS, InvalidRequestError, chat_messages, completion_args,
                                   embedding_inputs, model_name, prompt_text, sampling_args, schema_repetitions,
                                   wants_usage)


def test_sampling_args_pass_what_the_request_sets():
    assert sampling_args({}) == {}
    args = sampling_args({"temperature": 0, "max_completion_tokens": 4, "seed": -1, "stop": ["", "x"],
                          "response_format": {"type": "json_object"}})
    assert args == {"temperature": 0, "max_tokens": 4, "seed": 0xFFFFFFFF, "stop": ["x"],
                    "response_format": {"type": "json_object"}}


@pytest.mark.parametrize("field, value", [("top_p", 2), ("temperature", float("nan")), ("top_k", 1.5), ("stop", [1]),
                                          ("echo", True), ("response_format", {"type": "xml"})])
def test_sampling_args_name_the_bad_parameter(field, value):
    with pytest.raises(InvalidRequestError) as e:
        sampling_args({field: value})
    assert e.value.param == field and e.value.kind == "invalid-request"


def test_messages_and_prompts():
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert chat_messages({"messages": [{"role": "user", "content": parts, "name": "n"}]}) == [
        {"role": "user", "content": "ab", "name": "n"}]
    assert chat_messages({"messages": [{"role": "assistant", "content": None}]}) == [
        {"role": "assistant", "content": ""}]
    with pytest.raises(InvalidRequestError) as e:
        chat_messages({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})
    assert e.value.param == "messages[0].content"
    assert prompt_text({"prompt": ["one"]}) == "one"
    with pytest.raises(InvalidRequestError):
        prompt_text({"prompt": ["one", "two"]})
    with pytest.raises(InvalidRequestError) as e:
        completion_args({"response_format": {"type": "json_object"}})
    assert e.value.param == "response_format"


def test_embedding_inputs():
    assert embedding_inputs({"input": "x"}) == ["x"]
    for bad, param in (({"input": []}, "input"), ({"input": [""]}, "input"),
                       ({"input": "x", "encoding_format": "bits"}, "encoding_format")):
        with pytest.raises(InvalidRequestError) as e:
            embedding_inputs(bad)
        assert e.value.param == param


def test_schema_repetitions_and_small_readers():
    assert schema_repetitions({"type": "string", "minLength": 3, "pattern": "a{2,5}"}) == 10
    assert schema_repetitions({"items": [{"maxItems": 10**12}]}) > MAX_SCHEMA_REPETITIONS
    assert wants_usage({"stream_options": {"include_usage": True}}) and not wants_usage({})
    assert model_name({"model": "ai/x"}, "d") == "ai/x" and model_name({}, "d") == "d"
