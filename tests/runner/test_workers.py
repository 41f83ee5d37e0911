"""Each loaded model in its own worker process: a real `mdl serve` whose workers are killed with
SIGKILL between requests, mid-stream and mid-request; the scheduler's rules across the process
boundary; and no worker left behind when the server stops."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest
import requests

pytest.importorskip("llama_cpp")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

from mdl.runner import links_dir  # noqa: E402
from mdl.runner.resolve import resolve_model  # noqa: E402
from mdl.runner.scheduler import Scheduler  # noqa: E402
from mdl.runner.validation import InvalidRequestError  # noqa: E402
from mdl.runner.worker import WorkerDiedError, load_worker  # noqa: E402
from mdl.runner.worker_process import decode_error, encode_error  # noqa: E402

from .test_ops import chat, ps, wait_for  # noqa: E402
from .test_serve import Server  # noqa: E402

CHAT = [{"role": "user", "content": "hello world"}]
LONG = {"model": "ai/tiny", "messages": CHAT, "max_tokens": 200, "temperature": 0, "stream": True}


@pytest.fixture(scope="module")
def server(runner_home, tmp_path_factory):
    srv = Server(runner_home, tmp_path_factory.mktemp("workers-serve"), "--max-models", "2")
    yield srv
    srv.stop()


def pid_of(server, model: str = "ai/tiny:latest") -> int:
    [row] = [r for r in ps(server) if r["model_name"] == model]
    return row["pid"]


def gone(pid: int) -> bool:
    """The process has exited and been reaped (a zombie still counts as there)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(") ", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def mapped(pid: int, path: str) -> bool:
    try:
        return path in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# where the engines live


def test_each_model_runs_in_a_worker_and_the_server_holds_none(server, runner_store):
    chat(server)
    chat(server, "ai/tiny-cncf")
    tiny, cncf = pid_of(server), pid_of(server, "ai/tiny-cncf:latest")
    assert len({tiny, cncf, server.proc.pid}) == 3
    assert {tiny, cncf} <= descendants(server.proc.pid)
    weights = str(resolve_model(runner_store, "ai/tiny", links_dir(runner_store)).model_path)
    assert mapped(tiny, weights) and not mapped(server.proc.pid, weights)  # llama.cpp maps the GGUF
    forkserver = int(Path(f"/proc/{tiny}/stat").read_text().rsplit(") ", 1)[1].split()[1])  # the worker's parent
    assert forkserver in descendants(server.proc.pid)
    assert len(list(Path(f"/proc/{forkserver}/task").iterdir())) == 1  # it never forks with a thread running
    memory = [r["memory"] for r in ps(server)]
    assert all(m > 10 << 20 for m in memory)  # a process's resident bytes, not the weights' size
    assert requests.post(server.url + "/engines/unload", json={"models": ["ai/tiny"]}).json()["unloaded_runners"] == 1
    wait_for(lambda: gone(tiny), "unloading did not end the worker")
    assert not gone(cncf)


# ---------------------------------------------------------------------------------------------
# killed workers


def test_sigkill_between_requests(server):
    first = chat(server)["choices"][0]["message"]["content"]
    pid = pid_of(server)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: gone(pid), "the worker did not die")
    again = chat(server)  # a new worker, the same answer
    assert again["choices"][0]["message"]["content"] == first
    assert pid_of(server) != pid
    assert server.proc.poll() is None


def test_sigkill_mid_stream(server):
    chat(server)
    pid = pid_of(server)
    with requests.post(server.url + "/v1/chat/completions", json=LONG, stream=True, timeout=60) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        assert next(line for line in lines if line).startswith(b"data: {")
        os.kill(pid, signal.SIGKILL)
        events = [json.loads(line[6:]) for line in lines if line.startswith(b"data: {")]
    err = events[-1]["error"]
    assert err["code"] == "worker_died" and err["type"] == "server_error"
    assert "ai/tiny:latest" in err["message"] and "SIGKILL" in err["message"]
    assert "Traceback" not in err["message"]
    assert chat(server)["choices"][0]["message"]["content"]  # the next request starts a new worker
    assert pid_of(server) != pid
    # the official client sees an error, not a truncated answer
    chat(server)
    pid = pid_of(server)
    client = server.client()
    stream = client.chat.completions.create(**{k: v for k, v in LONG.items()})
    with pytest.raises(openai.APIError) as e:
        for i, _ in enumerate(stream):
            if i == 1:
                os.kill(pid, signal.SIGKILL)
    assert "died" in str(e.value) and "SIGKILL" in str(e.value)
    assert chat(server)["choices"][0]["message"]["content"]


def test_sigkill_mid_request_fails_only_that_request(server):
    chat(server)
    chat(server, "ai/tiny-cncf")
    pid = pid_of(server)
    os.kill(pid, signal.SIGSTOP)  # frozen: the next request to ai/tiny is in flight until we kill it
    answer: dict = {}

    def ask() -> None:
        body = {"model": "ai/tiny", "messages": CHAT, "max_tokens": 4}
        answer["r"] = requests.post(server.url + "/v1/chat/completions", json=body, timeout=60)

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        wait_for(lambda: [r for r in ps(server) if r["model_name"] == "ai/tiny:latest" and r["in_use"]],
                 "the request did not reach the worker")
        assert chat(server, "ai/tiny-cncf")["choices"][0]["message"]["content"]  # other models keep answering
    finally:
        os.kill(pid, signal.SIGKILL)
        asker.join(30)
    r = answer["r"]
    assert r.status_code == 500
    err = r.json()["error"]
    assert err["code"] == "worker_died" and "ai/tiny:latest" in err["message"] and "SIGKILL" in err["message"]
    assert chat(server)["choices"][0]["message"]["content"]
    assert server.proc.poll() is None and "Traceback" not in server.stderr()
    logs = requests.get(server.url + "/logs").text
    assert "the worker of ai/tiny:latest is gone (killed by SIGKILL" in logs


def test_a_bad_request_crosses_the_boundary_as_a_400(server):
    r = requests.post(server.url + "/v1/chat/completions",
                      json={"model": "ai/tiny", "messages": CHAT, "top_k": -1, "stream": True})
    assert r.status_code == 400 and r.json()["error"]["param"] == "top_k"
    long = {"model": "ai/tiny", "messages": [{"role": "user", "content": "hello world " * 300}]}
    r = requests.post(server.url + "/v1/chat/completions", json=long)
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


def test_errors_travel_whole():
    err = decode_error(encode_error(InvalidRequestError("bad", param="top_k", code="invalid_value")))
    assert isinstance(err, InvalidRequestError) and (err.param, err.code, err.kind) == ("top_k", "invalid_value",
                                                                                        "invalid-request")
    err = decode_error(encode_error(WorkerDiedError("docker.io/ai/x:1", "killed", "while loading")))
    assert err.kind == "worker-died" and err.outcome.http_status == 500 and "ai/x:1" in err.message


# ---------------------------------------------------------------------------------------------
# the scheduler's rules across the process boundary


def test_scheduler_with_workers_keeps_order_budget_and_lru(runner_store):
    sizes = {r: resolve_model(runner_store, r, links_dir(runner_store)).size for r in ("ai/tiny", "ai/tiny-cncf")}
    s = Scheduler(runner_store, links_dir(runner_store), max_models=2, memory_budget=max(sizes.values()) + 1,
                  n_threads=1, loader=load_worker)
    order: list[int] = []
    try:
        with s.acquire("ai/tiny") as engine:
            first_pid = engine.pid
            threads = []
            for i in range(3):  # queue behind the held model, one by one
                t = threading.Thread(target=lambda i=i: _use(s, order, i))
                t.start()
                threads.append(t)
                wait_for(lambda: s.loaded()[0].waiting == i + 1, "a request did not queue")
        for t in threads:
            t.join(30)
        assert order == [0, 1, 2]
        with s.acquire("ai/tiny-cncf") as engine:  # the budget holds one: ai/tiny's worker is ended
            assert engine.chat({"messages": CHAT, "max_tokens": 2})["usage"]["completion_tokens"] == 2
        assert [i.reference for i in s.loaded()] == ["docker.io/ai/tiny-cncf:latest"]
        wait_for(lambda: gone(first_pid), "the evicted worker is still running")
    finally:
        s.close()
    assert s.loaded() == []


def _use(s: Scheduler, order: list[int], i: int) -> None:
    with s.acquire("ai/tiny") as engine:
        order.append(i)
        engine.chat({"messages": CHAT, "max_tokens": 2})


# ---------------------------------------------------------------------------------------------
# stopping


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_no_worker_outlives_the_server(runner_home, tmp_path, sig):
    srv = Server(runner_home, tmp_path, "--max-models", "2")
    try:
        chat(srv)
        chat(srv, "ai/tiny-cncf")
        family = descendants(srv.proc.pid)
        workers = {pid_of(srv), pid_of(srv, "ai/tiny-cncf:latest")}
        assert workers <= family
        streaming = requests.post(srv.url + "/v1/chat/completions", json=LONG, stream=True, timeout=30)
        srv.proc.send_signal(sig)
        assert srv.proc.wait(20) == 0, srv.stderr()
        streaming.close()
        wait_for(lambda: all(gone(p) for p in family), f"left behind: {[p for p in family if not gone(p)]}")
        log = srv.stderr()
        assert "Traceback" not in log, log
    finally:
        srv.stop()
