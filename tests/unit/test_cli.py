"""The `mdl` command as a user runs it: real processes, exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import assert_clean_error
from tests.fixtures.models import write_tiny_gguf


@pytest.fixture
def gguf(tmp_path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny.gguf")[0]


def test_package_list_inspect_tag_rm_roundtrip(mdl, gguf):
    # a relative path works
    p = mdl("package", "--gguf", gguf.name, "--json", "ai/tiny:v1")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["reference"] == "docker.io/ai/tiny:v1" and out["digest"].startswith("sha256:")
    digest = out["digest"]

    listing = mdl("list")
    assert listing.returncode == 0
    row = next(line for line in listing.stdout.splitlines() if line.startswith("ai/tiny:v1 "))
    assert digest[7:19] in row and "llama" in row

    js = json.loads(mdl("list", "--json").stdout)
    assert js[0]["id"] == digest and js[0]["tags"] == ["docker.io/ai/tiny:v1"]

    info = json.loads(mdl("inspect", "--json", digest[7:19]).stdout)
    assert info["id"] == digest and info["config"]["config"]["format"] == "gguf"
    man = json.loads(mdl("inspect", "--manifest", "ai/tiny:v1").stdout)
    assert man["layers"][0]["digest"] == info["config"]["rootfs"]["diff_ids"][0]

    assert mdl("tag", "ai/tiny:v1", "myorg/other:latest").returncode == 0
    assert mdl("verify", "myorg/other").returncode == 0

    rm_tag = mdl("rm", "ai/tiny:v1")
    assert rm_tag.returncode == 0 and "Untagged: docker.io/ai/tiny:v1" in rm_tag.stdout
    assert mdl("inspect", "myorg/other").returncode == 0
    rm_last = mdl("rm", "myorg/other")
    assert rm_last.returncode == 0 and f"Deleted: {digest}" in rm_last.stdout
    assert_clean_error(mdl("inspect", "myorg/other"), 1, "not found")


def test_source_date_epoch_makes_builds_reproducible(mdl, gguf):
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    a = mdl("package", "--gguf", str(gguf), "-q", "ai/a", extra_env=env).stdout.strip()
    b = mdl("package", "--gguf", str(gguf), "-q", "ai/b", extra_env=env).stdout.strip()
    c = mdl("package", "--gguf", str(gguf), "-q", "--created", "2023-11-14T22:13:20Z", "ai/c").stdout.strip()
    assert a == b == c and a.startswith("sha256:")


@pytest.mark.parametrize("args,code,fragment", [
    (["package", "--gguf", "absent.gguf", "ai/x"], 1, "absent.gguf: GGUF file not found"),
    (["package", "ai/x"], 2, "exactly one of"),
    (["package", "--gguf", "tiny.gguf", "--created", "yesterday", "ai/x"], 2, "RFC 3339"),
    (["package", "--gguf", "tiny.gguf", "Bad Name!"], 2, "invalid reference"),
    (["inspect", "ai/absent"], 1, "model ai/absent not found"),
    (["rm", "ai/absent"], 1, "not found"),
    (["tag", "ai/absent", "ai/other"], 1, "not found"),
])
def test_bad_input_gives_one_line_and_exit_code(mdl, gguf, args, code, fragment):
    proc = mdl(*args)
    assert_clean_error(proc, code, fragment)
    assert not list((mdl.home / "blobs" / "sha256").glob("*")) if (mdl.home / "blobs").exists() else True


def test_debug_shows_the_traceback(mdl):
    proc = mdl("--debug", "inspect", "ai/absent")
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "ModelNotFoundError" in proc.stderr


def test_verify_reports_a_corrupt_blob_with_exit_1(mdl, gguf, tmp_path):
    import shutil

    copy = tmp_path / "copy.gguf"
    shutil.copy(gguf, copy)  # a private copy, so corrupting the linked blob leaves the fixture alone
    digest = json.loads(mdl("package", "--gguf", str(copy), "--json", "ai/tiny").stdout)["digest"]
    man = json.loads(mdl("inspect", "--manifest", "ai/tiny").stdout)
    layer = mdl.home / "blobs" / "sha256" / man["layers"][0]["digest"].split(":")[1]
    os.chmod(layer, 0o644)
    with open(layer, "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0xFF]))
    proc = mdl("verify", "--json", "ai/tiny")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["ok"] is False
    [finding] = report["models"][0]["findings"]
    assert finding["kind"] == "digest-mismatch" and finding["path"] == "$.layers[0]"
    assert report["models"][0]["digest"] == digest


def test_truncated_gguf_is_a_format_error(mdl, gguf, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf.read_bytes()[:200])
    assert_clean_error(mdl("package", "--gguf", str(cut), "ai/cut"), 1, "cut.gguf", "not a valid GGUF file")


def test_full_disk_is_one_line_and_leaves_no_blob(tiny_tmpfs, tmp_path, mdl):
    import numpy as np
    from gguf import GGUFWriter

    big = tmp_path / "big.gguf"  # 2.4 MiB: larger than the 1 MiB file system the store is on
    w = GGUFWriter(str(big), "llama")
    w.add_tensor("token_embd.weight", np.zeros(600_000, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    proc = mdl("package", "--gguf", str(big), "ai/big", extra_env={"MDL_HOME": str(tiny_tmpfs / "store")})
    assert_clean_error(proc, 1, "no space left")
    blobs = tiny_tmpfs / "store" / "blobs" / "sha256"
    assert not blobs.exists() or list(blobs.iterdir()) == []
    ingest = tiny_tmpfs / "store" / "ingest"
    assert not ingest.exists() or list(ingest.iterdir()) == []


def test_unreadable_file_is_reported(tmp_path, gguf, mdl):
    """A file owned by someone else with mode 0600. Root reads everything, so as root the test drops
    the capabilities that bypass file permissions (setpriv) rather than pretending."""
    import shutil

    secret = tmp_path / "secret.gguf"
    secret.write_bytes(gguf.read_bytes())
    os.chmod(secret, 0o600)
    prefix: list[str] = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot make a file unreadable")
        os.chown(secret, 65534, 65534)
        caps = "-dac_override,-dac_read_search"
        prefix = ["setpriv", "--bounding-set", caps, "--inh-caps", caps]
    else:
        os.chmod(secret, 0)
    env = {k: v for k, v in os.environ.items() if k != "MDL_DEBUG"} | {"MDL_HOME": str(mdl.home)}
    proc = subprocess.run([*prefix, sys.executable, "-m", "mdl", "package", "--gguf", str(secret), "ai/secret"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert_clean_error(proc, 1, "secret.gguf", "permission denied")


def test_df_and_prune(mdl, gguf, tmp_path):
    import shutil

    copy = tmp_path / "other.gguf"
    shutil.copy(gguf, copy)
    assert mdl("package", "--gguf", str(copy), "ai/a").returncode == 0
    usage = json.loads(mdl("df", "--json").stdout)
    assert usage["models"] == 1 and usage["blobs"] == 3 and usage["reclaimable_bytes"] == 0
    stale = mdl.home / "ingest" / "leftover.part"
    stale.write_bytes(b"x" * 10)  # a partial write whose process died: nobody holds its lock
    orphan = mdl.home / "blobs" / "sha256" / ("0" * 64)
    orphan.write_bytes(b"orphan")
    usage = json.loads(mdl("df", "--json").stdout)
    assert usage["reclaimable_bytes"] == len(b"orphan") and usage["ingest_bytes"] == 10
    pruned = json.loads(mdl("prune", "--json").stdout)
    assert pruned["deleted_blobs"] == ["sha256:" + "0" * 64] and pruned["stale_ingest"] == ["leftover.part"]
    assert mdl("verify", "ai/a").returncode == 0
