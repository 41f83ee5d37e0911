"""mdl.sizes: one rule for sizes on the command line (a bare number is bytes; k, M, G, T are powers of 1024)."""

from __future__ import annotations

import pytest

from mdl.errors import UsageError
from mdl.sizes import parse_size


@pytest.mark.parametrize("text, size", [
    ("1024", 1024), ("1", 1), ("512b", 512), ("1k", 1 << 10), ("1K", 1 << 10), ("1KB", 1 << 10), ("1KiB", 1 << 10),
    ("512mib", 512 << 20), ("512 MiB", 512 << 20), ("2G", 2 << 30), ("2gb", 2 << 30), ("8GiB", 8 << 30),
    ("1T", 1 << 40), ("1.5g", 3 << 29), ("0.5k", 512), (" 64M ", 64 << 20),
])
def test_parse_size(text, size):
    assert parse_size(text, "--size") == size


@pytest.mark.parametrize("text", ["", "lots", "10 parsecs", "-5", "1P", "1i", "1bb", "1.k", "0", "0.0001k"])
def test_parse_size_refuses(text):
    with pytest.raises(UsageError) as e:
        parse_size(text, "--size")
    assert e.value.kind == "usage" and e.value.exit_code == 2
    assert e.value.message.startswith(f"invalid --size {text!r}") and "\n" not in e.value.message
