"""Fixtures that run the real registry (distribution 2.8.2) on 127.0.0.1; see `registry.py`."""

from __future__ import annotations

import itertools
import os
import secrets

import pytest

from mdl.registry.client import RegistryClient
from mdl.registry.repository import RemoteRepository
from tests.integration.blobs import Recorder
from tests.integration.registry import RunningRegistry, free_port, start_registry

__all__ = ["free_port"]

TEST_USER = "mdltester"


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> RunningRegistry:
    """A plain-HTTP registry shared by a module: use `unique_repo` for repository names."""
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory) -> RunningRegistry:
    """A registry behind htpasswd auth and TLS (self-signed cert, `.ca_file`)."""
    password = "pw-" + secrets.token_hex(12)
    reg = start_registry(tmp_path_factory.mktemp("auth-registry"), htpasswd=(TEST_USER, password), tls=True)
    yield reg
    reg.stop()


_counter = itertools.count()


@pytest.fixture
def unique_repo(request) -> str:
    """A repository name no other test uses."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower()).strip("-")[:40].strip("-")
    return f"test/{base or 'repo'}-{os.getpid()}-{next(_counter)}"


@pytest.fixture
def rec() -> Recorder:
    """What the `repo` fixture's client sent and received."""
    return Recorder()


@pytest.fixture
def repo(registry, unique_repo, rec) -> RemoteRepository:
    """A fresh repository of `registry` through mdl's client, recorded by `rec`, retrying quickly."""
    client = RegistryClient(registry.host, debug_log=rec, backoff_base=0.01)
    yield RemoteRepository(client, unique_repo)
    client.close()
