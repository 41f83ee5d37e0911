"""Fixtures of the interop tests: the real registry (distribution 2.8.2) and the Go peers that
`build_peers.sh` built into the cache folder. A peer that is missing fails the test that needs it,
naming the peer and how to build it: these tests prove interoperability, so they never skip."""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import pytest

from tests.integration.registry import start_registry

BUILD = "bash tests/interop/build_peers.sh"


def peer_bin_dir() -> Path:
    """Where build_peers.sh puts the peers (MDL_INTEROP_BIN, else the XDG cache)."""
    if os.environ.get("MDL_INTEROP_BIN"):
        return Path(os.environ["MDL_INTEROP_BIN"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "mdl-interop" / "bin"


def peer(name: str) -> str:
    path = peer_bin_dir() / name
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"interop peer missing: {name} is not in {peer_bin_dir()} nor on PATH; "
                f"build it with `{BUILD}` (needs Go and the Go module proxy)", pytrace=False)


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
