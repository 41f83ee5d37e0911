"""OpenSSF's own verifier (`model_signing`, PyPI `model-signing`) accepts the model signature `mdl sign
--model-signing` attaches, over the files `mdl extract --model-signature` writes beside it as model.sig,
and refuses it when a file changed after extraction, a file was added, or the key is another."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import assert_clean_error
from tests.fixtures.models import write_safetensors_dir
from tests.interop.conftest import Session, ok


def model_signing_cli() -> list[str]:
    try:
        import model_signing  # noqa: F401
    except ImportError:
        pytest.fail("interop peer missing: the model-signing package (`pip install -e '.[test]'` installs it)",
                    pytrace=False)
    return [sys.executable, "-m", "model_signing"]


@pytest.fixture
def run(mdl, tmp_path):
    return Session(mdl, tmp_path).run


def mdl(*args: str) -> list[str]:
    return [sys.executable, "-m", "mdl", *args]


def test_model_signing_verifies_the_files_mdl_extracted(run, registry, unique_repo, tmp_path):
    verifier = model_signing_cli()
    for name in ("signer", "other"):
        ok(run(mdl("keygen", "--output-prefix", str(tmp_path / name))))
    src = write_safetensors_dir(tmp_path / "src", n_shards=2)
    target = f"{registry.host}/{unique_repo}:v1"
    ok(run(mdl("package", "--safetensors-dir", str(src), "--push", target)))
    got = json.loads(ok(run(mdl("sign", target, "--key", str(tmp_path / "signer.key"), "--model-signing",
                                "--json"))).stdout)
    assert set(got["signatures"]) == {"bundle", "legacy", "model-signing"}
    again = json.loads(ok(run(mdl("sign", target, "--key", str(tmp_path / "signer.key"), "--model-signing",
                                  "--json"))).stdout)
    assert again["added"] == [] and again["signatures"] == got["signatures"]

    out = tmp_path / "model"
    extracted = json.loads(ok(run(mdl("extract", target, str(out), "--model-signature", "--json"))).stdout)
    assert extracted["signature"] == "model.sig"
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["model.sig", *(f["path"] for f in extracted["files"])])
    # the statement lists each file by its path, with its layer digest
    bundle = json.loads((out / "model.sig").read_bytes())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert {r["name"]: "sha256:" + r["digest"] for r in statement["predicate"]["resources"]} == \
        {f["path"]: f["digest"] for f in extracted["files"]}

    def verify(key: str) -> subprocess.CompletedProcess:
        return run([*verifier, "verify", "key", str(out), "--signature", str(out / "model.sig"),
                    "--public_key", str(tmp_path / key)])

    assert "Verification succeeded" in ok(verify("signer.pub")).stdout
    assert verify("other.pub").returncode != 0
    (out / "extra.txt").write_text("not signed\n")  # a file added after extraction
    added = verify("signer.pub")
    assert added.returncode != 0 and "extra.txt" in added.stderr
    (out / "extra.txt").unlink()
    ok(verify("signer.pub"))
    # a file changed after extraction
    changed = out / "config.json"
    os.chmod(changed, 0o644)
    changed.write_text(changed.read_text().replace("llama", "LLAMA"))
    refused = verify("signer.pub")
    assert refused.returncode != 0 and "config.json" in refused.stderr


def test_extract_without_a_model_signature_says_so(run, registry, unique_repo, tmp_path):
    ok(run(mdl("keygen", "--output-prefix", str(tmp_path / "signer"))))
    src = write_safetensors_dir(tmp_path / "src", n_shards=1)
    target = f"{registry.host}/{unique_repo}:v1"
    ok(run(mdl("package", "--safetensors-dir", str(src), "--push", target)))
    ok(run(mdl("sign", target, "--key", str(tmp_path / "signer.key"))))  # cosign forms only
    proc = run(mdl("extract", target, str(tmp_path / "out"), "--model-signature"))
    assert_clean_error(proc, 10, "has no model signature (OpenSSF model signing) of its files", "--model-signing")
    assert not (tmp_path / "out" / "config.json").exists()  # refused before any file moved
    proc = run(mdl("extract", target, str(tmp_path / "out2"), "--model-signature", "--include", "*.json"))
    assert_clean_error(proc, 2, "--model-signature covers every file")
