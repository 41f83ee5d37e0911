"""`mdl serve` is safe by default: each test sends what a browser attack sends (a cross-site form
posting text/plain, a page on a rebound DNS name, a foreign Origin, a CORS preflight) or what a stranger
on the network sends (no key, a wrong key) to a real server, and checks the refusal and that nothing
happened behind it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest
import requests

pytest.importorskip("llama_cpp")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

from mdl.runner.security import Policy, host_name, same_origin  # noqa: E402

from tests.conftest import assert_clean_error  # noqa: E402

from .test_ops import mdl_at  # noqa: E402
from .test_serve import Server, _metric, _serve_argv  # noqa: E402

CHAT = {"model": "ai/tiny", "messages": [{"role": "user", "content": "hello world"}], "max_tokens": 4,
        "temperature": 0}
EVIL = "https://evil.example"
APP = "https://app.example"
KEY = "s3cret-key-for-the-tests"
TOKENS = 'mdl_tokens_generated_total{model="ai/tiny:latest"}'


@pytest.fixture(scope="module")
def server(runner_home, tmp_path_factory):
    srv = Server(runner_home, tmp_path_factory.mktemp("safe-serve"), "--cors-origin", APP,
                 "--allowed-host", "mdl.internal", "--pull-from", "registry.example")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def keyed(runner_home, tmp_path_factory):
    srv = Server(runner_home, tmp_path_factory.mktemp("keyed-serve"), env={"MDL_API_KEY": KEY})
    yield srv
    srv.stop()


def assert_refused(r: requests.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["code"] == code, err
    assert "access-control-allow-origin" not in {k.lower() for k in r.headers}
    return err


# ---------------------------------------------------------------------------------------------
# a web page the user visits


def test_cross_site_form_posting_text_plain_to_create_is_refused(server):
    # <form method=post enctype=text/plain action=http://127.0.0.1:12434/models/create>: no preflight
    form = '{"from": "evil.example/x:1", "pad": "="}'
    r = requests.post(server.url + "/models/create", data=form,
                      headers={"Content-Type": "text/plain", "Origin": EVIL})
    assert_refused(r, 403, "origin_not_allowed")
    # the same body without an Origin header (an old browser, a proxy that strips it): not JSON, 415
    r = requests.post(server.url + "/models/create", data=form, headers={"Content-Type": "text/plain"})
    assert_refused(r, 415, "unsupported_media_type")
    r = requests.post(server.url + "/models/create", data={"from": "evil.example/x:1"})  # urlencoded
    assert_refused(r, 415, "unsupported_media_type")
    assert "evil.example" not in requests.get(server.url + "/models").text  # nothing was pulled


def test_cross_site_form_posting_text_plain_to_chat_is_refused(server):
    before = _metric(server, TOKENS)
    r = requests.post(server.url + "/engines/v1/chat/completions", data=json.dumps(CHAT),
                      headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": EVIL})
    assert_refused(r, 403, "origin_not_allowed")
    r = requests.post(server.url + "/engines/v1/chat/completions", data=json.dumps(CHAT),
                      headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert_refused(r, 415, "unsupported_media_type")
    assert _metric(server, TOKENS) == before  # no model ran


def test_foreign_host_is_refused_even_from_its_own_origin(server):
    # DNS rebinding: evil.example now resolves to 127.0.0.1; to the browser the page is same-origin
    host = f"evil.example:{server.port}"
    for method, path in (("GET", "/models"), ("GET", "/engines/v1/models"), ("POST", "/models/create"),
                         ("GET", "/metrics"), ("GET", "/")):
        r = requests.request(method, server.url + path, data=b'{"from": "evil.example/x:1"}',
                             headers={"Host": host, "Origin": f"http://{host}", "Content-Type": "application/json"})
        err = assert_refused(r, 421, "misdirected_request")
        assert "evil.example" in err["message"]
    r = requests.get(server.url + "/models", headers={"Host": f"127.0.0.1.evil.example:{server.port}"})
    assert_refused(r, 421, "misdirected_request")


def test_loopback_names_and_allowed_hosts_are_answered(server):
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", f"[::1]:{server.port}",
                 f"mdl.internal:{server.port}", "LOCALHOST"):
        assert requests.get(server.url + "/models", headers={"Host": host}).status_code == 200, host
    # a page served by the runner itself is same-origin
    r = requests.post(server.url + "/v1/chat/completions", json=CHAT,
                      headers={"Origin": f"http://127.0.0.1:{server.port}"})
    assert r.status_code == 200, r.text
    assert "access-control-allow-origin" not in {k.lower() for k in r.headers}


def test_wrong_origin_is_refused(server):
    for origin in (EVIL, "null", f"http://localhost:{server.port + 1}", APP + ".evil.example"):
        r = requests.get(server.url + "/engines/v1/models", headers={"Origin": origin})
        assert_refused(r, 403, "origin_not_allowed")
        r = requests.post(server.url + "/engines/v1/chat/completions", json=CHAT, headers={"Origin": origin})
        assert_refused(r, 403, "origin_not_allowed")


def test_preflight_from_a_foreign_origin_is_refused(server):
    r = requests.options(server.url + "/engines/v1/chat/completions", headers={
        "Origin": EVIL, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization"})
    assert_refused(r, 403, "origin_not_allowed")


def test_a_listed_origin_gets_cors(server):
    r = requests.options(server.url + "/engines/v1/chat/completions", headers={
        "Origin": APP, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-stainless-os"})
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == APP
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "x-stainless-os" in r.headers["access-control-allow-headers"]
    r = requests.post(server.url + "/engines/v1/chat/completions", json=CHAT, headers={"Origin": APP})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == APP
    assert r.headers["vary"] == "Origin"
    # a listed origin still sends JSON
    r = requests.post(server.url + "/engines/v1/chat/completions", data=json.dumps(CHAT),
                      headers={"Origin": APP, "Content-Type": "text/plain"})
    assert r.status_code == 415 and r.headers["access-control-allow-origin"] == APP


def test_create_pulls_only_from_listed_registries(server):
    r = requests.post(server.url + "/models/create", json={"from": "localhost:5999/x/y:1"})
    err = assert_refused(r, 403, "registry_not_allowed")
    assert err["type"] == "permission_error" and "localhost:5999" in err["message"]
    assert "registry.example" in err["message"]


# ---------------------------------------------------------------------------------------------
# the API key


def test_every_route_but_health_needs_the_key(keyed):
    assert requests.get(keyed.url + "/health").status_code == 200
    for method, path in (("GET", "/"), ("GET", "/health/ready"), ("GET", "/metrics"), ("GET", "/models"),
                         ("GET", "/engines/v1/models"), ("POST", "/engines/v1/chat/completions"),
                         ("POST", "/models/create"), ("DELETE", "/models/ai/tiny"), ("GET", "/no/such/route")):
        r = requests.request(method, keyed.url + path, json=CHAT)
        err = assert_refused(r, 401, "invalid_api_key")
        assert err["type"] == "authentication_error"
        assert r.headers["www-authenticate"].startswith("Bearer")
    for headers in ({"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {KEY}x"},
                    {"Authorization": f"Bearer {KEY[:-1]}"}, {"x-api-key": "wrong"}, {"Authorization": KEY},
                    {"Authorization": "Basic !!notbase64"}):
        assert_refused(requests.get(keyed.url + "/models", headers=headers), 401, "invalid_api_key")
    # a browser asking for the page is offered its own password prompt
    r = requests.get(keyed.url + "/", headers={"Accept": "text/html"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert requests.get(keyed.url + "/models", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_the_key_works_the_ways_clients_send_it(keyed):
    client = openai.OpenAI(base_url=keyed.url + "/engines/v1", api_key=KEY, max_retries=0, timeout=60)
    assert client.chat.completions.create(**CHAT).choices[0].message.content
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=keyed.url + "/engines/v1", api_key="nope", max_retries=0).models.list()
    assert requests.get(keyed.url + "/models", headers={"x-api-key": KEY}).status_code == 200  # Anthropic's
    basic = base64.b64encode(f"anyone:{KEY}".encode()).decode()
    assert requests.get(keyed.url + "/models", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert requests.get(keyed.url + "/metrics", headers={"Authorization": f"bearer {KEY}"}).status_code == 200


def test_the_key_is_never_echoed_or_logged(keyed):
    r = requests.get(keyed.url + "/models", headers={"Authorization": "Bearer guess-" + KEY[:5]})
    assert r.status_code == 401 and KEY[:5] not in r.text
    r = requests.post(keyed.url + "/engines/v1/chat/completions", json=CHAT | {"model": "ai/absent"},
                      headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 404 and KEY not in r.text
    assert KEY not in keyed.stderr() and KEY[:5] not in keyed.stderr()


def test_binding_beyond_loopback_without_a_key_warns(keyed, runner_home):
    # 0.0.0.0 on a port already taken: the warning is printed, then binding fails, so nothing listens
    env = {k: v for k, v in keyed.env.items() if k != "MDL_API_KEY"}
    argv = [*_serve_argv(), "--host", "0.0.0.0", "--port", str(keyed.port)]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "warning: listening on 0.0.0.0 without an API key" in proc.stderr
    assert "MDL_API_KEY" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(argv, env=env | {"MDL_API_KEY": KEY}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "warning" not in proc.stderr and KEY not in proc.stderr
    proc = subprocess.run([*_serve_argv(), "--api-key", " "], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--api-key (or MDL_API_KEY) is empty" in proc.stderr


# ---------------------------------------------------------------------------------------------
# the rules themselves


def test_policy_rules():
    assert host_name("[::1]:80") == "::1" and host_name("Example.COM.:8080") == "example.com"
    assert host_name("localhost") == "localhost"
    assert same_origin("http://127.0.0.1:1234", "127.0.0.1:1234", "http")
    assert not same_origin("https://127.0.0.1:1234", "127.0.0.1:1234", "http")
    assert not same_origin("http://127.0.0.1:1234", "127.0.0.1:1235", "http")
    loop = Policy.for_server("127.0.0.1")
    assert loop.check_host and loop.host_allowed("127.0.0.5:1") and loop.host_allowed("[::1]")
    assert not loop.host_allowed("evil.example") and not loop.host_allowed(None)
    wide = Policy.for_server("0.0.0.0")
    assert not wide.check_host and wide.host_allowed("my-machine.lan:12434")
    named = Policy.for_server("0.0.0.0", allowed_hosts=["my-machine.lan"])
    assert named.host_allowed("my-machine.lan:12434") and not named.host_allowed("evil.example")
    assert Policy.for_server("::1").check_host and Policy.for_server("[::1]").check_host
    assert Policy.for_server("x", pull_from=["Index.Docker.IO"]).pull_from == ("docker.io",)
    assert Policy(cors_origins=("*",)).listed_origin("https://any.example")
    key = Policy(api_key="k")
    assert key.key_matches({b"authorization": b"Bearer k"}) and not key.key_matches({})
    assert not key.key_matches({b"authorization": b"Bearer kk"})


def test_the_cli_sends_the_key_from_the_environment(keyed):
    assert_clean_error(mdl_at(keyed.url, "ps"), 1, "this runner needs an API key")
    env_key = {"MDL_API_KEY": KEY}
    proc = _mdl_with(keyed.url, env_key, "status", "--json")
    assert proc.returncode == 0 and '"running": true' in proc.stdout
    assert KEY not in proc.stdout + proc.stderr


def _mdl_with(url: str, extra: dict, *args: str):
    env = {k: v for k, v in os.environ.items() if k not in ("MDL_DEBUG", "MDL_API_KEY")}
    return subprocess.run([sys.executable, "-m", "mdl", *args], capture_output=True, text=True, timeout=60,
                          env=env | {"MODEL_RUNNER_HOST": url} | extra)
