"""Where the peers `tests/interop/build_peers.sh` builds are found: the Go tools the interop tests run
and distribution v3's registry (`registry-v3`), which `tests/integration/registry.py` starts.

A peer that is missing fails the test that needs it, naming the peer and how to build it: these tests
prove interoperability, so they never skip."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

BUILD = "bash tests/interop/build_peers.sh"


def peer_bin_dir() -> Path:
    """Where build_peers.sh puts the peers (MDL_INTEROP_BIN, else the XDG cache)."""
    if os.environ.get("MDL_INTEROP_BIN"):
        return Path(os.environ["MDL_INTEROP_BIN"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "mdl-interop" / "bin"


def peer(name: str) -> str:
    """The path of peer `name` (the cache folder first, then PATH); fails the test when it is missing."""
    path = peer_bin_dir() / name
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"interop peer missing: {name} is not in {peer_bin_dir()} nor on PATH; "
                f"build it with `{BUILD}` (needs Go and the Go module proxy)", pytrace=False)
