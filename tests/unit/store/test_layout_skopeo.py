"""The local store is an OCI image layout other tools read: skopeo inspects and copies from it."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from store_helpers import put_model
from mdl.content import Manifest
from mdl.reference import parse_reference
from mdl.spec import mediatypes as mt

pytestmark = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")


def skopeo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["skopeo", *args], capture_output=True, timeout=60)


def test_skopeo_reads_and_copies_a_stored_model(store, tmp_path):
    m = put_model(store, b"GGUF" + bytes(2000), b"license text")
    store.add_tag(m.digest, parse_reference("tiny"))
    store.add_tag(m.digest, parse_reference("localhost:5000/team/tiny:Q4"))

    for name in ("docker.io/ai/tiny:latest", "localhost:5000/team/tiny:Q4"):
        r = skopeo("inspect", "--raw", f"oci:{store.root}:{name}")
        assert r.returncode == 0, r.stderr.decode()
        assert r.stdout == m.raw  # byte for byte

    other = tmp_path / "other"
    r = skopeo("copy", "--quiet", f"oci:{store.root}:docker.io/ai/tiny:latest", f"oci:{other}:x")
    assert r.returncode == 0, r.stderr.decode()
    index = json.loads((other / "index.json").read_bytes())
    [entry] = index["manifests"]
    assert entry["digest"] == m.digest and entry["annotations"][mt.ANNOTATION_REF_NAME] == "x"
    copied = Manifest.parse((other / "blobs" / "sha256" / m.digest[7:]).read_bytes(), m.digest)
    for d in copied.blob_descriptors():
        assert (other / "blobs" / "sha256" / d.digest[7:]).read_bytes() == store.read_blob(d.digest)
