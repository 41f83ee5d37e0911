"""Fixtures and helpers of the signing tests: `mdl` run as a process with a key passphrase, two key pairs,
a model pushed to the real registry."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mdl.reference import parse_reference
from mdl.registry.open import open_repository
from tests.fixtures.models import write_tiny_gguf

PW = "correct horse"


@pytest.fixture
def cli(mdl):
    def run(*args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
        env = mdl.env | {"MDL_KEY_PASSWORD": PW} | (extra_env or {})
        return subprocess.run([sys.executable, "-m", "mdl", *args], capture_output=True, text=True, env=env,
                              cwd=mdl.home.parent, stdin=subprocess.DEVNULL)
    run.home = mdl.home
    return run


def ok(proc) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def keys(cli, tmp_path):
    out = {}
    for name in ("alice", "bob"):
        ok(cli("keygen", "--output-prefix", str(tmp_path / name)))
        out[name] = (str(tmp_path / f"{name}.key"), str(tmp_path / f"{name}.pub"))
    return out


def push_model(cli, registry, repo: str, tag: str = "v1", seed: int = 0) -> tuple[str, str]:
    gguf = write_tiny_gguf(cli.home.parent / f"m{seed}.gguf", seed=seed)[0]
    target = f"{registry.host}/{repo}:{tag}"
    line = ok(cli("package", "--gguf", str(gguf), "--push", target)).stdout.strip().splitlines()[-1]
    return target, line.split("@")[1]


def remote(registry, repo: str):
    return open_repository(parse_reference(f"{registry.host}/{repo}:x"), env={})
