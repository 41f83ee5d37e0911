"""`mdl serve` (a real server process, real llama.cpp) against hostile and broken requests: bodies over
the limit or nested past the parser, prompts longer than the context on every route, every kind of
invalid parameter, and clients that leave mid-stream. Each answer is OpenAI's error shape with the exact
status, type, param and code; the server never prints a traceback and keeps serving.

(The 413 for a declared Content-Length, the basic 400s and a chat stream abandoned mid-way are in
test_serve.py; the engine's own checks in test_engine.py.)"""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

pytest.importorskip("llama_cpp")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from .test_serve import Server, _metric  # noqa: E402

CHAT = [{"role": "user", "content": "hello world"}]
LONG = "hello world " * 300  # ~600 tokens: over the tiny models' 256-token context
ROUTES = {"chat": "/v1/chat/completions", "completion": "/v1/completions", "embedding": "/v1/embeddings"}
BASE = {
    "chat": {"model": "ai/tiny", "messages": CHAT, "max_tokens": 4, "temperature": 0},
    "completion": {"model": "ai/tiny", "prompt": "hello world", "max_tokens": 4, "temperature": 0},
    "embedding": {"model": "ai/tiny-embed", "input": "hello world"},
}


@pytest.fixture(scope="module")
def server(runner_home, tmp_path_factory):
    srv = Server(runner_home, tmp_path_factory.mktemp("hostile-serve"), "--max-models", "2")
    yield srv
    srv.stop()


def post(server, route: str, body, **kw) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) or hasattr(body, "__next__") else json.dumps(body)
    return requests.post(server.url + ROUTES.get(route, route), data=data,
                         headers={"Content-Type": "application/json"}, timeout=60, **kw)


def assert_error(r: requests.Response, status: int, param, code: str, etype: str = "invalid_request_error") -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers  # never an event stream
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert (err["type"], err["param"], err["code"]) == (etype, param, code), err
    assert err["message"] and "Traceback" not in r.text
    return err


def assert_still_serving(server) -> None:
    r = post(server, "chat", BASE["chat"])
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]


# ---------------------------------------------------------------------------------------------
# bodies


def test_a_body_over_the_limit_without_content_length_is_413(server):
    def chunks():  # chunked transfer: the size is known only while reading
        yield b'{"model": "ai/tiny", "messages": [{"role": "user", "content": "'
        for _ in range(9):
            yield b"x" * (1 << 20)
        yield b'"}]}'

    r = post(server, "chat", chunks())
    err = assert_error(r, 413, None, "request_too_large")
    assert "over the limit of 8388608 bytes" in err["message"]
    assert_still_serving(server)


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_json_nested_past_the_parser_is_400(server, route):
    depth = 100_000
    body = b'{"model": "ai/tiny", "x": ' + b"[" * depth + b"]" * depth + b"}"
    err = assert_error(post(server, route, body), 400, None, "invalid_json")
    assert "nested too deeply" in err["message"]


# ---------------------------------------------------------------------------------------------
# prompts longer than the context


@pytest.mark.parametrize("route,field,stream", [
    ("chat", "messages", False), ("chat", "messages", True),
    ("completion", "prompt", False), ("completion", "prompt", True),
    ("embedding", "input", False),
])
def test_prompt_longer_than_the_context_is_400(server, route, field, stream):
    body = dict(BASE[route])
    body[field] = [{"role": "user", "content": LONG}] if field == "messages" else LONG
    if stream:
        body["stream"] = True
    err = assert_error(post(server, route, body), 400, field, "context_length_exceeded")
    assert "256" in err["message"]  # the context it is over
    assert_still_serving(server)


# ---------------------------------------------------------------------------------------------
# invalid parameters, each kind


def _deep_string_schema(**kw) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", **kw}}}


INVALID = [
    # the route's own checks: presence and JSON type
    ("chat", "model", None, "model", "missing_required_parameter"),
    ("chat", "model", 3, "model", "invalid_type"),
    ("chat", "model", "  ", "model", "invalid_value"),
    ("chat", "model", "Not A/Reference!", "model", "invalid_model"),
    ("chat", "model", "ai/no-such-model", "model", "model_not_found"),
    ("chat", "messages", None, "messages", "missing_required_parameter"),
    ("chat", "messages", "hello", "messages", "invalid_type"),
    ("chat", "stream", "yes", "stream", "invalid_type"),
    ("completion", "prompt", None, "prompt", "missing_required_parameter"),
    ("completion", "prompt", 3, "prompt", "invalid_type"),
    ("embedding", "input", None, "input", "missing_required_parameter"),
    ("embedding", "input", {"text": "x"}, "input", "invalid_type"),
    ("embedding", "stream", True, "stream", "invalid_value"),
    # the engine's: values, ranges, unsupported options
    ("chat", "messages", [], "messages", "invalid_value"),
    ("chat", "messages", [{"role": "wizard", "content": "x"}], "messages[0].role", "invalid_value"),
    ("chat", "messages", [{"role": "user", "content": 3}], "messages[0].content", "invalid_value"),
    ("chat", "messages", [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
     "messages[0].content", "invalid_value"),
    ("chat", "messages", [{"role": "user", "content": "\ud800 lone surrogate"}], "messages", "invalid_value"),
    ("chat", "temperature", "hot", "temperature", "invalid_value"),
    ("chat", "temperature", -1, "temperature", "invalid_value"),
    ("chat", "temperature", 2.5, "temperature", "invalid_value"),
    ("chat", "temperature", float("nan"), "temperature", "invalid_value"),
    ("chat", "temperature", float("inf"), "temperature", "invalid_value"),
    ("chat", "top_p", 1.5, "top_p", "invalid_value"),
    ("chat", "top_k", -1, "top_k", "invalid_value"),
    ("chat", "top_k", 2.5, "top_k", "invalid_value"),
    ("chat", "min_p", 2, "min_p", "invalid_value"),
    ("chat", "presence_penalty", 3, "presence_penalty", "invalid_value"),
    ("chat", "frequency_penalty", -3, "frequency_penalty", "invalid_value"),
    ("chat", "repeat_penalty", -1, "repeat_penalty", "invalid_value"),
    ("chat", "max_tokens", 0, "max_tokens", "invalid_value"),
    ("chat", "max_tokens", 1.5, "max_tokens", "invalid_value"),
    ("chat", "max_tokens", "10", "max_tokens", "invalid_value"),
    ("chat", "max_completion_tokens", -5, "max_completion_tokens", "invalid_value"),
    ("chat", "seed", "x", "seed", "invalid_value"),
    ("chat", "seed", 2**64, "seed", "invalid_value"),
    ("chat", "n", 17, "n", "invalid_value"),
    ("chat", "n", 0, "n", "invalid_value"),
    ("chat", "stop", 3, "stop", "invalid_value"),
    ("chat", "stop", ["a", 1], "stop", "invalid_value"),
    ("chat", "stream_options", "yes", "stream_options", "invalid_value"),
    ("chat", "logprobs", "yes", "logprobs", "invalid_value"),
    ("chat", "top_logprobs", 21, "top_logprobs", "invalid_value"),
    ("chat", "response_format", {"type": "xml"}, "response_format", "invalid_value"),
    ("chat", "response_format", {"type": "json_schema"}, "response_format", "invalid_value"),
    # grammars that would exhaust memory, or that llama.cpp's parser refuses (which crashed the server)
    ("chat", "response_format", _deep_string_schema(minLength=10**9), "response_format", "invalid_value"),
    ("chat", "response_format", _deep_string_schema(pattern="^a{1,99999999}$"), "response_format", "invalid_value"),
    ("chat", "response_format", _deep_string_schema(maxLength=3000), "response_format", "invalid_value"),
    ("completion", "prompt", ["one", "two"], "prompt", "invalid_value"),
    ("completion", "suffix", "x", "suffix", "invalid_value"),
    ("completion", "echo", True, "echo", "invalid_value"),
    ("completion", "response_format", {"type": "json_object"}, "response_format", "invalid_value"),
    ("embedding", "input", [], "input", "invalid_value"),
    ("embedding", "input", ["a", 1], "input", "invalid_value"),
    ("embedding", "input", [""], "input", "invalid_value"),
    ("embedding", "encoding_format", "xml", "encoding_format", "invalid_value"),
]


@pytest.mark.parametrize("route,field,value,param,code", INVALID,
                         ids=[f"{r}-{f}-{i}" for i, (r, f, *_) in enumerate(INVALID)])
def test_invalid_parameter(server, route, field, value, param, code):
    body = dict(BASE[route])
    if value is None:
        body.pop(field)
    else:
        body[field] = value
    status = 404 if code == "model_not_found" else 400
    assert_error(post(server, route, body), status, param, code)
    if route != "embedding" and field != "stream":  # the same answer before a stream starts
        assert_error(post(server, route, body | {"stream": True}), status, param, code)


def test_a_sane_schema_still_constrains_the_answer(server):
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"a": {"type": "string", "maxLength": 8}}, "required": ["a"]}}}
    r = post(server, "chat", BASE["chat"] | {"response_format": rf, "max_tokens": 40})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"].lstrip().startswith("{")


# ---------------------------------------------------------------------------------------------
# clients that leave


def _leave_mid_stream(server, route: str, body: dict) -> None:
    with requests.post(server.url + ROUTES[route], json=body | {"stream": True}, stream=True, timeout=30) as r:
        assert r.status_code == 200
        first = next(line for line in r.iter_lines() if line)
        assert first.startswith(b"data: {")


def _leave_before_the_answer(server, body: dict) -> None:
    """Send a request on a raw socket and close it at once, before any byte of the answer."""
    raw = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(raw)).encode() + b"\r\n\r\n" + raw)


def test_clients_leaving_mid_stream_and_before_the_answer_free_the_model(server):
    cancelled = _metric(server, "mdl_streams_cancelled_total")
    tokens = 'mdl_tokens_generated_total{model="ai/tiny:latest"}'
    before = _metric(server, tokens)
    _leave_mid_stream(server, "completion", BASE["completion"] | {"max_tokens": 240})
    for _ in range(3):
        _leave_mid_stream(server, "chat", BASE["chat"] | {"max_tokens": 240})
    for _ in range(3):
        _leave_before_the_answer(server, BASE["chat"] | {"max_tokens": 240, "stream": True})
        _leave_before_the_answer(server, BASE["chat"] | {"max_tokens": 240})
    start = time.monotonic()
    assert_still_serving(server)  # the model is free again
    assert time.monotonic() - start < 20
    deadline = time.monotonic() + 10
    while _metric(server, "mdl_streams_cancelled_total") < cancelled + 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _metric(server, "mdl_streams_cancelled_total") >= cancelled + 4
    # every abandoned stream stopped early: far fewer than the 240 tokens each asked for
    assert _metric(server, tokens) - before < 240 * 4


def test_no_request_left_a_traceback_and_the_server_still_serves(server):
    assert requests.get(server.url + "/health", timeout=10).json() == {"status": "ok"}
    assert_still_serving(server)
    assert server.proc.poll() is None
    assert "Traceback" not in server.stderr()
