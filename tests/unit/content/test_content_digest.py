"""Digest helpers."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from mdl.content.digest import (InvalidDigestError, VerifyingReader, digest_hex, hash_file, hash_stream, hash_workers,
                                sha256_bytes, spare_core, validate_digest)
from mdl.content.readahead import chunks
from mdl.errors import DigestMismatchError

HEX = hashlib.sha256(b"x").hexdigest()


def test_sha256_bytes_known_value():
    assert sha256_bytes(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert sha256_bytes(memoryview(b"x")) == "sha256:" + HEX


def test_validate_and_hex():
    assert validate_digest("sha256:" + HEX) == "sha256:" + HEX
    assert digest_hex("sha256:" + HEX) == HEX


@pytest.mark.parametrize(
    "text, problem_part",
    [
        (HEX, "no algorithm prefix"),
        ("sha512:" + HEX, "unsupported algorithm 'sha512'"),
        ("sha256:" + HEX[:-1], "63 characters, expected 64"),
        ("sha256:" + HEX.upper(), "lowercase hex"),
        ("sha256:" + "g" * 64, "lowercase hex"),
        (None, "not a string"),
    ],
)
def test_invalid_digest(text, problem_part):
    with pytest.raises(InvalidDigestError) as info:
        validate_digest(text)
    assert info.value.kind == "digest"
    assert problem_part in info.value.problem
    with pytest.raises(InvalidDigestError):
        digest_hex(text)


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 7, 3 * (1 << 20) + 1])
def test_hash_file_matches_hashlib(tmp_path, size):
    data = os.urandom(size)
    p = tmp_path / "f"
    p.write_bytes(data)
    assert hash_file(p) == ("sha256:" + hashlib.sha256(data).hexdigest(), size)
    assert hash_file(p, bufsize=4096) == ("sha256:" + hashlib.sha256(data).hexdigest(), size)


# Hashing with and without reading ahead (content/readahead.py): the same bytes, the same verdicts.

SIZES = [0, 1, (4 << 20) - 1, 4 << 20, (4 << 20) + 7, 9 * (1 << 20) + 3]


class NoReadinto:
    """A stream that has only `read` (as some HTTP bodies do)."""

    def __init__(self, data: bytes):
        self._f = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)


@pytest.mark.parametrize("ahead", [True, False])
@pytest.mark.parametrize("size", SIZES)
def test_hash_stream_matches_hashlib_with_and_without_read_ahead(size, ahead):
    data = os.urandom(size)
    expected = ("sha256:" + hashlib.sha256(data).hexdigest(), size)
    assert hash_stream(io.BytesIO(data), ahead=ahead) == expected
    assert hash_stream(NoReadinto(data), 1000, ahead=ahead) == expected


@pytest.mark.parametrize("ahead", [True, False])
def test_chunks_yield_the_stream_in_order(ahead):
    data = os.urandom(10_000)
    got = b"".join(bytes(c) for c in chunks(io.BytesIO(data), ahead=ahead, bufsize=3000, buffers=2))
    assert got == data


@pytest.mark.parametrize("ahead", [True, False])
def test_drain_verifies_and_counts(tmp_path, ahead):
    data = os.urandom((4 << 20) + 11)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    p = tmp_path / "blob"
    p.write_bytes(data)
    reader = VerifyingReader(open(p, "rb", buffering=0), digest, len(data))
    with reader:
        assert reader.read(5) == data[:5]
        assert reader.drain(ahead=ahead) == len(data) - 5
    assert reader.verified


@pytest.mark.parametrize("ahead", [True, False])
@pytest.mark.parametrize("case, actual_part", [
    ("other bytes", "sha256:"),
    ("longer", "(longer than expected)"),
    ("shorter", "(shorter than expected)"),
])
def test_drain_refuses_bytes_that_do_not_match(case, actual_part, ahead):
    data = os.urandom(5 << 20)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    served = {"other bytes": os.urandom(len(data)), "longer": data + b"x", "shorter": data[:-1]}[case]
    reader = VerifyingReader(io.BytesIO(served), digest, len(data))  # not a file: no size check up front
    with pytest.raises(DigestMismatchError) as info:
        reader.drain(ahead=ahead)
    assert info.value.kind == "digest-mismatch" and actual_part in info.value.actual
    assert not reader.verified


def test_hash_workers_and_spare_core_follow_the_usable_cores(monkeypatch):
    import mdl.content.digest as digest_mod

    monkeypatch.setattr(digest_mod, "usable_cores", lambda: 2)
    assert [hash_workers(n) for n in (0, 1, 2, 4)] == [1, 1, 2, 2]
    assert spare_core(1) and not spare_core(2)
