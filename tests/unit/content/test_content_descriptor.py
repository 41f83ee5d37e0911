"""Descriptors and manifests: canonical bytes, byte-keeping parse, digest checks."""

from __future__ import annotations

import hashlib
import json

import pytest

from mdl.content.descriptor import MAX_MANIFEST_SIZE, Descriptor, Manifest
from mdl.content.digest import InvalidDigestError
from mdl.errors import DigestMismatchError, SchemaViolationError
from mdl.spec import mediatypes as mt


def d(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


CONFIG = Descriptor(mt.DOCKER_CONFIG_V01, d(b"config"), 6)
LAYERS = [
    Descriptor(mt.GGUF, d(b"weights"), 7, {mt.ANNOTATION_FILEPATH: "m.gguf", mt.ANNOTATION_MEDIATYPE_UNTESTED: "false"}),
    Descriptor(mt.LICENSE, d(b"license"), 7),
]


def test_descriptor_to_dict_key_order_and_omissions():
    desc = Descriptor(mt.GGUF, d(b"a"), 1, {"b": "2", "a": "1"}, artifact_type=mt.CNCF_ARTIFACT_TYPE)
    out = desc.to_dict()
    assert list(out) == ["mediaType", "artifactType", "digest", "size", "annotations"]
    assert list(out["annotations"]) == ["a", "b"]
    assert list(Descriptor(mt.GGUF, d(b"a"), 1).to_dict()) == ["mediaType", "digest", "size"]
    assert Descriptor.from_dict(out) == desc


@pytest.mark.parametrize(
    "doc, path",
    [
        ({"digest": d(b"a"), "size": 1}, "$.mediaType"),
        ({"mediaType": mt.GGUF, "digest": "sha256:12", "size": 1}, "$.digest"),
        ({"mediaType": mt.GGUF, "size": 1}, "$.digest"),
        ({"mediaType": mt.GGUF, "digest": d(b"a"), "size": -1}, "$.size"),
        ({"mediaType": mt.GGUF, "digest": d(b"a"), "size": True}, "$.size"),
        ({"mediaType": mt.GGUF, "digest": d(b"a"), "size": "1"}, "$.size"),
        ({"mediaType": mt.GGUF, "digest": d(b"a"), "size": 1, "annotations": {"a": 1}}, "$.annotations"),
        ([], "$"),
    ],
)
def test_descriptor_from_dict_names_the_bad_field(doc, path):
    with pytest.raises(SchemaViolationError) as info:
        Descriptor.from_dict(doc)
    assert info.value.findings[0][0] == path


def test_descriptor_checks_when_built():
    with pytest.raises(SchemaViolationError) as info:
        Descriptor(mt.GGUF, "sha256:nothex", 1)
    assert info.value.findings[0][0] == "$.digest"


def test_build_is_deterministic_and_canonical():
    a = Manifest.build(CONFIG, LAYERS, annotations={"z": "1", "a": "2"})
    b = Manifest.build(CONFIG, list(LAYERS), annotations={"a": "2", "z": "1"})
    assert a.raw == b.raw and a.digest == b.digest == d(a.raw)
    assert not a.raw.endswith(b"\n") and b", " not in a.raw and b": " not in a.raw
    doc = json.loads(a.raw)
    assert list(doc) == ["schemaVersion", "mediaType", "config", "layers", "annotations"]
    assert doc["mediaType"] == mt.OCI_MANIFEST
    assert list(doc["annotations"]) == ["a", "z"]
    assert a.layers == LAYERS and a.config == CONFIG


def test_build_with_artifact_type_and_subject_key_order():
    subject = Descriptor(mt.OCI_MANIFEST, d(b"subject"), 9)
    m = Manifest.build(CONFIG, LAYERS, artifact_type=mt.CNCF_ARTIFACT_TYPE, subject=subject,
                       annotations={"k": "v"})
    assert list(json.loads(m.raw)) == ["schemaVersion", "mediaType", "artifactType", "config", "layers",
                                       "subject", "annotations"]
    assert m.subject == subject and m.artifact_type == mt.CNCF_ARTIFACT_TYPE
    desc = m.descriptor()
    assert (desc.media_type, desc.digest, desc.size, desc.artifact_type) == \
        (mt.OCI_MANIFEST, m.digest, len(m.raw), mt.CNCF_ARTIFACT_TYPE)


def test_parse_round_trip_keeps_bytes():
    m = Manifest.build(CONFIG, LAYERS)
    again = Manifest.parse(m.raw, m.digest)
    assert again.raw == m.raw and again.digest == m.digest and again == m
    assert again.as_dict() == json.loads(m.raw)


def test_parse_of_non_canonical_bytes_keeps_them():
    doc = Manifest.build(CONFIG, LAYERS).as_dict()
    raw = json.dumps(doc, indent=3).encode() + b"\n"  # pretty, as another tool might write it
    m = Manifest.parse(raw)
    assert m.raw == raw
    assert m.digest == d(raw) != Manifest.build(CONFIG, LAYERS).digest
    assert m.layers == LAYERS
    assert m.descriptor().size == len(raw)


def test_parse_checks_expected_digest():
    m = Manifest.build(CONFIG, LAYERS)
    tampered = m.raw.replace(b'"size":7', b'"size":8', 1)
    with pytest.raises(DigestMismatchError) as info:
        Manifest.parse(tampered, m.digest)
    assert info.value.expected == m.digest and info.value.actual == d(tampered)
    with pytest.raises(InvalidDigestError):
        Manifest.parse(m.raw, "sha256:short")


@pytest.mark.parametrize(
    "raw, path",
    [
        (b"not json", "$"),
        (b"[]", "$"),
        (b'{"schemaVersion":1,"config":{"mediaType":"x","digest":"%s","size":1},"layers":[]}', "$.schemaVersion"),
        (b'{"schemaVersion":2,"layers":[]}', "$.config"),
        (b'{"schemaVersion":2,"config":{"mediaType":"x","digest":"%s","size":1}}', "$.layers"),
        (b'{"schemaVersion":2,"config":{"mediaType":"x","digest":"%s","size":1},'
         b'"layers":[{"mediaType":"y","digest":"sha256:00","size":1}]}', "$.layers[0].digest"),
        (b'{"schemaVersion":2,"schemaVersion":2,"config":{"mediaType":"x","digest":"%s","size":1},"layers":[]}',
         "$"),
    ],
)
def test_parse_rejects_bad_shapes(raw, path):
    raw = raw.replace(b"%s", d(b"c").encode())
    with pytest.raises(SchemaViolationError) as info:
        Manifest.parse(raw)
    assert info.value.findings[0][0] == path


def test_parse_rejects_an_index():
    raw = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}).encode()
    with pytest.raises(SchemaViolationError) as info:
        Manifest.parse(raw)
    assert ("$.mediaType", "an image index, not a manifest") in info.value.findings


def test_parse_refuses_over_4_mib():
    m = Manifest.build(CONFIG, LAYERS)
    raw = m.raw[:-1] + b" " * MAX_MANIFEST_SIZE + b"}"
    with pytest.raises(SchemaViolationError) as info:
        Manifest.parse(raw)
    assert "limit" in info.value.findings[0][1]
