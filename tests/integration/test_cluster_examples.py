"""The commands of the recipes in examples/, run for real against the loopback registry (there is no
cluster here): the Deployment's init container command as written in its YAML, the KServe storage
initializer's shell command with the arguments KServe passes, and the two steps of the GitHub Actions
gate. Only the registry host and the target directory are substituted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mdl.ops.package import PackageRequest, package
from mdl.ops.push import push
from mdl.reference import parse_reference
from mdl.registry.open import open_repository
from mdl.store import LayoutStore
from tests.fixtures import models

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PLACEHOLDER = "registry.example.com"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def published(registry, tmp_path_factory):
    """org/my-model:1 (a GGUF packaged from my-model.gguf) and org/config-model:1 (a safetensors model)
    in the registry; returns the GGUF's bytes."""
    base = tmp_path_factory.mktemp("examples")
    store = LayoutStore(base / "home")
    gguf = models.write_tiny_gguf(base / "my-model.gguf")[0]
    package(store, PackageRequest(gguf=str(gguf)), parse_reference("org/my-model:1"))
    st = models.write_safetensors_dir(base / "st", n_shards=1)
    package(store, PackageRequest(safetensors_dir=str(st)), parse_reference("org/config-model:1"))
    for name in ("my-model:1", "config-model:1"):
        target = parse_reference(f"{registry.host}/org/{name}")
        push(store, open_repository(target), f"org/{name}", target)
    return gguf.read_bytes()


def container_env(tmp_path: Path) -> dict:
    """What the init container's process sees: no home, a store path nobody creates, mdl on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MDL_", "DOCKER_CONFIG"))}
    env.update(PATH=f"{BIN}:{env.get('PATH', '')}", MDL_HOME=str(tmp_path / "no-store"),
               DOCKER_CONFIG=str(tmp_path / "no-docker-config"))
    return env


def argv(command: list[str]) -> list[str]:
    return [sys.executable, "-m", "mdl", *command[1:]] if command[0] == "mdl" else command


def test_the_init_container_command(registry, published, tmp_path):
    deployment = yaml.safe_load((EXAMPLES / "kubernetes" / "deployment-init-extract.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    models_dir = tmp_path / "models"
    command = [a.replace(PLACEHOLDER, registry.host).replace("/models", str(models_dir))
               for a in pod["initContainers"][0]["command"]]
    for attempt in range(2):  # the second run is a restarted init container over the same emptyDir
        done = subprocess.run(argv(command), env=container_env(tmp_path), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    server_args = pod["containers"][0]["args"]
    served = Path(server_args[server_args.index("--model") + 1].replace("/models", str(models_dir)))
    assert served.read_bytes() == published
    assert sorted(p.name for p in models_dir.iterdir()) == ["my-model.gguf"]  # no scratch left behind
    assert not (tmp_path / "no-store").exists()  # nothing stored


def test_the_kserve_storage_initializer_command(registry, published, tmp_path):
    docs = list(yaml.safe_load_all((EXAMPLES / "kubernetes" / "kserve.yaml").read_text()))
    command = docs[0]["spec"]["container"]["command"]
    uri = docs[1]["spec"]["predictor"]["containers"][0]["env"][0]["value"].replace(PLACEHOLDER, registry.host)
    done = subprocess.run([*command, uri, str(tmp_path / "mnt-models")], env=container_env(tmp_path),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "mnt-models" / "my-model.gguf").read_bytes() == published


def _run_step(step: dict, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-e", "-c", step["run"]], env=env, cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize("min_context, passes", [("2048", True), ("8192", False)])
def test_the_gate_workflow_steps(registry, published, tmp_path, min_context, passes):
    flow = yaml.safe_load((EXAMPLES / "github-actions-config-gate.yml").read_text())
    job = flow["jobs"]["gate"]
    steps = {s.get("id"): s for s in job["steps"]}
    env = container_env(tmp_path) | {k: v for k, v in job["env"].items() if k != "MODEL"}
    env |= {"MODEL": f"{registry.host}/org/config-model:1", "MIN_CONTEXT": min_context}
    fetched = _run_step(steps["fetch-config"], env, tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    assert [p.name for p in (tmp_path / "gate").iterdir()] == ["config.json"]
    checked = _run_step(steps["check"], env, tmp_path)
    assert checked.returncode == (0 if passes else 1), checked.stdout + checked.stderr
    if not passes:
        assert "::error::context 2048 is under 8192" in checked.stdout
