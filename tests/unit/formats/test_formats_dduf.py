import struct
import zipfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pytest

from mdl.errors import FormatError, InputPathError
from mdl.formats.dduf import check_dduf, describe_dduf
from tests.fixtures import models


def test_valid_dduf(tiny_dduf):
    info = describe_dduf(tiny_dduf)
    size = tiny_dduf.stat().st_size
    assert info.format == "dduf"
    assert info.files == [tiny_dduf]
    assert info.size_bytes == size
    assert info.docker_config() == {
        "format": "dduf",
        "architecture": "diffusers",
        "size": f"{size / 1000:.2f}kB",
        "diffusers": {"layout": "dduf", "dduf_file": "tiny.dduf"},
    }
    names = {i.filename for i in check_dduf(tiny_dduf)}
    assert names == set(models.dduf_entries())


def test_deterministic(tmp_path):
    a = models.write_dduf(tmp_path / "a.dduf")
    b = models.write_dduf(tmp_path / "b.dduf")
    assert a.read_bytes() == b.read_bytes()


def _with_entries(tmp_path, extra: dict[str, bytes], drop_index=False, **kw):
    entries = dict(models.dduf_entries())
    if drop_index:
        del entries["model_index.json"]
    entries.update(extra)
    return models.write_dduf(tmp_path / "x.dduf", entries=entries, **kw)


@pytest.mark.parametrize("extra, fragment", [
    ({"../evil.json": b"{}"}, "escapes the archive"),
    ({"unet/../../evil.json": b"{}"}, "escapes the archive"),
    ({"/etc/evil.json": b"{}"}, "is absolute"),
    ({"C:/evil.json": b"{}"}, "is absolute"),
    ({"unet\\evil.json": b"{}"}, "backslash"),
])
def test_bad_names(tmp_path, extra, fragment):
    p = _with_entries(tmp_path, extra)
    with pytest.raises(FormatError) as e:
        describe_dduf(p)
    assert fragment in str(e.value)


def test_nul_in_name(tmp_path):
    p = _with_entries(tmp_path, {"unet/AAAA.json": b"{}"})
    data = p.read_bytes()
    assert data.count(b"unet/AAAA.json") == 2  # local header and central directory
    p.write_bytes(data.replace(b"unet/AAAA.json", b"unet/A\0AA.json"))
    with pytest.raises(FormatError, match="NUL byte"):
        describe_dduf(p)


def test_compressed_entry(tmp_path):
    p = _with_entries(tmp_path, {}, compress_type=zipfile.ZIP_DEFLATED)
    with pytest.raises(FormatError, match="is compressed"):
        describe_dduf(p)


def test_missing_model_index(tmp_path):
    p = _with_entries(tmp_path, {"sub/model_index.json": b"{}"}, drop_index=True)
    with pytest.raises(FormatError, match="model_index.json is missing"):
        describe_dduf(p)


def test_not_a_zip(tmp_path):
    p = tmp_path / "x.dduf"
    p.write_bytes(b"this is not a zip archive" * 10)
    with pytest.raises(FormatError, match="not a ZIP archive"):
        describe_dduf(p)


def test_truncated_zip(tiny_dduf, tmp_path):
    data = tiny_dduf.read_bytes()
    p = tmp_path / "cut.dduf"
    for cut in range(0, len(data), max(1, len(data) // 200)):
        p.write_bytes(data[:cut])
        with pytest.raises(FormatError):
            describe_dduf(p)


def test_entry_count_bounded_before_reading_directory(tiny_dduf, tmp_path):
    data = bytearray(tiny_dduf.read_bytes())
    i = data.rfind(b"PK\x05\x06")
    data[i + 8:i + 12] = struct.pack("<HH", 60000, 60000)
    p = tmp_path / "bomb.dduf"
    p.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="60000 entries"):
        describe_dduf(p)


def test_paths(tmp_path):
    with pytest.raises(InputPathError, match="no such file"):
        describe_dduf(tmp_path / "absent.dduf")
    with pytest.raises(InputPathError, match="directory"):
        describe_dduf(tmp_path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_archive_only_format_error(tmp_path_factory, data):
    d = tmp_path_factory.mktemp("z")
    raw = bytearray(models.write_dduf(d / "ok.dduf").read_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        # bias mutations towards the central directory at the end of the archive
        i = data.draw(st.integers(max(0, len(raw) - 400), len(raw) - 1) | st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    p = d / "m.dduf"
    p.write_bytes(bytes(raw))
    try:
        describe_dduf(p)
    except FormatError:
        pass
