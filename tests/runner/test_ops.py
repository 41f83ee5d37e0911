"""The operations API and the CLI commands that call it (`mdl ps`, `unload`, `configure`, `requests`,
`status`, `logs`, and `mdl run` through a runner), each against a real `mdl serve` on 127.0.0.1 with
real tiny models, found through MODEL_RUNNER_HOST as Docker's CLI finds its runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import requests

pytest.importorskip("llama_cpp")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from tests.conftest import REPO_ROOT, assert_clean_error  # noqa: E402
from tests.integration.registry import free_port  # noqa: E402

from .test_serve import Server  # noqa: E402

CHAT = [{"role": "user", "content": "hello world"}]


@pytest.fixture(scope="module")
def server(runner_home, tmp_path_factory):
    srv = Server(runner_home, tmp_path_factory.mktemp("ops-serve"), "--max-models", "2")
    yield srv
    srv.stop()


def mdl_at(url: str, *args: str, timeout: float = 60, home=None, input: str | None = None):
    env = {k: v for k, v in os.environ.items() if k not in ("MDL_DEBUG", "MDL_API_KEY")}
    env["MODEL_RUNNER_HOST"] = url
    if home is not None:
        env["MDL_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "mdl", *args], capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT, timeout=timeout, input=input)


def chat(server, model="ai/tiny", **kw) -> dict:
    body = {"model": model, "messages": CHAT, "max_tokens": 4, "temperature": 0} | kw
    r = requests.post(server.url + "/engines/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def ps(server) -> list[dict]:
    return requests.get(server.url + "/engines/ps", timeout=10).json()


def wait_for(predicate, what: str, timeout: float = 15):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# no runner


@pytest.mark.parametrize("args", [["ps"], ["unload", "--all"], ["configure", "--context-size", "64", "ai/tiny"],
                                  ["requests"], ["requests", "-f"], ["status"], ["logs", "-f"]])
def test_without_a_runner_each_command_says_what_to_run(args):
    url = f"http://127.0.0.1:{free_port()}"
    proc = mdl_at(url, *args)
    assert_clean_error(proc, 1, f"no model runner answers at {url}")
    assert "start one with `mdl serve`" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # one line


def test_status_json_without_a_runner():
    url = f"http://127.0.0.1:{free_port()}"
    proc = mdl_at(url, "status", "--json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout) | {"error": None} == {"running": False, "url": url, "error": None}


def test_the_commands_import_nothing_heavy():
    code = ("import sys; from mdl.cli import ps, unload, configure, requests_cmd, status, logs; "
            "heavy = [m for m in ('llama_cpp', 'starlette', 'uvicorn', 'numpy', 'gguf', 'requests', 'jsonschema', "
            "'mdl.runner') if m in sys.modules]; assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


# ---------------------------------------------------------------------------------------------
# HTTP


def test_version_status_df(server):
    assert requests.get(server.url + "/version").json()["version"]
    status = requests.get(server.url + "/engines/status").json()
    assert status["running"] is True and "llama.cpp" in status["backends"]
    assert status["keep_alive"] == "5m"  # Docker's idle default
    df = requests.get(server.url + "/engines/df").json()
    assert df["models_disk_usage"] > 0 and df["models"] >= 5


def test_unload_validates_its_body(server):
    for body, param in (({}, "models"), ({"models": "ai/tiny"}, "models"), ({"all": "yes"}, "all")):
        r = requests.post(server.url + "/engines/unload", json=body)
        assert r.status_code == 400 and r.json()["error"]["param"] == param
    r = requests.post(server.url + "/engines/unload", json={"models": ["ai/absent"]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_configure_validates_every_value(server):
    url = server.url + "/engines/_configure"
    for body, param in (({"context_size": 0}, "context_size"), ({"context-size": "big"}, "context_size"),
                        ({"keep_alive": "soon"}, "keep_alive"), ({"mode": "wizard"}, "mode"),
                        ({"sampling": {"temperature": 9}}, "sampling.temperature"),
                        ({"sampling": {"color": 1}}, "sampling.color"),
                        ({"raw-runtime-flags": "--mlock"}, "raw-runtime-flags")):
        r = requests.post(url, json={"model": "ai/tiny"} | body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["param"] == param, r.json()
    r = requests.post(url, json={"model": "ai/absent", "context_size": 64})
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"
    assert requests.post(url, json={"context_size": 64}).json()["error"]["param"] == "model"


# ---------------------------------------------------------------------------------------------
# the CLI against the server


def test_ps_status_unload(server):
    chat(server)
    proc = mdl_at(server.url, "ps")
    assert proc.returncode == 0, proc.stderr
    header, *rows = proc.stdout.splitlines()
    assert header.split()[:3] == ["MODEL", "MODE", "MEMORY"]
    assert any(r.startswith("ai/tiny:latest") and "completion" in r for r in rows), proc.stdout
    [row] = [r for r in json.loads(mdl_at(server.url, "ps", "--json").stdout) if r["model_name"] == "ai/tiny:latest"]
    assert row["backend_name"] == "llama.cpp" and row["mode"] == "completion" and row["memory"] > 0
    assert row["in_flight"] == 0 and row["last_used"] and row["keep_alive"] == "5m" and row["expires_at"]
    status = mdl_at(server.url, "status")
    assert status.returncode == 0 and f"running at {server.url}" in status.stdout
    assert json.loads(mdl_at(server.url, "status", "--json").stdout)["models_loaded"] >= 1

    proc = mdl_at(server.url, "unload", "ai/tiny")
    assert proc.returncode == 0 and proc.stdout.strip() == "Unloaded 1 model instance", proc.stderr
    assert not [r for r in ps(server) if r["model_name"] == "ai/tiny:latest"]
    assert mdl_at(server.url, "unload", "ai/tiny").stdout.strip() == "Unloaded 0 model instances"
    assert_clean_error(mdl_at(server.url, "unload", "ai/absent"), 1, "ai/absent not found")
    assert_clean_error(mdl_at(server.url, "unload"), 2, "name the models to unload, or use --all")
    chat(server)
    chat(server, "ai/tiny-cncf")
    assert mdl_at(server.url, "unload", "--all").stdout.strip() == "Unloaded 2 model instances"
    assert ps(server) == []


def test_configure_applies_at_the_next_load(server):
    chat(server)
    proc = mdl_at(server.url, "configure", "--context-size", "512", "--keep-alive", "10m", "--max-tokens", "3",
                  "ai/tiny")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ai/tiny:latest: context size 512, keep-alive 10m, max_tokens 3")
    assert "1 loaded instance unloaded" in proc.stdout
    assert not [r for r in ps(server) if r["model_name"] == "ai/tiny:latest"]  # reloads at the next request
    body = {"model": "ai/tiny", "messages": CHAT, "temperature": 0}  # no max_tokens: the configured 3
    r = requests.post(server.url + "/engines/v1/chat/completions", json=body, timeout=60).json()
    assert r["usage"]["completion_tokens"] == 3
    [row] = [r for r in ps(server) if r["model_name"] == "ai/tiny:latest"]
    assert row["context_size"] == 512 and row["keep_alive"] == "10m"
    shown = mdl_at(server.url, "configure", "ai/tiny")
    assert shown.stdout.strip() == "ai/tiny:latest: context size 512, keep-alive 10m, max_tokens 3"
    assert_clean_error(mdl_at(server.url, "configure", "--keep-alive", "soon", "ai/tiny"), 1,
                       "'keep_alive' must be a duration")
    assert_clean_error(mdl_at(server.url, "configure", "--context-size", "0", "ai/tiny"), 1, "'context_size'")
    assert_clean_error(mdl_at(server.url, "configure", "--mode", "wizard", "ai/tiny"), 1, "'mode' must be one of")
    # back to the defaults for the other tests
    requests.post(server.url + "/engines/_configure", json={"model": "ai/tiny"})
    requests.post(server.url + "/engines/unload", json={"all": True})


def test_keep_alive_zero_and_short(server):
    requests.post(server.url + "/engines/_configure", json={"model": "ai/tiny-cncf", "keep_alive": 0})
    chat(server, "ai/tiny-cncf")
    assert not [r for r in ps(server) if r["model_name"] == "ai/tiny-cncf:latest"]  # gone as the request ended
    requests.post(server.url + "/engines/_configure", json={"model": "ai/tiny-cncf", "keep_alive": "1s"})
    chat(server, "ai/tiny-cncf")
    assert [r for r in ps(server) if r["model_name"] == "ai/tiny-cncf:latest"]
    wait_for(lambda: not [r for r in ps(server) if r["model_name"] == "ai/tiny-cncf:latest"],
             "a 1s keep-alive did not unload the model")
    requests.post(server.url + "/engines/_configure", json={"model": "ai/tiny-cncf", "keep_alive": -1})
    assert requests.get(server.url + "/engines/_configure?model=ai/tiny-cncf").json()[0]["keep_alive"] == "never"


def test_requests_lists_and_follows(server):
    chat(server, messages=[{"role": "user", "content": "the recent requests table"}])
    proc = mdl_at(server.url, "requests", "--model", "ai/tiny")
    assert proc.returncode == 0, proc.stderr
    assert "the recent requests table" in proc.stdout and "200" in proc.stdout
    records = json.loads(mdl_at(server.url, "requests", "--json").stdout)
    last = [r for r in records if r["prompt"] == "the recent requests table"][-1]
    assert last["api"] == "chat" and last["model"] == "ai/tiny:latest" and last["status"] == 200
    assert last["completion_tokens"] == 4 and last["prompt_tokens"] > 0 and last["latency_ms"] > 0
    assert last["response"]
    assert all(r["model"] == "ai/tiny-cncf:latest"
               for r in json.loads(mdl_at(server.url, "requests", "--json", "--model", "ai/tiny-cncf").stdout))
    # a failed request is a record too
    requests.post(server.url + "/engines/v1/chat/completions", json={"model": "ai/absent", "messages": CHAT})
    failed = requests.get(server.url + "/engines/requests").json()[-1]
    assert failed["status"] == 404 and "ai/absent" in failed["error"]

    env = {k: v for k, v in os.environ.items() if k not in ("MDL_DEBUG", "MDL_API_KEY")}
    follower = subprocess.Popen([sys.executable, "-m", "mdl", "requests", "-f", "--json", "--model", "ai/tiny"],
                                env=env | {"MODEL_RUNNER_HOST": server.url}, stdout=subprocess.PIPE, text=True,
                                cwd=REPO_ROOT)
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(follower.stdout.readline, "")), daemon=True)
        reader.start()
        wait_for(lambda: len(lines) >= 1, "the follower printed nothing")  # the recent ones first
        body = {"model": "ai/tiny", "messages": [{"role": "user", "content": "followed live"}], "max_tokens": 4,
                "stream": True}
        assert requests.post(server.url + "/v1/chat/completions", json=body, timeout=60).text.endswith("[DONE]\n\n")
        wait_for(lambda: any("followed live" in line for line in lines), "the new request was not followed")
        new = json.loads([line for line in lines if "followed live" in line][0])
        assert new["stream"] is True and new["status"] == 200 and new["first_token_ms"] is not None
    finally:
        follower.terminate()
        follower.wait(10)


def test_logs(server):
    chat(server)
    proc = mdl_at(server.url, "logs")
    assert proc.returncode == 0 and "serving" in proc.stdout and "loaded ai/tiny:latest" in proc.stdout
    env = {k: v for k, v in os.environ.items() if k not in ("MDL_DEBUG", "MDL_API_KEY")}
    follower = subprocess.Popen([sys.executable, "-m", "mdl", "logs", "-f"], env=env | {"MODEL_RUNNER_HOST": server.url},
                                stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    try:
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(iter(follower.stdout.readline, "")), daemon=True).start()
        wait_for(lambda: any("serving" in line for line in lines), "logs -f printed nothing")
        requests.post(server.url + "/engines/unload", json={"models": ["ai/tiny"]})
        wait_for(lambda: any("unloaded ai/tiny:latest" in line for line in lines), "the unload was not followed")
    finally:
        follower.terminate()
        follower.wait(10)


def test_run_uses_the_running_server(server, runner_home):
    before = len(requests.get(server.url + "/engines/requests").json())
    through = mdl_at(server.url, "run", "ai/tiny", "hello world", "--temperature", "0", "--max-tokens", "8",
                     home=runner_home)
    assert through.returncode == 0, through.stderr
    assert len(requests.get(server.url + "/engines/requests").json()) == before + 1
    here = mdl_at(server.url, "run", "--local", "ai/tiny", "hello world", "--temperature", "0", "--max-tokens", "8",
                  home=runner_home)
    assert here.returncode == 0, here.stderr
    assert len(requests.get(server.url + "/engines/requests").json()) == before + 1  # not through the server
    assert through.stdout == here.stdout and through.stdout.strip()
    chat_proc = mdl_at(server.url, "run", "ai/tiny", "--temperature", "0", "--max-tokens", "4", home=runner_home,
                       input="hello world\nthe model\n/bye\n")
    assert chat_proc.returncode == 0 and len(chat_proc.stdout.splitlines()) == 2, chat_proc.stderr
    assert_clean_error(mdl_at(server.url, "run", "ai/absent", "hi", home=runner_home), 1, "ai/absent not found")
    assert_clean_error(mdl_at(server.url, "run", "ai/st", "hi", home=runner_home), 1, "safetensors")
