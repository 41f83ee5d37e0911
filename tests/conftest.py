"""Shared pytest fixtures: thin wrappers around the generators in `tests/fixtures/models.py`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import models

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Path:
    """A single-file tiny llama GGUF (~0.5 MB)."""
    return models.write_tiny_gguf(tmp_path / "tiny.gguf")[0]


@pytest.fixture
def tiny_gguf_shards(tmp_path: Path) -> list[Path]:
    """The tiny llama GGUF split in 3 shards, in shard order."""
    return models.write_tiny_gguf(tmp_path / "tiny.gguf", n_shards=3)


@pytest.fixture
def safetensors_dir(tmp_path: Path) -> Path:
    """A Hugging Face style directory: 2 safetensors shards, index, config.json, tokenizer.json."""
    return models.write_safetensors_dir(tmp_path / "model")


@pytest.fixture
def hf_cache_snapshot(tmp_path: Path) -> Path:
    """A Hugging Face cache snapshot directory whose files are symlinks into ../../blobs."""
    return models.write_hf_cache_snapshot(tmp_path / "hub")


@pytest.fixture
def tiny_dduf(tmp_path: Path) -> Path:
    """A small valid DDUF archive."""
    return models.write_dduf(tmp_path / "tiny.dduf")


@pytest.fixture
def interop_dir() -> Path:
    """`../shared/interop` beside the repository; the test is skipped when it is absent."""
    path = (REPO_ROOT / ".." / "shared" / "interop").resolve()
    if not path.is_dir():
        pytest.skip(f"interop vectors not present at {path}")
    return path


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 1 MiB file system, for disk-full tests (mounting needs root; skipped otherwise)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.fixture
def mdl(tmp_path):
    """Run the real `mdl` command in a process, with its own store (MDL_HOME) and docker config."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MDL_DEBUG", "SOURCE_DATE_EPOCH", "MDL_REGISTRY_USERNAME", "MDL_REGISTRY_PASSWORD")}
    env["MDL_HOME"] = str(tmp_path / "home")
    env["DOCKER_CONFIG"] = str(tmp_path / "docker-config")

    def run(*args: str, extra_env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mdl", *args], capture_output=True, text=True,
                              env=env | (extra_env or {}), cwd=tmp_path, input=input)

    run.home = Path(env["MDL_HOME"])
    run.env = env
    return run


def assert_clean_error(proc, code: int, *fragments: str):
    """A user-facing failure: the exit code, no traceback, and stderr ending in one `error: ...` line
    (and one `hint: ...`); progress lines may come before it."""
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    assert lines[errors[0] + 1:] in ([], [lines[-1]]) and (errors[0] == len(lines) - 1 or lines[-1].startswith("hint: "))
    for f in fragments:
        assert f in proc.stderr
