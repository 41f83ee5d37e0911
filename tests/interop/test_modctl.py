"""mdl and the real modctl (v0.0.5, the newest the Go module proxy serves, under its earlier module path
github.com/CloudNativeAI/modctl; built by build_peers.sh) exchange ModelPack artifacts through the real
registry (distribution 2.8.2). spec/interop.md section 4 says what this shows.

modctl v0.0.5 writes ModelPack in its legacy `vnd.cnai` / `org.cnai` spelling, and `.tar` layers unless
`modctl build --raw`:

- what modctl builds from a Modelfile (a GGUF, config.json, LICENSE, README.md) and pushes, in both
  encodings, is pulled by mdl, passes `mdl verify` and `mdl conformance check`, and `mdl extract` writes
  the original files byte for byte; the raw one is served by `mdl serve` and answers exactly as
  llama.cpp does on the original file (one thread, temperature 0, a fixed seed); the tar one is refused
  by `mdl serve`, which reads GGUF weights from raw layers only (spec/runtime.md section 3 lets a runtime
  refuse archive layers), with a hint that works;
- modctl pulls what `mdl package --format cncf` pushed, but cannot extract it: v0.0.5 predates the rename
  and looks for the file path under `org.cnai.model.filepath` only, so every layer of mdl's `org.cncf`
  output is written at the output path itself. Into an existing directory that fails (`open DIR: is a
  directory`); where nothing exists, modctl says it succeeded and leaves one file holding the last layer.
  The same manifest respelled `vnd.cnai` / `org.cnai` (same blobs) is extracted byte for byte, so the
  spelling is the whole difference.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.fixtures.models import write_tiny_gguf
from tests.integration.registry import free_port
from tests.interop.conftest import Session, ok, peer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MESSAGES = [{"role": "user", "content": "hello world"}]
SAMPLING = {"temperature": 0, "seed": 1234, "max_tokens": 16}
N_CTX = 256  # the tiny GGUF's context length, which mdl serve uses for a ModelPack model (it has none)
MODELFILE = """\
NAME tiny-llama
ARCH transformer
FAMILY llama
FORMAT gguf
PARAMSIZE 183
QUANTIZATION F32
CONFIG config.json
MODEL tiny.gguf
DOC LICENSE
DOC README.md
"""
FILES = ("config.json", "tiny.gguf", "LICENSE", "README.md")  # in modctl's layer order: config, model, doc


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(root: Path) -> dict[str, str]:
    """Every regular file under root, by relative path: its sha256."""
    return {str(p.relative_to(root)): sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


class Tools(Session):
    def modctl(self, *args: str) -> subprocess.CompletedProcess:
        return self.run([peer("modctl"), "--storage-dir", self.dir / "modctl-storage",
                         "--log-dir", self.dir / "modctl-logs", "--no-progress", *args])


@pytest.fixture
def tools(mdl, tmp_path):
    """`mdl` (its own store) and `modctl` (its own storage and log folders: by default it uses the
    account's home, which Go reads from the password database, not from $HOME)."""
    peer("modctl")
    t = Tools(mdl, tmp_path)
    assert "Version:    v0.0.5" in ok(t.modctl("version")).stdout
    return t


def http() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # loopback: no proxy from the environment
    return s


def registry_manifest(registry, repo: str, ref: str) -> tuple[dict, str]:
    resp = http().get(f"{registry.url}/v2/{repo}/manifests/{ref}", headers={"Accept": OCI_MANIFEST}, timeout=10)
    resp.raise_for_status()
    return resp.json(), resp.headers["Docker-Content-Digest"]


def registry_blob(registry, repo: str, digest: str) -> bytes:
    resp = http().get(f"{registry.url}/v2/{repo}/blobs/{digest}", timeout=10)
    resp.raise_for_status()
    return resp.content


def model_dir(root: Path, seed: int) -> Path:
    """A model folder as a modctl user has it: the GGUF, its files, and the Modelfile."""
    root.mkdir(parents=True)
    write_tiny_gguf(root / "tiny.gguf", seed=seed)
    (root / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}\n')
    (root / "LICENSE").write_text("MIT License\n\nCopyright (c) the interop test\n")
    (root / "README.md").write_text("# tiny-llama\n\nA tiny llama for the modctl interop test.\n")
    (root / "Modelfile").write_text(MODELFILE)
    return root


def modctl_build_and_push(tools, registry, repo: str, encoding: str, seed: int) -> tuple[Path, str, dict, str]:
    src = model_dir(tools.dir / f"model-{encoding}", seed)
    target = f"{registry.host}/{repo}:v1"
    raw = ["--raw"] if encoding == "raw" else []
    assert ok(tools.modctl("build", *raw, "-f", str(src / "Modelfile"), "-t", target, str(src))).stdout.strip() \
        == f"Successfully built model artifact: {target}"
    ok(tools.modctl("push", "--plain-http", target))
    manifest, digest = registry_manifest(registry, repo, "v1")
    return src, target, manifest, digest


def assert_modctl_v005_shape(registry, repo: str, manifest: dict, encoding: str) -> None:
    """What modctl v0.0.5 writes: the legacy spelling, one layer per file in the given encoding."""
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["artifactType"] == "application/vnd.cnai.model.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.cnai.model.config.v1+json"
    assert [d["mediaType"] for d in manifest["layers"]] == [
        f"application/vnd.cnai.model.{kind}.v1.{encoding}" for kind in ("weight.config", "weight", "doc", "doc")]
    assert [d["annotations"]["org.cnai.model.filepath"] for d in manifest["layers"]] == list(FILES)
    for d in manifest["layers"]:
        assert set(d["annotations"]) == {"org.cnai.model.filepath", "org.cnai.model.file.metadata+json"}
    assert set(manifest["annotations"]) == {"org.cnai.modctl.modelfile"}
    config = json.loads(registry_blob(registry, repo, manifest["config"]["digest"]))
    assert config["modelfs"] == {"type": "layers", "diff_ids": [d["digest"] for d in manifest["layers"]]}
    assert config["config"] == {"architecture": "transformer", "format": "gguf", "paramSize": "183",
                                "quantization": "F32"}
    assert {k: v for k, v in config["descriptor"].items() if k != "createdAt"} == {"family": "llama",
                                                                                  "name": "tiny-llama"}


def pull_verify_extract(tools, src: Path, target: str, digest: str, encoding: str) -> None:
    pulled = ok(tools.mdl("pull", target)).stdout
    assert f"({digest})" in pulled
    assert ok(tools.mdl("verify", target)).stdout.startswith(f"OK     {target} ")
    assert re.search(r"\(\w+, modelpack\): (\d+)/\1 cases pass", ok(tools.mdl("conformance", "check", target)).stdout)
    out = tools.dir / f"extracted-{encoding}"
    done = ok(tools.mdl("extract", target, str(out))).stdout
    assert f"4 files (4 {'linked' if encoding == 'raw' else 'unpacked'})" in done
    assert tree(out) == {name: sha256(src / name) for name in FILES}


class Server:
    """`mdl serve` over the test's store, one thread per model, on a free loopback port."""

    def __init__(self, tools):
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = open(tools.dir / "serve.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "mdl", "serve", "--port", self.url.rsplit(":", 1)[1],
                                      "--threads", "1"], env=tools.env, cwd=tools.dir,
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        self.session = http()
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, (tools.dir / "serve.log").read_text()
            try:
                if self.session.get(self.url + "/health/ready", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "mdl serve did not become ready in 60 s"
            time.sleep(0.2)

    def chat(self, model: str) -> requests.Response:
        return self.session.post(self.url + "/engines/v1/chat/completions", timeout=120,
                                 json={"model": model, "messages": MESSAGES, **SAMPLING})

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)
        self.log.close()
        self.session.close()


@pytest.fixture
def server(tools):
    servers = []

    def start() -> Server:
        servers.append(Server(tools))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def llama_cpp_answer(gguf: Path) -> dict:
    import llama_cpp  # the serve extra; mdl serve needs it too

    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=N_CTX, n_threads=1, n_threads_batch=1, verbose=False)
    try:
        choice = llm.create_chat_completion(messages=MESSAGES, **SAMPLING)["choices"][0]
    finally:
        llm.close()
    return {"content": choice["message"]["content"], "finish_reason": choice["finish_reason"]}


# --------------------------------------------------------------------------------------------------
# modctl -> mdl


def test_mdl_pulls_verifies_extracts_and_serves_what_modctl_built_raw(tools, registry, unique_repo, server):
    src, target, manifest, digest = modctl_build_and_push(tools, registry, unique_repo, "raw", seed=21)
    assert_modctl_v005_shape(registry, unique_repo, manifest, "raw")
    # raw layers: each layer digest is the file's own
    assert [d["digest"] for d in manifest["layers"]] == [f"sha256:{sha256(src / n)}" for n in FILES]
    pull_verify_extract(tools, src, target, digest, "raw")

    resp = server().chat(target)
    assert resp.status_code == 200, resp.text
    choice = resp.json()["choices"][0]
    served = {"content": choice["message"]["content"], "finish_reason": choice["finish_reason"]}
    assert served["content"] and served == llama_cpp_answer(src / "tiny.gguf")


def test_mdl_pulls_verifies_extracts_what_modctl_built_as_tar_and_serve_refuses_it(tools, registry, unique_repo,
                                                                                  server):
    src, target, manifest, digest = modctl_build_and_push(tools, registry, unique_repo, "tar", seed=22)
    assert_modctl_v005_shape(registry, unique_repo, manifest, "tar")
    pull_verify_extract(tools, src, target, digest, "tar")

    # mdl serve runs GGUF weights from raw layers only (spec/runtime.md §3: a runtime MAY refuse archives)
    resp = server().chat(target)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == "unsupported_model_format" and error["param"] == "model"
    assert error["message"] == (
        f"{target} keeps its GGUF weights in a tar layer; mdl serve runs GGUF models (mdl serve reads GGUF "
        f"weights from raw layers only: `mdl extract {target} DIR` unpacks the files, and "
        "`mdl package --gguf DIR/<file>.gguf` packages them to serve)")


# --------------------------------------------------------------------------------------------------
# mdl -> modctl


@pytest.fixture
def mdl_cncf(tools, registry, unique_repo):
    """A model `mdl package --format cncf` pushed: the GGUF, a license and a chat template."""
    src = tools.dir / "inputs"
    src.mkdir()
    write_tiny_gguf(src / "tiny.gguf", seed=23)
    (src / "LICENSE").write_text("MIT License\n\nCopyright (c) the interop test\n")
    (src / "template.jinja").write_text("{% for m in messages %}{{ m.content }}\n{% endfor %}")
    target = f"{registry.host}/{unique_repo}:v1"
    ok(tools.mdl("package", "--gguf", str(src / "tiny.gguf"), "--license", str(src / "LICENSE"),
                 "--chat-template", str(src / "template.jinja"), "--format", "cncf", "--push", target))
    manifest, _ = registry_manifest(registry, unique_repo, "v1")
    assert [d["annotations"]["org.cncf.model.filepath"] for d in manifest["layers"]] == [
        "tiny.gguf", "LICENSE", "template.jinja"]
    return src, target, manifest


def test_modctl_pulls_mdl_cncf_output_but_cannot_extract_it(tools, mdl_cncf):
    src, target, manifest = mdl_cncf
    layers = [d["digest"] for d in manifest["layers"]]
    assert ok(tools.modctl("pull", "--plain-http", target)).stdout.strip() \
        == f"Successfully pulled model artifact: {target}"

    # Into an existing directory: every layer's path is the output path itself, a directory.
    out = tools.dir / "modctl-out"
    out.mkdir()
    proc = tools.modctl("extract", target, "--output", str(out))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    m = re.fullmatch(r"Error: failed to extract layer (sha256:[0-9a-f]{64}): failed to decode the layer "
                     r"(sha256:[0-9a-f]{64}) to output directory: open (.+): is a directory", proc.stderr.strip())
    assert m, proc.stderr
    assert m[1] == m[2] and m[1] in layers and m[3] == str(out)
    assert list(out.iterdir()) == []

    # Where nothing exists yet, modctl says it succeeded and leaves a single file: each layer in turn
    # (one at a time here, so deterministically) overwrote the output path, the last one winning.
    out = tools.dir / "modctl-out-new"
    proc = ok(tools.modctl("extract", target, "--output", str(out), "--concurrency", "1"))
    assert proc.stdout.strip() == f"Successfully extracted model artifact {target} to {out}"
    assert out.is_file()
    assert sha256(out) == sha256(src / "template.jinja") == layers[-1].split(":")[1]

    # `pull --extract-dir` does the same.
    out = tools.dir / "modctl-pull-out"
    ok(tools.modctl("pull", "--plain-http", "--extract-dir", str(out), target))
    assert out.is_file() and sha256(out) in {d.split(":")[1] for d in layers}


def test_modctl_extracts_mdl_cncf_output_respelled_vnd_cnai_byte_for_byte(tools, registry, unique_repo, mdl_cncf):
    """The control: mdl's manifest with only its spelling changed to the one modctl v0.0.5 knows (same
    config and layer blobs, pushed under another tag) is extracted to mdl's inputs, byte for byte."""
    src, _, manifest = mdl_cncf
    text = json.dumps(manifest).replace("vnd.cncf.model.", "vnd.cnai.model.").replace('"org.cncf.model.',
                                                                                      '"org.cnai.model.')
    respelled = json.loads(text)
    assert respelled["layers"][0]["annotations"]["org.cnai.model.filepath"] == "tiny.gguf"
    resp = http().put(f"{registry.url}/v2/{unique_repo}/manifests/legacy", data=text.encode(),
                      headers={"Content-Type": OCI_MANIFEST}, timeout=10)
    assert resp.status_code == 201, resp.text
    target = f"{registry.host}/{unique_repo}:legacy"

    out = tools.dir / "modctl-out"
    ok(tools.modctl("pull", "--plain-http", "--extract-dir", str(out), target))
    assert tree(out) == {name: sha256(src / name) for name in ("tiny.gguf", "LICENSE", "template.jinja")}
    # and modctl restores the mode mdl recorded in org.cnai.model.file.metadata+json
    assert {oct((out / n).stat().st_mode & 0o777) for n in ("tiny.gguf", "LICENSE", "template.jinja")} == {"0o644"}
