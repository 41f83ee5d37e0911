"""Every tagged JSON example in spec/ is validated against the schema its tag names.

Tag grammar (spec/README.md#24-examples): ```json <media type | annotation:<key>> [written] [invalid]
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from mdl.artifact_check import document_findings
from mdl.spec import mediatypes as mt
from mdl.spec import schemas

REPO = Path(__file__).resolve().parents[3]
FENCE = re.compile(r"^```json[ \t]+(?P<info>[^\n]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
ANNOTATION_SCHEMAS = {mt.ANNOTATION_FILE_METADATA: schemas.FILE_METADATA}


@dataclass
class Example:
    file: str
    line: int
    tag: str
    written: bool
    invalid: bool
    doc: object

    @property
    def id(self):
        return f"{self.file}:{self.line}"


def _examples() -> list[Example]:
    out = []
    for path in sorted((REPO / "spec").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            words = m.group("info").split()
            tag, flags = words[0], words[1:]
            assert set(flags) <= {"written", "invalid"}, f"{path.name}: unknown flags {flags}"
            line = text.count("\n", 0, m.start()) + 1
            out.append(Example(path.name, line, tag, "written" in flags, "invalid" in flags,
                               json.loads(m.group("body"))))
    return out


EXAMPLES = _examples()


def findings_of(ex: Example, *, written: bool | None = None) -> list:
    """What the library's rules say of the example: every rule for its media type (spec/ and schemas/)."""
    if ex.tag.startswith("annotation:"):
        return schemas.validate(ex.doc, ANNOTATION_SCHEMAS[ex.tag.removeprefix("annotation:")])
    found = document_findings(ex.tag, ex.doc, written=ex.written if written is None else written)
    assert not any(f.kind == "unsupported-media-type" for f in found), f"no rules for example tag {ex.tag!r}"
    return found


def test_there_are_examples_of_every_kind():
    tags = {e.tag for e in EXAMPLES if not e.invalid}
    assert mt.MODEL_CONFIGS <= tags, mt.MODEL_CONFIGS - tags
    assert {mt.OCI_MANIFEST, mt.OCI_INDEX, f"annotation:{mt.ANNOTATION_FILE_METADATA}"} <= tags
    manifests = [e for e in EXAMPLES if e.tag == mt.OCI_MANIFEST and not e.invalid]
    cfgs = {e.doc["config"]["mediaType"] for e in manifests}
    assert {mt.DOCKER_CONFIG_V01, mt.DOCKER_CONFIG_V02, mt.CNCF_CONFIG, mt.CNAI_CONFIG} <= cfgs
    # An older Docker manifest without any annotation.
    assert any(e.doc["config"]["mediaType"] == mt.DOCKER_CONFIG_V01
               and all("annotations" not in layer for layer in e.doc["layers"]) for e in manifests)
    assert any(e.invalid for e in EXAMPLES) and any(e.written for e in EXAMPLES)


@pytest.mark.parametrize("ex", EXAMPLES, ids=lambda e: e.id)
def test_example(ex: Example):
    findings = findings_of(ex)
    if ex.invalid:
        assert findings, f"{ex.id} is tagged invalid but passes"
    else:
        assert findings == [], f"{ex.id} fails: {findings}"
        if ex.written:
            assert findings_of(ex, written=False) == []  # a written example is also a valid read example


def _metadata_values(manifest):
    for i, layer in enumerate(manifest.get("layers", [])):
        for key in mt.FILE_METADATA_KEYS:
            if key in layer.get("annotations", {}):
                yield i, layer, layer["annotations"][key]


@pytest.mark.parametrize("ex", [e for e in EXAMPLES if e.tag == mt.OCI_MANIFEST and not e.invalid],
                         ids=lambda e: e.id)
def test_manifest_example_annotations_decode(ex: Example):
    for i, layer, text in _metadata_values(ex.doc):
        value = json.loads(text)
        assert schemas.validate(value, schemas.FILE_METADATA) == [], f"layer {i}"
        assert value["size"] == layer["size"], f"layer {i}: metadata size differs from layer size"
        # Compact serialization, keys in the specified order (spec/annotations.md#3-file-metadata).
        assert text == json.dumps(value, separators=(",", ":")), f"layer {i}"
        assert list(value) == ["name", "mode", "uid", "gid", "size", "mtime", "typeflag"]


def _pairs():
    """(config example, manifest example) pairs whose diff IDs are the manifest's layer digests."""
    configs = [e for e in EXAMPLES if e.tag in mt.MODEL_CONFIGS and not e.invalid]
    manifests = [e for e in EXAMPLES if e.tag == mt.OCI_MANIFEST and not e.invalid]
    for c in configs:
        ids = c.doc.get("rootfs", {}).get("diff_ids") or c.doc.get("modelfs", {}).get("diffIds")
        for m in manifests:
            if [layer["digest"] for layer in m.doc["layers"]] == ids:
                yield c, m


def test_config_and_manifest_examples_agree():
    paired = {}
    for c, m in _pairs():
        paired.setdefault(c.id, (c, set()))[1].add(m.doc["config"]["mediaType"])
    assert len(paired) >= 3  # GGUF v0.1, safetensors v0.2, ModelPack
    for c, config_types in paired.values():
        assert c.tag in config_types, f"{c.id}: no manifest example with its layers has config type {c.tag}"
