"""mdl and the real oras CLI (v1.3.6, built from the Go module proxy by build_peers.sh) on the real
registry (distribution 2.8.2, no referrers API, so referrers go through the fallback tag):

- `oras pull` of what `mdl package --push` wrote, in both formats, writes every file at its packaged
  path, byte for byte: mdl puts `org.opencontainers.image.title` (= the filepath) on every layer, and
  oras writes only the layers that carry one (spec/annotations.md).
- `oras discover` lists the signatures `mdl sign` wrote, in each `--format`.
- `oras cp -r` copies a model with its referrers; `mdl verify --key` accepts the copy through the
  bundle, while a legacy-only signature names the source repository, which mdl refuses as
  `wrong-subject` (spec/interop.md §2).
- `oras backup --include-referrers` (a directory or a tar, one tag or a whole repository) loads with
  `mdl load`, and the loaded model verifies offline, from the signature the layout carried: mdl's
  signatures, and cosign's legacy one (no `subject`, found by its bare `.sig` tag).
- what `oras push` writes from plain files is not a model: mdl refuses it in one line.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from mdl.errors import OUTCOMES
from tests.conftest import assert_clean_error
from tests.fixtures.models import write_safetensors_dir, write_tiny_gguf
from tests.interop.conftest import PW, Session, ok, peer

TITLE = "org.opencontainers.image.title"
FILEPATH = "org.cncf.model.filepath"
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
LEGACY_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"


class Tools(Session):
    def oras(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return self.run([peer("oras"), *args], cwd)


@pytest.fixture
def tools(mdl, tmp_path):
    """`mdl` and `oras` sharing one environment, with a signing key pair `mdl.key`/`mdl.pub`."""
    peer("oras")
    t = Tools(mdl, tmp_path)
    t.keygen()
    return t


def gguf_model(root: Path) -> tuple[list[str], dict[str, Path]]:
    """`mdl package` options for a GGUF with a license and a chat template, and the files it packages
    by their filepath."""
    root.mkdir(parents=True)
    gguf = write_tiny_gguf(root / "model.gguf", seed=3)[0]
    (root / "LICENSE").write_text("Apache License 2.0, for the interop test\n")
    (root / "template.jinja").write_text("{% for m in messages %}{{ m.content }}\n{% endfor %}")
    files = {"model.gguf": gguf, "LICENSE": root / "LICENSE", "template.jinja": root / "template.jinja"}
    return ["--gguf", str(gguf), "--license", str(root / "LICENSE"), "--chat-template",
            str(root / "template.jinja")], files


def safetensors_model(root: Path) -> tuple[list[str], dict[str, Path]]:
    """A safetensors directory with nested files (tokenizer/, tokenizer/extra/) and its files by path."""
    d = write_safetensors_dir(root / "st", seed=4, license_text="MIT License, for the interop test\n")
    (d / "tokenizer" / "extra").mkdir(parents=True)
    (d / "tokenizer.json").rename(d / "tokenizer" / "tokenizer.json")
    (d / "tokenizer" / "extra" / "merges.txt").write_text("a b\nab c\n")
    files = {p.relative_to(d).as_posix(): p for p in sorted(d.rglob("*")) if p.is_file()}
    assert "tokenizer/extra/merges.txt" in files and len(files) == 7
    return ["--safetensors-dir", str(d)], files


MODELS = {"gguf": gguf_model, "safetensors": safetensors_model}


def push(tools, registry, repo: str, kind: str = "gguf", fmt: str = "docker") -> tuple[str, str, dict[str, Path]]:
    """Package and push a model; its tag reference, manifest digest and packaged files."""
    args, files = MODELS[kind](tools.dir / f"in-{kind}-{fmt}")
    target = f"{registry.host}/{repo}:v1"
    line = ok(tools.mdl("package", *args, "--format", fmt, "--push", target)).stdout.strip().splitlines()[-1]
    return target, line.split("@")[1], files


def sign(tools, target: str, form: str) -> dict[str, str]:
    """`mdl sign --format FORM`: the digest of each signature manifest it wrote, by form."""
    got = json.loads(ok(tools.mdl("sign", target, "--key", str(tools.dir / "mdl.key"), "--format", form,
                                  "--json")).stdout)
    assert set(got["signatures"]) == ({"bundle", "legacy"} if form == "both" else {form})
    return got["signatures"]


def referrers(tools, ref: str, *extra: str) -> dict[str, str]:
    """`oras discover`'s referrers of `ref`: digest -> artifactType."""
    got = json.loads(ok(tools.oras("discover", "--plain-http", "--format", "json", *extra, ref)).stdout)
    return {r["digest"]: r["artifactType"] for r in got["referrers"]}


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", ["gguf", "safetensors"])
@pytest.mark.parametrize("fmt", ["docker", "cncf"])
def test_oras_pull_writes_every_file_at_its_packaged_path(tools, registry, unique_repo, kind, fmt):
    target, digest, files = push(tools, registry, unique_repo, kind, fmt)
    manifest = json.loads(ok(tools.oras("manifest", "fetch", "--plain-http", target)).stdout)
    titles = [layer["annotations"][TITLE] for layer in manifest["layers"]]
    assert titles == [layer["annotations"][FILEPATH] for layer in manifest["layers"]]
    assert sorted(titles) == sorted(files)
    out = tools.dir / "pulled"
    pulled = json.loads(ok(tools.oras("pull", "--plain-http", "--format", "json", "-o", str(out), target)).stdout)
    assert pulled["reference"].endswith("@" + digest)
    assert sorted(Path(f["path"]).relative_to(out).as_posix() for f in pulled["files"]) == sorted(files)
    assert tree(out) == {path: src.read_bytes() for path, src in files.items()}


@pytest.mark.parametrize("form", ["bundle", "legacy", "both"])
def test_oras_discover_lists_what_mdl_signed(tools, registry, unique_repo, form):
    target, digest, _ = push(tools, registry, unique_repo)
    signed = sign(tools, target, form)
    want = {d: BUNDLE_TYPE if f == "bundle" else LEGACY_TYPE for f, d in signed.items()}
    assert referrers(tools, target) == want
    # distribution 2.8.2 has no referrers API: oras reads the fallback tag mdl maintains
    assert referrers(tools, target, "--distribution-spec", "v1.1-referrers-tag") == want
    api = tools.oras("discover", "--plain-http", "--distribution-spec", "v1.1-referrers-api", target)
    assert api.returncode != 0


@pytest.mark.parametrize("form", ["both", "bundle", "legacy"])
def test_oras_cp_r_copies_the_signatures_and_mdl_verifies_the_copy(tools, registry, unique_repo, form):
    target, digest, _ = push(tools, registry, unique_repo)
    signed = sign(tools, target, form)
    copy = f"{registry.host}/{unique_repo}-copy:v1"
    copied = ok(tools.oras("cp", "-r", "--from-plain-http", "--to-plain-http", target, copy))
    assert f"Digest: {digest}" in copied.stdout
    assert set(referrers(tools, copy)) == set(signed.values())
    # oras copies the referrers and writes the fallback tag, not cosign's `.sig` tag
    tags = ok(tools.oras("repo", "tags", "--plain-http", copy.rsplit(":", 1)[0])).stdout.split()
    assert sorted(tags) == sorted(["v1", "sha256-" + digest.split(":")[1]])
    pub = str(tools.dir / "mdl.pub")
    verified = tools.mdl("verify", copy, "--key", pub, "--json")
    if form == "legacy":
        # the legacy payload names the repository it was signed in (spec/signing.md §2, §7): a copy is
        # another repository, as spec/interop.md §2 records
        assert_clean_error(verified, OUTCOMES["wrong-subject"].exit_code,
                           f"it signs {digest} in {registry.host}/{unique_repo}, not in {copy.rsplit(':', 1)[0]}")
        return
    got = json.loads(ok(verified).stdout)
    assert got["ok"] and got["signature"]["form"] == "bundle"
    assert got["signature"]["digest"] == digest and got["signature"]["signatureManifest"] == signed["bundle"]
    pulled = ok(tools.mdl("pull", copy, "--verify-key", pub)).stdout
    assert f"signature verified with {pub} (bundle form)" in pulled and digest in pulled


@pytest.mark.parametrize("output,form,scope", [("dir", "both", "tag"), ("tar", "legacy", "tag"),
                                               ("dir", "both", "repository")])
def test_oras_backup_loads_with_mdl_and_verifies_offline(tools, registry, unique_repo, output, form, scope):
    target, digest, files = push(tools, registry, unique_repo)
    signed = sign(tools, target, form)
    layout = tools.dir / ("backup.tar" if output == "tar" else "backup")
    source = target if scope == "tag" else target.rsplit(":", 1)[0]  # a repository: every tag, fallback tag included
    ok(tools.oras("backup", "--plain-http", "--include-referrers", "--output", str(layout), source))
    if scope == "repository":
        index = json.loads((layout / "index.json").read_text())
        names = {(m.get("annotations") or {}).get("org.opencontainers.image.ref.name"): m["mediaType"]
                 for m in index["manifests"]}
        assert names["sha256-" + digest.split(":")[1]] == "application/vnd.oci.image.index.v1+json"
    # the registry no longer has the model: what verifies below is what the layout carried
    ok(tools.oras("manifest", "delete", "--plain-http", "--force", f"{target.rsplit(':', 1)[0]}@{digest}"))
    assert tools.oras("manifest", "fetch", "--plain-http", target).returncode != 0
    loaded = json.loads(ok(tools.mdl("load", str(layout), "--tag", target, "--json")).stdout)
    assert [(m["digest"], m["tags"], m["ignored_names"]) for m in loaded["models"]] == [(digest, [target], ["v1"])]
    listed = json.loads(ok(tools.mdl("list", "--json")).stdout)
    assert [m["id"] for m in listed] == [digest]  # the signatures travel with the model and are no models
    pub = str(tools.dir / "mdl.pub")
    got = json.loads(ok(tools.mdl("verify", target, "--key", pub, "--json")).stdout)
    want = "bundle" if form == "both" else "legacy"
    assert got["signature"]["form"] == want and got["signature"]["signatureManifest"] == signed[want]
    assert [m["digest"] for m in got["models"]] == [digest] and got["models"][0]["ok"]
    extracted = tools.dir / "extracted"
    ok(tools.mdl("extract", target, str(extracted)))
    assert tree(extracted) == {path: src.read_bytes() for path, src in files.items()}


def test_what_oras_pushes_from_plain_files_is_refused_as_no_model(tools, registry, unique_repo):
    _, files = gguf_model(tools.dir / "plain")
    target = f"{registry.host}/{unique_repo}:v1"
    ok(tools.oras("push", "--plain-http", target, "model.gguf", "LICENSE", cwd=tools.dir / "plain"))
    manifest = json.loads(ok(tools.oras("manifest", "fetch", "--plain-http", target)).stdout)
    assert manifest["artifactType"] == "application/vnd.unknown.artifact.v1"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    # typed as tar archives, the layers hold the files as they are (spec/interop.md §2)
    assert [(la["mediaType"], la["annotations"][TITLE], la["size"]) for la in manifest["layers"]] == [
        ("application/vnd.oci.image.layer.v1.tar", name, files[name].stat().st_size)
        for name in ("model.gguf", "LICENSE")]
    refused = f"{target} is not a model artifact (config media type application/vnd.oci.empty.v1+json)"
    code = OUTCOMES["unsupported-artifact"].exit_code
    assert_clean_error(tools.mdl("pull", target), code, refused)
    checked = tools.mdl("verify", target)
    assert checked.returncode == 1 and "[unknown-config-type] $.config.mediaType" in checked.stdout
    assert not json.loads(ok(tools.mdl("list", "--json")).stdout)
    check = tools.mdl("conformance", "check", target, "--json")
    assert check.returncode == 1
    [artifact] = json.loads(check.stdout)["artifacts"]
    assert artifact["format"] is None and artifact["other_findings"] == []
    # its one finding fails the interop.json case that reproduces this very document
    assert "interop/interop-plain-files-as-oras-pushes-them" in [v["case"] for v in artifact["failed"]]
    assert {(f["kind"], f["path"], f["document"]) for v in artifact["failed"] for f in v["findings"]} == {
        ("unknown-config-type", "$.config.mediaType", "manifest")}


def test_oras_backup_of_a_cosign_signed_repository_verifies_in_mdl(tools, registry, unique_repo):
    """cosign's legacy form has no `subject` and no fallback tag: oras backs up the `.sig` manifest
    under its bare tag `sha256-<hex>.sig`, which is what names the model it signs."""
    cosign = peer("cosign")
    target, digest, _ = push(tools, registry, unique_repo)
    env = tools.env | {"COSIGN_PASSWORD": PW, "SIGSTORE_NO_CACHE": "1"}
    keyed = subprocess.run([cosign, "generate-key-pair", "--output-key-prefix", "cosign"], capture_output=True,
                           text=True, env=env, cwd=tools.dir, stdin=subprocess.DEVNULL, timeout=300)
    ok(keyed)
    repo = target.rsplit(":", 1)[0]
    ok(subprocess.run([cosign, "sign", "--key", "cosign.key", "--tlog-upload=false", "--use-signing-config=false",
                       "--new-bundle-format=false", "--allow-http-registry", "-y", f"{repo}@{digest}"],
                      capture_output=True, text=True, env=env, cwd=tools.dir, stdin=subprocess.DEVNULL, timeout=300))
    layout = tools.dir / "backup"
    ok(tools.oras("backup", "--plain-http", "--include-referrers", "--output", str(layout), repo))
    names = [(m.get("annotations") or {}).get("org.opencontainers.image.ref.name")
             for m in json.loads((layout / "index.json").read_text())["manifests"]]
    assert sorted(names) == sorted(["v1", "sha256-" + digest.split(":")[1] + ".sig"])
    ok(tools.oras("manifest", "delete", "--plain-http", "--force", f"{repo}@{digest}"))
    ok(tools.mdl("load", str(layout), "--tag", target))
    got = json.loads(ok(tools.mdl("verify", target, "--key", str(tools.dir / "cosign.pub"), "--json")).stdout)
    assert got["ok"] and got["signature"]["form"] == "legacy" and got["signature"]["digest"] == digest
    assert [m["id"] for m in json.loads(ok(tools.mdl("list", "--json")).stdout)] == [digest]
