"""mdl and the real crane (go-containerregistry v0.22.1, built by build_peers.sh) on the real registry
(distribution 2.8.2):

- `crane validate --remote` accepts what `mdl package --push` wrote, in both formats: it downloads and
  digests every layer and checks the manifest and config against each other.
- `crane copy` to another repository keeps the manifest's digest (`crane digest`); copying the
  referrers fallback index `sha256-<hex>` too keeps its digest and carries the signatures, so mdl pulls
  the copy with `--verify-key` and verifies it.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from mdl.errors import OUTCOMES
from tests.conftest import assert_clean_error
from tests.fixtures.models import write_safetensors_dir, write_tiny_gguf
from tests.interop.conftest import Session, ok, peer


class Tools(Session):
    def crane(self, *args: str) -> subprocess.CompletedProcess:
        return self.run([peer("crane"), "--insecure", *args])  # the registry talks plain HTTP

    def digest(self, ref: str) -> str:
        return ok(self.crane("digest", ref)).stdout.strip()


@pytest.fixture
def tools(mdl, tmp_path):
    """`mdl` and `crane` sharing one environment, with a signing key pair `mdl.key`/`mdl.pub`."""
    peer("crane")
    t = Tools(mdl, tmp_path)
    t.keygen()
    return t


def push(tools, registry, repo: str, kind: str, fmt: str) -> tuple[str, str]:
    root = tools.dir / "in"
    if kind == "gguf":
        root.mkdir()
        (root / "LICENSE").write_text("MIT License, for the interop test\n")
        args = ["--gguf", str(write_tiny_gguf(root / "model.gguf", seed=5)[0]), "--license", str(root / "LICENSE")]
    else:
        args = ["--safetensors-dir", str(write_safetensors_dir(root, seed=6, license_text="MIT\n"))]
    target = f"{registry.host}/{repo}:v1"
    line = ok(tools.mdl("package", *args, "--format", fmt, "--push", target)).stdout.strip().splitlines()[-1]
    return target, line.split("@")[1]


@pytest.mark.parametrize("kind", ["gguf", "safetensors"])
@pytest.mark.parametrize("fmt", ["docker", "cncf"])
def test_crane_validate_accepts_what_mdl_pushed(tools, registry, unique_repo, kind, fmt):
    target, digest = push(tools, registry, unique_repo, kind, fmt)
    assert tools.digest(target) == digest
    got = ok(tools.crane("validate", "--remote", target))
    assert got.stdout.strip() == f"PASS: {target}"
    config = json.loads(ok(tools.crane("config", target)).stdout)
    assert ("rootfs" if fmt == "docker" else "modelfs") in config


@pytest.mark.parametrize("fmt", ["docker", "cncf"])
def test_crane_copy_keeps_digests_and_mdl_pulls_and_verifies_the_copy(tools, registry, unique_repo, fmt):
    target, digest = push(tools, registry, unique_repo, "gguf", fmt)
    pub = str(tools.dir / "mdl.pub")
    signed = json.loads(ok(tools.mdl("sign", target, "--key", str(tools.dir / "mdl.key"), "--json")).stdout)
    source, copy = target.rsplit(":", 1)[0], f"{registry.host}/{unique_repo}-copy"
    fallback = "sha256-" + digest.split(":")[1]
    index = tools.digest(f"{source}:{fallback}")

    ok(tools.crane("copy", target, f"{copy}:v1"))
    assert tools.digest(f"{copy}:v1") == digest
    # crane copies the manifest alone: no signature came along yet, and nothing is pulled
    assert_clean_error(tools.mdl("pull", f"{copy}:v1", "--verify-key", pub), OUTCOMES["unsigned"].exit_code,
                       f"{copy}:v1 ({digest}) has no signature")
    assert [m["tags"] for m in json.loads(ok(tools.mdl("list", "--json")).stdout)] == [[target]]

    # the referrers list, an OCI index, copied with the manifests it lists
    ok(tools.crane("copy", f"{source}:{fallback}", f"{copy}:{fallback}"))
    assert tools.digest(f"{copy}:{fallback}") == index
    for d in signed["signatures"].values():
        assert tools.digest(f"{copy}@{d}") == d

    pulled = ok(tools.mdl("pull", f"{copy}:v1", "--verify-key", pub)).stdout
    assert f"signature verified with {pub} (bundle form)" in pulled and digest in pulled
    got = json.loads(ok(tools.mdl("verify", f"{copy}:v1", "--key", pub, "--json")).stdout)
    assert got["ok"] and got["signature"]["signatureManifest"] == signed["signatures"]["bundle"]
    assert [(m["digest"], m["ok"], m["layers_hashed"]) for m in got["models"]] == [(digest, True, True)]
    again = json.loads(ok(tools.mdl("conformance", "check", f"{copy}:v1", "--remote", "--written", "--json")).stdout)
    assert again["ok"] and [a["digest"] for a in again["artifacts"]] == [digest]
