"""Shared fixtures for the spec tests: where the repository, the spec and the interop vectors are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def table() -> dict:
    with open(REPO / "schemas" / "media-types.json", "rb") as f:
        return json.load(f)


@pytest.fixture(scope="session")
def upstream_dir() -> Path:
    d = REPO.parent / "shared" / "interop" / "modelpack"
    if not (d / "config-schema.json").is_file():
        pytest.skip("../shared/interop/modelpack is absent")
    return d
