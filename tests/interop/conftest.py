"""Fixtures of the interop tests: the real registry (distribution 2.8.2) and the Go peers that
`build_peers.sh` built into the cache folder. A peer that is missing fails the test that needs it,
naming the peer and how to build it: these tests prove interoperability, so they never skip."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.registry import start_registry
from tests.peers import BUILD, peer, peer_bin_dir

__all__ = ["BUILD", "peer", "peer_bin_dir"]  # defined in tests/peers.py, still importable from here

PW = "interop-pass"  # the passphrase of every signing key the interop tests generate


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{proc.args}: {proc.stdout}\n{proc.stderr}"
    return proc


class Session:
    """`mdl` and a peer run as processes sharing one environment (the test's mdl store, the key
    passphrase, a HOME of their own, so no one's docker config) and working directory `dir`.
    A test module subclasses it with a method per peer command."""

    def __init__(self, mdl, dir: Path, **env: str):
        self.dir = dir
        self.env = mdl.env | {"MDL_KEY_PASSWORD": PW, "HOME": str(dir / "home-dir")} | env

    def run(self, argv: list, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=self.env,
                              cwd=cwd or self.dir, stdin=subprocess.DEVNULL, timeout=300)

    def mdl(self, *args: str) -> subprocess.CompletedProcess:
        return self.run([sys.executable, "-m", "mdl", *args])

    def keygen(self, name: str = "mdl") -> None:
        """A signing key pair `dir/<name>.key`, `dir/<name>.pub` (passphrase PW)."""
        ok(self.mdl("keygen", "--output-prefix", str(self.dir / name)))


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


_counter = itertools.count()


@pytest.fixture
def unique_repo(request) -> str:
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower()).strip("-")[:40].strip("-")
    return f"interop/{base or 'repo'}-{os.getpid()}-{next(_counter)}"
