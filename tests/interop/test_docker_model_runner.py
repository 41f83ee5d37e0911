"""mdl and Docker Model Runner's own distribution library (github.com/docker/model-runner
`pkg/distribution` v1.2.9, driven by our small Go program `tests/interop/dmr`, built as `mdl-dmr` by
build_peers.sh) read each other's artifacts, both ways, against the real registry (distribution 2.8.2).

Every input kind `docker model package` takes, in both formats Docker writes (`docker`, `cncf`):
a GGUF with two licenses, a chat template and a projector; a GGUF split in 3 shards (given by its
second shard); a safetensors directory with nested files; a DDUF archive.

- Docker packages and pushes (its `builder` and registry target, as `docker model package --push`):
  `mdl pull` stores it, `mdl verify` and `mdl conformance check` pass, `mdl extract` writes every file
  byte for byte at its packaged path; mdl serves Docker's GGUF artifacts and answers exactly as
  llama.cpp does on the original file.
- mdl packages and pushes: Docker's client pulls it into its own store, its accessors (GGUF paths,
  safetensors, DDUF, projector, chat template) and its runtime bundle resolve to the original bytes.
- For the same inputs and creation time the configs are equal, field by field, except where
  spec/interop.md section 1 documents a difference; the test asserts each documented difference.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.fixtures.models import DEFAULT_TEMPLATE, write_dduf, write_safetensors_dir, write_tiny_gguf
from tests.integration.registry import free_port
from tests.interop.conftest import peer

CREATED = "2025-01-01T00:00:00Z"
FORMATS = ("docker", "cncf")
CHAT = [{"role": "user", "content": "hello world"}]
SAMPLING = {"temperature": 0, "seed": 1234, "max_tokens": 16}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG_V01 = "application/vnd.docker.ai.model.config.v0.1+json"
CONFIG_V02 = "application/vnd.docker.ai.model.config.v0.2+json"
CNCF_CONFIG = "application/vnd.cncf.model.config.v1+json"
CNCF_MANIFEST = "application/vnd.cncf.model.manifest.v1+json"
TITLE = "org.opencontainers.image.title"
FILEPATH = "org.cncf.model.filepath"
METADATA = "org.cncf.model.file.metadata+json"


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class Case:
    """One packaging input: the `package` arguments (shared by both tools) and the files it packages,
    by packaged path, in the order both tools write the layers."""
    name: str
    args: list[str]
    files: dict[str, Path]
    kind: str  # gguf, shards, safetensors, dduf
    extra: dict[str, Path] = field(default_factory=dict)  # licenses, template, projector by role

    def digests(self) -> dict[str, str]:
        return {p: sha256(f) for p, f in self.files.items()}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Case]:
    d = tmp_path_factory.mktemp("dmr-inputs")
    gguf = write_tiny_gguf(d / "tiny.gguf")[0]
    (d / "LICENSE").write_text("MIT License\n\nCopyright (c) mdl interop\n")
    (d / "NOTICE.txt").write_text("This model is a test fixture.\n")
    (d / "chat.jinja").write_text(DEFAULT_TEMPLATE)
    (d / "vision.mmproj").write_bytes(hashlib.sha256(b"projector").digest() * 64)
    (d / "shards").mkdir()
    shards = write_tiny_gguf(d / "shards" / "split.gguf", seed=3, n_shards=3)
    st = write_safetensors_dir(d / "st")
    (st / "tokenizer").mkdir()
    (st / "tokenizer" / "tokenizer_config.json").write_text('{"model_max_length": 2048}\n')
    (st / "text_encoder" / "nested").mkdir(parents=True)
    (st / "text_encoder" / "nested" / "config.json").write_text('{"hidden_size": 32}\n')
    dduf = write_dduf(d / "pipeline.dduf")
    extras = {"license": d / "LICENSE", "notice": d / "NOTICE.txt", "template": d / "chat.jinja",
              "mmproj": d / "vision.mmproj"}
    # walk order: depth first, each directory's names sorted (tokenizer/... before tokenizer.json)
    st_files = sorted(((p.relative_to(st).as_posix(), p) for p in st.rglob("*") if p.is_file()),
                      key=lambda e: e[0].split("/"))
    return {
        "gguf": Case("gguf", ["--gguf", str(gguf), "--license", str(extras["license"]), "--license",
                              str(extras["notice"]), "--chat-template", str(extras["template"]),
                              "--mmproj", str(extras["mmproj"])],
                     {"tiny.gguf": gguf, **{p.name: p for p in extras.values()}}, "gguf", extras),
        "shards": Case("shards", ["--gguf", str(shards[1])], {p.name: p for p in shards}, "shards"),
        "safetensors": Case("safetensors", ["--safetensors-dir", str(st)], dict(st_files), "safetensors"),
        "dduf": Case("dduf", ["--dduf", str(dduf)], {"pipeline.dduf": dduf}, "dduf"),
    }


@pytest.fixture
def tools(mdl, tmp_path):
    dmr_bin, run_mdl = peer("mdl-dmr"), mdl

    class Tools:
        env = run_mdl.env
        store = tmp_path / "docker-store"  # Docker's own model store

        def mdl(self, *args: str, rc: int = 0) -> dict | str:
            proc = run_mdl(*args)
            assert proc.returncode == rc, f"mdl {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
            return json.loads(proc.stdout) if "--json" in args else proc.stdout

        def dmr(self, *args: str) -> dict:
            proc = subprocess.run([dmr_bin, *args], capture_output=True, text=True, env=run_mdl.env,
                                  stdin=subprocess.DEVNULL, timeout=300)
            assert proc.returncode == 0, f"mdl-dmr {' '.join(args)}: {proc.stdout}\n{proc.stderr[-3000:]}"
            return json.loads(proc.stdout)

        def docker_push(self, case: Case, fmt: str, ref: str) -> str:
            return self.dmr("package", "--format", fmt, "--created", CREATED, *case.args, ref)["digest"]

        def mdl_push(self, case: Case, fmt: str, ref: str) -> str:
            out = self.mdl("package", *case.args, "--format", fmt, "--created", CREATED, "--push", ref)
            return out.strip().splitlines()[-1].split("@")[1]  # the line naming the pushed manifest

    return Tools()


def registry_get(registry, repo: str, what: str, ref: str) -> requests.Response:
    s = requests.Session()
    s.trust_env = False
    resp = s.get(f"{registry.url}/v2/{repo}/{what}/{ref}", headers={"Accept": OCI_MANIFEST}, timeout=10)
    resp.raise_for_status()
    return resp


def artifact(registry, repo: str, digest: str) -> tuple[dict, dict, bytes]:
    """The manifest, the config and the config's bytes, as the registry serves them."""
    manifest = registry_get(registry, repo, "manifests", digest).json()
    raw = registry_get(registry, repo, "blobs", manifest["config"]["digest"]).content
    return manifest, json.loads(raw), raw


CASES = ["gguf", "shards", "safetensors", "dduf"]
PARAMS = [(c, f) for c in CASES for f in FORMATS]
IDS = [f"{c}-{f}" for c, f in PARAMS]


# -- Docker writes, mdl reads ---------------------------------------------------------------------


@pytest.mark.parametrize("case,fmt", PARAMS, ids=IDS)
def test_mdl_pulls_verifies_and_extracts_what_docker_pushed(tools, registry, unique_repo, inputs, case, fmt, tmp_path):
    c = inputs[case]
    ref = f"{registry.host}/{unique_repo}:v1"
    digest = tools.docker_push(c, fmt, ref)
    manifest, config, _ = artifact(registry, unique_repo, digest)
    # what Docker wrote: the format asked for, one raw layer per file, in the order both tools write
    if fmt == "docker":
        assert "artifactType" not in manifest
        assert manifest["config"]["mediaType"] == (CONFIG_V02 if case == "safetensors" else CONFIG_V01)
    else:
        assert manifest["artifactType"] == CNCF_MANIFEST and manifest["config"]["mediaType"] == CNCF_CONFIG
    assert [(l["annotations"][FILEPATH], l["digest"]) for l in manifest["layers"]] == \
        [(p, f"sha256:{h}") for p, h in c.digests().items()]

    pulled = tools.mdl("pull", ref)
    assert digest in pulled
    assert "OK" in tools.mdl("verify", ref)
    check = tools.mdl("conformance", "check", ref, "--json")
    assert check["ok"] is True, check
    out = tmp_path / "extracted"
    tools.mdl("extract", ref, str(out))
    got = {str(p.relative_to(out)): sha256(p) for p in out.rglob("*") if p.is_file()}
    assert got == c.digests()
    # Docker's layers carry no title; mdl's written profile asks for one, so Docker's artifacts pass
    # the reader profile only (spec/interop.md section 1)
    assert all(TITLE not in l["annotations"] for l in manifest["layers"])
    written = tools.mdl("conformance", "check", ref, "--written", "--json", rc=1)
    assert written["ok"] is False
    assert sorted((f["kind"], f["path"], f["message"]) for f in findings(written)) == sorted(
        ("layer-annotations", f"$.layers[{i}].annotations", f"layer {i} has no {TITLE}")
        for i in range(len(manifest["layers"]))), written


def findings(report: dict) -> list[dict]:
    """Every finding of a `conformance check --json` report, wherever the report nests them."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "kind" in node and "path" in node:
                found.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(report)
    return found


# -- mdl writes, Docker reads ---------------------------------------------------------------------


@pytest.mark.parametrize("case,fmt", PARAMS, ids=IDS)
def test_docker_pulls_and_resolves_what_mdl_pushed(tools, registry, unique_repo, inputs, case, fmt):
    c = inputs[case]
    ref = f"{registry.host}/{unique_repo}:v1"
    digest = tools.mdl_push(c, fmt, ref)
    got = tools.dmr("pull", "--store", str(tools.store), ref)
    assert got["digest"] == got["id"] == digest
    # every layer, read back from Docker's store, is the original file under its packaged path
    assert [(l["filepath"], l["sha256"]) for l in got["layers"]] == list(c.digests().items())
    assert all(l["digest"] == f"sha256:{l['sha256']}" for l in got["layers"])
    cfg, paths, bundle = got["config"], got["paths"], got["bundle"]
    assert cfg["format"] == {"shards": "gguf"}.get(case, case)
    assert cfg["type"] == ("*types.Config" if fmt == "docker" else "*modelpack.Model")
    blobs = [sha256(Path(p)) for p in paths["gguf"] or []]
    if case in ("gguf", "shards"):
        assert cfg["architecture"] == "llama" and cfg["parameters"] and cfg["quantization"] == "MOSTLY_F32"
    weights = [h for p, h in c.digests().items() if p.endswith(".gguf")]
    if case == "gguf" and fmt == "cncf":
        # ModelPack has no projector type: Docker's store accessors cannot tell it from the GGUF
        # (both `weight.v1.raw`), so its GGUF list holds the projector too and it finds no projector;
        # its bundle places the projector by file name (spec/interop.md section 1)
        weights.append(c.digests()["vision.mmproj"])
        assert "mmproj" in got["path_errors"]
    assert blobs == weights
    if case == "safetensors":
        assert [sha256(Path(p)) for p in paths["safetensors"]] == \
            [h for p, h in c.digests().items() if p.endswith(".safetensors")]
    if case == "dduf":
        assert [sha256(Path(p)) for p in paths["dduf"]] == [c.digests()["pipeline.dduf"]]
    if case == "gguf":
        assert sha256(Path(paths["chat_template"])) == c.digests()["chat.jinja"]
        if fmt == "docker":
            assert sha256(Path(paths["mmproj"])) == c.digests()["vision.mmproj"]
    # the runtime bundle Docker's runner gets
    files = bundle["files"]
    if fmt == "cncf" or case == "safetensors":  # placed by org.cncf.model.filepath
        assert files == c.digests()
    elif case == "gguf":  # v0.1: fixed names, licenses stay in the store
        assert files == {"model.gguf": c.digests()["tiny.gguf"], "model.mmproj": c.digests()["vision.mmproj"],
                         "template.jinja": c.digests()["chat.jinja"]}
    elif case == "shards":
        assert files == {f"model-0000{i}-of-00003.gguf": h for i, h in enumerate(c.digests().values(), 1)}
        # Docker's bundle names the last shard as the model path, which llama.cpp refuses to load
        # (spec/interop.md section 1); from the first shard beside it, it loads
        assert bundle["gguf"].endswith("model-00003-of-00003.gguf")
        import llama_cpp

        with pytest.raises(ValueError, match="Failed to load model"):
            llama_cpp.Llama(model_path=bundle["gguf"], n_ctx=64, n_threads=1, verbose=False)
        llama_cpp.Llama(model_path=str(Path(bundle["gguf"]).with_name("model-00001-of-00003.gguf")),
                        n_ctx=64, n_threads=1, verbose=False).close()
    elif case == "dduf":  # v0.1: named after the blob, not the packaged name
        assert files == {f"{c.digests()['pipeline.dduf']}.dduf": c.digests()["pipeline.dduf"]}
    for role in ("gguf", "safetensors", "mmproj", "chat_template", "dduf"):
        if bundle[role]:
            assert Path(bundle[role]).is_file() and sha256(Path(bundle[role])) in c.digests().values()
    if case == "gguf":
        assert sha256(Path(bundle["mmproj"])) == c.digests()["vision.mmproj"]
        assert sha256(Path(bundle["gguf"])) == c.digests()["tiny.gguf"]
        if fmt == "docker":
            assert sha256(Path(bundle["chat_template"])) == c.digests()["chat.jinja"]
        else:  # Docker's bundle of a ModelPack artifact unpacks the template but names none
            assert bundle["chat_template"] == ""  # (spec/interop.md section 1)


# -- the same input, the same config ---------------------------------------------------------------


@pytest.mark.parametrize("case,fmt", PARAMS, ids=IDS)
def test_config_and_manifest_equal_dockers_for_the_same_input(tools, registry, unique_repo, inputs, case, fmt):
    c = inputs[case]
    theirs = tools.docker_push(c, fmt, f"{registry.host}/{unique_repo}:docker")
    ours = tools.mdl_push(c, fmt, f"{registry.host}/{unique_repo}:mdl")
    d_manifest, d_config, d_raw = artifact(registry, unique_repo, theirs)
    m_manifest, m_config, m_raw = artifact(registry, unique_repo, ours)

    # documented differences first (spec/interop.md section 1), then everything else is equal
    inner = "config"
    if case == "safetensors":
        # Docker reads only the first safetensors file: its parameter count and tensor_count cover
        # shard 1 of 2; its parameters keep two decimals
        key = "parameters" if fmt == "docker" else "paramSize"
        counted = parameter_counts(c)
        assert d_config[inner][key] == docker_param_text(counted[0])
        assert m_config[inner][key] == mdl_param_text(sum(counted))
        d_config[inner].pop(key), m_config[inner].pop(key)
        if fmt == "docker":
            assert d_config[inner]["safetensors"].pop("tensor_count") == str(tensor_counts(c)[0])
            assert m_config[inner]["safetensors"].pop("tensor_count") == str(sum(tensor_counts(c)))
            # neither reads config.json's model_type (spec/docker-format.md section 5.7)
            assert "architecture" not in d_config[inner] and "architecture" not in m_config[inner]
        else:  # mdl writes ModelPack's precision for a safetensors model, Docker never does
            assert "precision" not in d_config[inner]
            assert m_config[inner].pop("precision") == "F16"
    assert m_config == d_config
    if fmt == "docker" and case in ("gguf", "shards"):
        # the GGUF facts both tools derive
        for k, v in {"format": "gguf", "architecture": "llama", "quantization": "MOSTLY_F32",
                     "context_size": 256}.items():
            assert m_config["config"][k] == v
        assert m_config["config"]["gguf"]["general.architecture"] == "llama"
    # Go escapes <, > and & in JSON text and sorts map keys, so equal configs are different bytes
    # and the two model IDs differ (spec/interop.md section 1)
    if case in ("gguf", "shards") and fmt == "docker":
        assert d_raw != m_raw and b"\\u003c" in d_raw and b"\\u003c" not in m_raw

    # manifests: the same layers (type, digest, size, path); mdl adds a title and normalizes the file
    # metadata (mode 0644, mtime = created, typeflag '0'); Docker copies the file's own
    for key in ("schemaVersion", "mediaType", "artifactType"):
        assert m_manifest.get(key) == d_manifest.get(key)
    assert m_manifest["config"]["mediaType"] == d_manifest["config"]["mediaType"]
    assert len(m_manifest["layers"]) == len(d_manifest["layers"])
    for m, d in zip(m_manifest["layers"], d_manifest["layers"]):
        assert (m["mediaType"], m["digest"], m["size"]) == (d["mediaType"], d["digest"], d["size"])
        assert m["annotations"].pop(TITLE) == m["annotations"][FILEPATH] == d["annotations"][FILEPATH]
        m_meta, d_meta = json.loads(m["annotations"].pop(METADATA)), json.loads(d["annotations"].pop(METADATA))
        assert d_meta["typeflag"] == 0 and m_meta["typeflag"] == 48
        assert m_meta["mtime"] == CREATED and m_meta["mode"] == 0o644
        assert {k: m_meta[k] for k in ("name", "uid", "gid", "size")} == \
            {k: d_meta[k] for k in ("name", "uid", "gid", "size")}
        assert m["annotations"] == d["annotations"]


def parameter_counts(c: Case) -> list[int]:
    from safetensors import safe_open

    counts = []
    for p, f in c.files.items():
        if p.endswith(".safetensors"):
            with safe_open(str(f), "numpy") as st:
                counts.append(sum(int(st.get_tensor(k).size) for k in st.keys()))
    return counts


def tensor_counts(c: Case) -> list[int]:
    from safetensors import safe_open

    out = []
    for p, f in c.files.items():
        if p.endswith(".safetensors"):
            with safe_open(str(f), "numpy") as st:
                out.append(len(list(st.keys())))
    return out


def _scaled(n: float) -> tuple[float, str]:
    unit = ""
    for u in ("K", "M", "B", "T"):
        if n < 1000:
            break
        n, unit = n / 1000, u
    return n, unit


def docker_param_text(n: int) -> str:  # Docker's safetensors spelling: two decimals kept
    v, u = _scaled(n)
    return f"{v:.2f}{u}"


def mdl_param_text(n: int) -> str:  # spec/docker-format.md section 5.1
    v, u = _scaled(n)
    return f"{v:.2f}".rstrip("0").rstrip(".") + u


# -- serving what Docker packaged -----------------------------------------------------------------


class Server:
    """`mdl serve` in a process on 127.0.0.1, one thread per model."""

    def __init__(self, env: dict, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "wb")
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "mdl", "serve", "--port", str(self.port), "--threads", "1"],
                                     env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, f"mdl serve exited: {log.read_text(errors='replace')}"
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, f"mdl serve did not answer: {log.read_text(errors='replace')}"
            time.sleep(0.05)

    def chat(self, model: str) -> dict:
        resp = requests.post(self.url + "/engines/v1/chat/completions", timeout=120,
                             json={"model": model, "messages": CHAT, **SAMPLING})
        assert resp.status_code == 200, resp.text
        choice = resp.json()["choices"][0]
        return {"text": choice["message"]["content"], "finish_reason": choice["finish_reason"]}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def llama_cpp_answer(path: Path) -> dict:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=1, n_threads_batch=1, verbose=False)
    try:
        choice = llm.create_chat_completion(messages=CHAT, **SAMPLING)["choices"][0]
    finally:
        llm.close()
    return {"text": choice["message"]["content"], "finish_reason": choice["finish_reason"]}


def test_mdl_serves_docker_gguf_as_llama_cpp_answers_on_the_original(tools, registry, unique_repo, inputs, tmp_path):
    """A GGUF (with its licenses) and a split GGUF, each as Docker packages it in both formats, pulled
    with mdl and served by `mdl serve`: the answer equals llama.cpp's on the original file."""
    single, shards = inputs["gguf"], inputs["shards"]
    served = {
        "gguf": (Case("gguf-plain", ["--gguf", str(single.files["tiny.gguf"]),
                                     "--license", str(single.extra["license"])], {}, "gguf"),
                 single.files["tiny.gguf"]),
        "shards": (shards, shards.files["split-00001-of-00003.gguf"]),
    }
    expected = {name: llama_cpp_answer(path) for name, (_, path) in served.items()}
    assert expected["gguf"]["text"] and expected["shards"]["text"]
    refs = {}
    for name, (case, _) in served.items():
        for fmt in FORMATS:
            ref = f"{registry.host}/{unique_repo}:{name}-{fmt}"
            tools.docker_push(case, fmt, ref)
            tools.mdl("pull", ref)
            refs[ref] = name
    server = Server(tools.env, tmp_path / "serve.log")
    try:
        for ref, name in refs.items():
            assert server.chat(ref) == expected[name], ref
    finally:
        server.stop()
