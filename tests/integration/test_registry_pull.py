"""Pulling from the real registry: ranged reads, corruption, missing things, bad names, dead hosts."""

from __future__ import annotations

import time

import pytest

from mdl.content.descriptor import Manifest
from mdl.errors import DigestMismatchError, ReferenceFormatError
from mdl.registry.client import RegistryClient
from mdl.registry.repository import RemoteRepository
from mdl.registry.errors import (
    RegistryUnreachableError,
    RemoteNotFoundError,
)
from mdl.spec import mediatypes as mt
from tests.integration.blobs import BytesSource, Recorder, blob, random_blob, read_and_verify
from tests.integration.registry import free_port


@pytest.fixture
def repo(registry, unique_repo) -> RemoteRepository:
    client = RegistryClient(registry.host, backoff_base=0.01)
    yield RemoteRepository(client, unique_repo)
    client.close()


def _push(repo, size=200_000):
    data, desc = random_blob(size)
    repo.put_blob(desc, BytesSource(data), None)
    return data, desc


def test_open_blob_at_offset_uses_a_range(repo):
    data, desc = _push(repo)
    stream, start = repo.open_blob(desc, 150_000)
    assert start == 150_000
    with stream:
        rest = stream.read()
    assert rest == data[150_000:]


def test_open_blob_streams_with_readinto(repo):
    data, desc = _push(repo, 5 << 20)
    stream, start = repo.open_blob(desc)
    assert start == 0
    buf = bytearray(1 << 20)
    got = bytearray()
    with stream:
        while n := stream.readinto(buf):
            got += buf[:n]
    assert bytes(got) == data


def test_corrupted_registry_blob_fails_the_consumers_hash(registry, repo):
    data, desc = _push(repo)
    path = registry.blob_path(desc.digest)
    raw = bytearray(path.read_bytes())
    raw[1000] ^= 0xFF
    path.write_bytes(bytes(raw))
    stream, _ = repo.open_blob(desc)
    with pytest.raises(DigestMismatchError) as err:
        read_and_verify(stream, desc)
    assert err.value.kind == "digest-mismatch" and desc.digest in err.value.message


def _pushed_manifest(repo, tag="v1") -> Manifest:
    config_data = b'{"config":{}}'
    config = blob(config_data, mt.DOCKER_CONFIG_V01)
    repo.put_blob(config, BytesSource(config_data), None)
    manifest = Manifest.build(config, [], annotations={"note": "original"})
    repo.put_manifest(manifest, [tag])
    return manifest


def test_corrupted_manifest_is_refused(registry, repo):
    manifest = _pushed_manifest(repo)
    path = registry.blob_path(manifest.digest)
    tampered = manifest.raw.replace(b"original", b"tampered")
    assert tampered != manifest.raw
    path.write_bytes(tampered)  # still a valid manifest: the registry serves it
    for ref in (manifest.digest, "v1"):
        with pytest.raises(DigestMismatchError) as err:
            repo.fetch_manifest(ref)
        assert manifest.digest in err.value.message and repo.repository in err.value.message


def test_missing_repository_tag_and_blob(repo):
    with pytest.raises(RemoteNotFoundError) as err:
        repo.fetch_manifest("nope")
    assert err.value.kind == "not-found" and f"{repo.repository}:nope" in err.value.message
    with pytest.raises(RemoteNotFoundError) as err:
        repo.resolve("nope")
    assert f"{repo.repository}:nope" in err.value.message
    with pytest.raises(RemoteNotFoundError):
        repo.tags()
    _pushed_manifest(repo)
    with pytest.raises(RemoteNotFoundError) as err:
        repo.fetch_manifest("other")
    assert err.value.code == "MANIFEST_UNKNOWN"
    _, desc = random_blob(10)
    with pytest.raises(RemoteNotFoundError) as err:
        repo.open_blob(desc)
    assert desc.digest in err.value.message
    assert repo.has_blob(desc) is False


@pytest.mark.parametrize("name", ["Bad/Name", "a//b", "-a", "a" * 300, "x/" + "b" * 250])
def test_invalid_repository_name_is_refused_before_any_request(registry, name):
    rec = Recorder()
    client = RegistryClient(registry.host, debug_log=rec)
    with pytest.raises(ReferenceFormatError) as err:
        RemoteRepository(client, name)
    assert err.value.kind == "reference" and "invalid reference" in err.value.message
    assert rec.exchanges == []


def test_unreachable_registry_fails_fast():
    host = f"127.0.0.1:{free_port()}"
    rec = Recorder()
    client = RegistryClient(host, connect_timeout=1, read_timeout=1, retries=2, backoff_base=0.01, debug_log=rec)
    repo = RemoteRepository(client, "some/model")
    started = time.monotonic()
    with pytest.raises(RegistryUnreachableError) as err:
        repo.resolve("latest")
    assert time.monotonic() - started < 1.0
    assert err.value.kind == "unreachable" and host in err.value.message and "refused" in err.value.message
    assert "--plain-http" in err.value.hint
    assert len(rec.exchanges) == 3  # the first try and two bounded retries
