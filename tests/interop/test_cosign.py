"""mdl and the real cosign (v3, built from the Go module proxy by build_peers.sh) accept each other's
signatures, in both forms, against the real registry (distribution 2.8.2, no referrers API).

- cosign verifies what `mdl sign` wrote: `cosign verify --key mdl.pub --insecure-ignore-tlog`, in each
  `--format`; its output says which form it read (a bundle's claims carry the predicate type
  `https://sigstore.dev/cosign/sign/v1`, a legacy payload `cosign container image signature`), and
  `--new-bundle-format=false` reads the legacy form only. Another key is refused.
- mdl verifies what cosign signed with a key and no log (`--tlog-upload=false
  --use-signing-config=false`), as a bundle and with `--new-bundle-format=false`, and refuses it with
  another key; cosign's key files (`generate-key-pair`) work with mdl, both ways.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import assert_clean_error
from tests.fixtures.models import write_tiny_gguf
from tests.interop.conftest import PW, Session, ok, peer

BUNDLE_CLAIM = "https://sigstore.dev/cosign/sign/v1"
LEGACY_CLAIM = "cosign container image signature"


class Tools(Session):
    def cosign(self, *args: str) -> subprocess.CompletedProcess:
        return self.run([peer("cosign"), *args])


@pytest.fixture
def tools(mdl, tmp_path):
    """`mdl` and `cosign` sharing one environment, with key pairs `mdl`, `other` (mdl's) and `cosign`."""
    peer("cosign")
    t = Tools(mdl, tmp_path, COSIGN_PASSWORD=PW, SIGSTORE_NO_CACHE="1")
    t.keygen("mdl")
    t.keygen("other")
    ok(t.cosign("generate-key-pair", "--output-key-prefix", str(tmp_path / "cosign")))
    return t


def push(tools, registry, repo: str, seed: int = 0) -> tuple[str, str]:
    gguf = write_tiny_gguf(tools.dir / f"m{seed}.gguf", seed=seed)[0]
    target = f"{registry.host}/{repo}:v1"
    line = ok(tools.mdl("package", "--gguf", str(gguf), "--push", target)).stdout.strip().splitlines()[-1]
    return target, line.split("@")[1]


def cosign_verify(tools, target: str, pub: str, *extra: str) -> subprocess.CompletedProcess:
    return tools.cosign("verify", "--key", pub, "--insecure-ignore-tlog", "--allow-http-registry", *extra, target)


def claims(proc: subprocess.CompletedProcess) -> list[str]:
    """The `critical.type` of each signature cosign printed as verified."""
    return [c["critical"]["type"] for c in json.loads(proc.stdout)]


@pytest.mark.parametrize("form", ["bundle", "legacy", "both"])
def test_cosign_verifies_what_mdl_signed(tools, registry, unique_repo, form):
    target, digest = push(tools, registry, unique_repo)
    ok(tools.mdl("sign", target, "--key", str(tools.dir / "mdl.key"), "--format", form))
    pub, other = str(tools.dir / "mdl.pub"), str(tools.dir / "other.pub")
    got = ok(cosign_verify(tools, target, pub))
    # cosign 3 reads bundles when it finds any, else the legacy form
    assert claims(got) == [BUNDLE_CLAIM if form != "legacy" else LEGACY_CLAIM]
    legacy_only = cosign_verify(tools, target, pub, "--new-bundle-format=false")
    if form == "bundle":
        assert legacy_only.returncode != 0
    else:
        assert LEGACY_CLAIM in claims(ok(legacy_only))
    refused = cosign_verify(tools, target, other)
    assert refused.returncode != 0 and "no matching" in (refused.stderr + refused.stdout).lower()
    assert cosign_verify(tools, target, other, "--new-bundle-format=false").returncode != 0


@pytest.mark.parametrize("bundle", [True, False], ids=["bundle", "legacy"])
def test_mdl_verifies_what_cosign_signed(tools, registry, unique_repo, bundle):
    target, digest = push(tools, registry, unique_repo)
    ok(tools.cosign("sign", "--key", str(tools.dir / "cosign.key"), "--tlog-upload=false", "--use-signing-config=false",
                    f"--new-bundle-format={str(bundle).lower()}", "--allow-http-registry", "-y",
                    f"{registry.host}/{unique_repo}@{digest}"))
    pub = str(tools.dir / "cosign.pub")
    got = json.loads(ok(tools.mdl("verify", target, "--key", pub, "--json")).stdout)
    assert got["ok"] and got["signature"]["form"] == ("bundle" if bundle else "legacy")
    assert got["signature"]["digest"] == digest and got["signature"]["key"] == pub
    assert_clean_error(tools.mdl("verify", target, "--key", str(tools.dir / "other.pub")), 11,
                       "verifies with the key")
    pulled = ok(tools.mdl("pull", target, "--verify-key", pub)).stdout
    assert f"signature verified with {pub} ({'bundle' if bundle else 'legacy'} form)" in pulled


def test_mdl_signs_with_a_cosign_key_and_cosign_verifies_it(tools, registry, unique_repo):
    target, _ = push(tools, registry, unique_repo)
    ok(tools.mdl("sign", target, "--key", str(tools.dir / "cosign.key")))
    got = ok(cosign_verify(tools, target, str(tools.dir / "cosign.pub")))
    assert claims(got) == [BUNDLE_CLAIM]
    again = ok(tools.mdl("sign", target, "--key", str(tools.dir / "cosign.key")))
    assert "bundle already signed" in again.stderr  # mdl reads its own bundle back: nothing added


def test_one_model_signed_by_both_tools_verifies_with_each_key(tools, registry, unique_repo):
    target, digest = push(tools, registry, unique_repo)
    ok(tools.mdl("sign", target, "--key", str(tools.dir / "mdl.key")))
    ok(tools.cosign("sign", "--key", str(tools.dir / "cosign.key"), "--tlog-upload=false", "--use-signing-config=false",
                    "--allow-http-registry", "-y", f"{registry.host}/{unique_repo}@{digest}"))
    for pub in ("mdl.pub", "cosign.pub"):
        ok(cosign_verify(tools, target, str(tools.dir / pub)))
        assert json.loads(ok(tools.mdl("verify", target, "--key", str(tools.dir / pub), "--json")).stdout)[
            "signature"]["form"] == "bundle"


def test_a_model_signature_beside_does_not_hide_the_cosign_bundle(tools, registry, unique_repo):
    """cosign v3 tries every bundle referrer; the model-signing one names files, not the manifest, and
    must not make it refuse the model (nor mdl)."""
    target, _ = push(tools, registry, unique_repo)
    got = json.loads(ok(tools.mdl("sign", target, "--key", str(tools.dir / "mdl.key"), "--model-signing",
                                  "--json")).stdout)
    assert set(got["signatures"]) == {"bundle", "legacy", "model-signing"}
    pub = str(tools.dir / "mdl.pub")
    assert claims(ok(cosign_verify(tools, target, pub))) == [BUNDLE_CLAIM]
    assert json.loads(ok(tools.mdl("verify", target, "--key", pub, "--json")).stdout)["signature"]["form"] == "bundle"
