"""The recipes in examples/: every Kubernetes manifest validated against the Kubernetes OpenAPI schemas
(`kubernetes-validate`, strict: no unknown field; its schemas ship in the package, so this runs
offline, and the test proves it by refusing every network connection). KServe's kinds are custom
resources with no schema there: their containers are validated as core/v1 containers. The commands in
them are run for real against the loopback registry in tests/integration/test_cluster_examples.py."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
import yaml

kv = pytest.importorskip("kubernetes_validate")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
K8S = EXAMPLES / "kubernetes"
VERSION = "1.35.0"  # image volumes are beta and on by default from 1.35


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the validator tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [(f"{path.name}#{i}", doc) for i, doc in enumerate(yaml.safe_load_all(path.read_text())) if doc]
    return docs


def as_pod(containers: list[dict]) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "container-check"},
            "spec": {"containers": containers}}


@pytest.mark.parametrize("name, doc", documents(), ids=[n for n, _ in documents()])
def test_every_manifest_is_valid(name, doc):
    if doc["apiVersion"].startswith("serving.kserve.io/"):
        spec = doc["spec"]
        containers = [spec["container"]] if doc["kind"] == "ClusterStorageContainer" else spec["predictor"]["containers"]
        kv.validate(as_pod(containers), VERSION, strict=True)
    else:
        kv.validate(doc, VERSION, strict=True)


def test_the_validator_is_strict_and_knows_the_versions():
    bad = as_pod([{"name": "x", "image": "y", "comand": ["typo"]}])
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, VERSION, strict=True)
    image_volume = yaml.safe_load((K8S / "image-volume.yaml").read_text())
    with pytest.raises(kv.ValidationError):
        kv.validate(image_volume, "1.30.0", strict=True)  # image volumes came with 1.31


def test_the_three_ways_serve_the_same_model_at_the_same_path():
    docs = dict(documents())
    deployment = docs["deployment-init-extract.yaml#0"]["spec"]["template"]["spec"]
    init = deployment["initContainers"][0]["command"]
    assert init[:2] == ["mdl", "extract"] and init[-1] == "/models"
    model = init[-2]
    volume = docs["image-volume.yaml#0"]["spec"]["volumes"][0]["image"]["reference"]
    storage = docs["kserve.yaml#1"]["spec"]["predictor"]["containers"][0]["env"][0]["value"]
    assert volume == model and storage == f"mdl://{model}"
    assert docs["kserve.yaml#0"]["spec"]["supportedUriFormats"] == [{"prefix": "mdl://"}]
    served = [deployment["containers"][0]["args"], docs["image-volume.yaml#0"]["spec"]["containers"][0]["args"]]
    assert {a[a.index("--model") + 1] for a in served} == {"/models/my-model.gguf"}


def test_the_containerfile_copies_what_the_package_needs():
    text = (EXAMPLES / "Containerfile").read_text()
    root = EXAMPLES.parent
    for line in re.findall(r"^COPY (.+) /src", text, re.M):
        for item in line.split():
            assert (root / item).exists(), item
    assert '"/src[zstd]"' in text
    assert re.search(r"^zstd = \[", (root / "pyproject.toml").read_text(), re.M)


def test_the_gate_workflow_fetches_only_config_json():
    flow = yaml.safe_load((EXAMPLES / "github-actions-config-gate.yml").read_text())
    steps = {s.get("id"): s for s in flow["jobs"]["gate"]["steps"]}
    assert "mdl extract \"$MODEL\" gate --include config.json" in steps["fetch-config"]["run"]
    assert flow["jobs"]["deploy"]["needs"] == "gate"
