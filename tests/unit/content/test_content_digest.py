"""Digest helpers."""

from __future__ import annotations

import hashlib
import os

import pytest

from mdl.content.digest import InvalidDigestError, digest_hex, hash_file, sha256_bytes, validate_digest

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
