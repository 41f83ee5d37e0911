"""`mdl run`, as a user runs it: a process, with MDL_HOME at the runner test store."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, assert_clean_error
from tests.integration.registry import free_port

pytest.importorskip("llama_cpp")

# `mdl run` through the real CLI entry point and error boundary; registered here only until the
# lead wires it into mdl.cli.app.
_MAIN = (
    "import sys\n"
    "from mdl.cli import app as a, run\n"
    "if not any(c.name == 'run' for c in a.app.registered_commands):\n"
    "    a.app.command('run')(run.command)\n"
    "sys.exit(a.main())\n"
)


@pytest.fixture
def mdl_run(runner_home):
    env = {k: v for k, v in os.environ.items() if k not in ("MDL_DEBUG",)}
    env["MDL_HOME"] = str(runner_home)
    env["MODEL_RUNNER_HOST"] = f"http://127.0.0.1:{free_port()}"  # no runner answers: the model loads here

    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", _MAIN, "run", *args], capture_output=True, text=True,
                              env=env, cwd=REPO_ROOT, input=input, timeout=60)

    return run


def _expected(runner_store, messages, max_tokens):
    from mdl.runner import links_dir
    from mdl.runner.scheduler import Scheduler

    s = Scheduler(runner_store, links_dir(runner_store), n_threads=1)
    try:
        with s.acquire("ai/tiny") as engine:
            return engine.chat({"messages": messages, "temperature": 0,
                                "max_tokens": max_tokens})["choices"][0]["message"]["content"]
    finally:
        s.close()


OPTS = ("--temperature", "0", "--max-tokens", "8", "--threads", "1")


def test_one_shot(mdl_run, runner_store):
    proc = mdl_run("ai/tiny", "hello world", *OPTS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == _expected(runner_store, [{"role": "user", "content": "hello world"}], 8) + "\n"


def test_interactive_from_a_pipe(mdl_run, runner_store):
    proc = mdl_run("ai/tiny", *OPTS, input="hello world\n\nthe model\n/bye\nnever asked\n")
    assert proc.returncode == 0, proc.stderr
    first = _expected(runner_store, [{"role": "user", "content": "hello world"}], 8)
    second = _expected(runner_store, [{"role": "user", "content": "hello world"},
                                      {"role": "assistant", "content": first},
                                      {"role": "user", "content": "the model"}], 8)  # history kept
    assert proc.stdout == f"{first}\n{second}\n"


def test_interactive_ends_at_end_of_input(mdl_run):
    proc = mdl_run("ai/tiny", *OPTS, input="hello\n")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1


def test_errors(mdl_run):
    assert_clean_error(mdl_run("ai/st", "hi"), 1, "ai/st is a safetensors model")
    assert_clean_error(mdl_run("ai/nope", "hi"), 1, "not found")
    assert_clean_error(mdl_run("ai/tiny", "hi", "--threads", "0"), 2, "--threads")
