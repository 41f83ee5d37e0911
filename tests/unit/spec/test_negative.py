"""Targeted refusals: each document breaks one rule and must fail at the stated path with the stated keyword."""

from __future__ import annotations

import copy
import json

import pytest

from mdl.spec import mediatypes as mt
from mdl.spec import schemas

D1 = "sha256:" + "1c" * 32
D2 = "sha256:" + "2d" * 32
D3 = "sha256:" + "3e" * 32
META = json.dumps({"name": "m.gguf", "mode": 420, "uid": 0, "gid": 0, "size": 10,
                   "mtime": "2025-06-01T00:00:00Z", "typeflag": 48}, separators=(",", ":"))


def docker_config():
    return {
        "config": {"format": "gguf", "quantization": "MOSTLY_Q4_K_M", "parameters": "361.82M",
                   "architecture": "llama", "size": "256.35MiB", "gguf": {"a": "1"}, "context_size": 2048},
        "descriptor": {"created": "2025-06-01T00:00:00Z"},
        "rootfs": {"type": "rootfs", "diff_ids": [D1]},
    }


def layer(media_type, digest=D1, **annotations):
    out = {"mediaType": media_type, "digest": digest, "size": 10}
    if annotations:
        out["annotations"] = annotations
    return out


def docker_manifest(config_type=mt.DOCKER_CONFIG_V01, layers=None):
    return {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": config_type, "digest": D3, "size": 100},
        "layers": layers if layers is not None else [
            layer(mt.GGUF, **{mt.ANNOTATION_FILEPATH: "m.gguf", mt.ANNOTATION_FILE_METADATA: META,
                              mt.ANNOTATION_MEDIATYPE_UNTESTED: "false"})],
    }


def modelpack_config():
    return {"descriptor": {"createdAt": "2025-06-01T00:00:00Z"},
            "config": {"format": "gguf", "paramSize": "183"},
            "modelfs": {"type": "layers", "diffIds": [D1]}}


def modelpack_manifest():
    return {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": mt.CNCF_ARTIFACT_TYPE,
        "config": {"mediaType": mt.CNCF_CONFIG, "digest": D3, "size": 100},
        "layers": [layer(mt.CNCF_WEIGHT_RAW, **{mt.ANNOTATION_FILEPATH: "m.gguf"})],
    }


def findings(doc, name):
    return {(f.path, f.keyword) for f in schemas.validate(doc, name)}


# The baselines pass, so every failure below comes from the one change each case makes.
@pytest.mark.parametrize("doc, name", [
    (docker_config(), schemas.DOCKER_CONFIG),
    (docker_config(), schemas.DOCKER_CONFIG_WRITTEN),
    (docker_manifest(), schemas.DOCKER_MANIFEST),
    (docker_manifest(mt.DOCKER_CONFIG_V02), schemas.DOCKER_MANIFEST),
    (modelpack_config(), schemas.MODELPACK_CONFIG),
    (modelpack_config(), schemas.MODELPACK_CONFIG_WRITTEN),
    (modelpack_manifest(), schemas.MODELPACK_MANIFEST),
    (docker_manifest(), schemas.OCI_MANIFEST),
    (json.loads(META), schemas.FILE_METADATA),
])
def test_baselines_pass(doc, name):
    assert schemas.validate(doc, name) == []


def edit(doc, fn):
    doc = copy.deepcopy(doc)
    fn(doc)
    return doc


DOCKER_CONFIG_CASES = [
    ("createdAt", lambda d: d["descriptor"].update(createdAt="2025-06-01T00:00:00Z"),
     "$.descriptor.createdAt", "not"),
    ("paramSize", lambda d: d["config"].update(paramSize="183"), "$.config.paramSize", "not"),
    ("modelfs", lambda d: d.update(modelfs={"type": "layers", "diffIds": [D1]}), "$.modelfs", "not"),
    ("bad diff id", lambda d: d["rootfs"].update(diff_ids=["sha256:" + "A" * 64]), "$.rootfs.diff_ids[0]", "pattern"),
    ("sha512 diff id", lambda d: d["rootfs"].update(diff_ids=["sha512:" + "a" * 128]), "$.rootfs.diff_ids[0]", "pattern"),
    ("rootfs type", lambda d: d["rootfs"].update(type="layers"), "$.rootfs.type", "const"),
    ("no rootfs", lambda d: d.pop("rootfs"), "$", "required"),
    ("context 0", lambda d: d["config"].update(context_size=0), "$.config.context_size", "minimum"),
    ("context int32", lambda d: d["config"].update(context_size=2**31), "$.config.context_size", "maximum"),
    ("context text", lambda d: d["config"].update(context_size="2048"), "$.config.context_size", "type"),
    ("gguf value", lambda d: d["config"]["gguf"].update(n=5), "$.config.gguf.n", "type"),
    ("format", lambda d: d["config"].update(format="onnx"), "$.config.format", "enum"),
    ("created", lambda d: d["descriptor"].update(created="yesterday"), "$.descriptor.created", "format"),
]


@pytest.mark.parametrize("label, change, path, keyword", DOCKER_CONFIG_CASES, ids=[c[0] for c in DOCKER_CONFIG_CASES])
def test_docker_config_reader_refuses(label, change, path, keyword):
    assert (path, keyword) in findings(edit(docker_config(), change), schemas.DOCKER_CONFIG)


@pytest.mark.parametrize("change", [
    lambda d: d["config"].update(parameters="361.82 M", size="256.35 MiB", quantization="IQ2_XXS/Q4_K_M"),
    lambda d: d["config"].update(format="diffusers"),
    lambda d: d.pop("descriptor"),
    lambda d: d.update(config={}),
    lambda d: d["config"].update(size="n/a", future_field={"x": 1}),
])
def test_docker_config_reader_accepts_old_spellings(change):
    assert schemas.validate(edit(docker_config(), change), schemas.DOCKER_CONFIG) == []


WRITTEN_CASES = [
    ("space in parameters", lambda d: d["config"].update(parameters="361.82 M"), "$.config.parameters", "pattern"),
    ("three decimals", lambda d: d["config"].update(parameters="1.505B"), "$.config.parameters", "pattern"),
    ("space in size", lambda d: d["config"].update(size="256.35 MiB"), "$.config.size", "pattern"),
    ("decimal size for gguf", lambda d: d["config"].update(size="268.80MB"), "$.config.size", "pattern"),
    ("binary size for safetensors", lambda d: d["config"].update(format="safetensors", size="256.35MiB"),
     "$.config.size", "pattern"),
    ("one decimal for safetensors", lambda d: d["config"].update(format="safetensors", size="695.3MB"),
     "$.config.size", "pattern"),
    ("diffusers alias", lambda d: d["config"].update(format="diffusers"), "$.config.format", "enum"),
    ("no created", lambda d: d["descriptor"].pop("created"), "$.descriptor", "required"),
    ("empty diff ids", lambda d: d["rootfs"].update(diff_ids=[]), "$.rootfs.diff_ids", "minItems"),
    ("unknown key", lambda d: d["config"].update(extra="x"), "$.config", "additionalProperties"),
    ("no format", lambda d: d["config"].pop("format"), "$.config", "required"),
    ("dduf architecture", lambda d: d["config"].update(format="dduf", size="2.31GB", architecture="llama",
                                                       diffusers={"layout": "dduf", "dduf_file": "x.dduf"}),
     "$.config.architecture", "const"),
    ("dduf layout", lambda d: d["config"].update(format="dduf", size="2.31GB", architecture="diffusers",
                                                 diffusers={"layout": "dir", "dduf_file": "x.dduf"}),
     "$.config.diffusers.layout", "const"),
]


@pytest.mark.parametrize("label, change, path, keyword", WRITTEN_CASES, ids=[c[0] for c in WRITTEN_CASES])
def test_docker_config_written_refuses(label, change, path, keyword):
    doc = edit(docker_config(), change)
    assert (path, keyword) in findings(doc, schemas.DOCKER_CONFIG_WRITTEN)


@pytest.mark.parametrize("fmt, size, parameters", [
    ("gguf", "864B", "183"), ("gguf", "1023B", "1.5B"), ("gguf", "4GiB", "7B"), ("gguf", "1.02KiB", "999"),
    ("safetensors", "864.00B", "183.00"), ("safetensors", "695.28MB", "361.82M"), ("dduf", "0.00B", "1T"),
])
def test_docker_config_written_accepts_the_specified_spellings(fmt, size, parameters):
    def change(d):
        d["config"].update(format=fmt, size=size, parameters=parameters)
        if fmt == "dduf":
            d["config"].update(architecture="diffusers", diffusers={"layout": "dduf", "dduf_file": "x.dduf"})
    assert schemas.validate(edit(docker_config(), change), schemas.DOCKER_CONFIG_WRITTEN) == []


FP = mt.ANNOTATION_FILEPATH
MANIFEST_CASES = [
    ("two chat templates", lambda d: d["layers"].extend([layer(mt.CHAT_TEMPLATE, D2), layer(mt.CHAT_TEMPLATE, D3)]),
     "$.layers", "maxContains"),
    ("two projectors", lambda d: d["layers"].extend([layer(mt.MMPROJ, D2), layer(mt.MMPROJ, D3)]),
     "$.layers", "maxContains"),
    ("filepath ..", lambda d: d["layers"][0]["annotations"].update({FP: "../x"}),
     f"$.layers[0].annotations.{FP}", "pattern"),
    ("filepath inner ..", lambda d: d["layers"][0]["annotations"].update({FP: "a/../../x"}),
     f"$.layers[0].annotations.{FP}", "pattern"),
    ("absolute filepath", lambda d: d["layers"][0]["annotations"].update({FP: "/etc/passwd"}),
     f"$.layers[0].annotations.{FP}", "pattern"),
    ("backslash", lambda d: d["layers"][0]["annotations"].update({FP: "a\\b"}),
     f"$.layers[0].annotations.{FP}", "pattern"),
    ("NUL", lambda d: d["layers"][0]["annotations"].update({FP: "a\x00b"}),
     f"$.layers[0].annotations.{FP}", "pattern"),
    ("empty filepath", lambda d: d["layers"][0]["annotations"].update({FP: ""}),
     f"$.layers[0].annotations.{FP}", "pattern"),
    ("untested yes", lambda d: d["layers"][0]["annotations"].update({mt.ANNOTATION_MEDIATYPE_UNTESTED: "yes"}),
     f"$.layers[0].annotations.{mt.ANNOTATION_MEDIATYPE_UNTESTED}", "enum"),
    ("metadata not a string", lambda d: d["layers"][0]["annotations"].update({mt.ANNOTATION_FILE_METADATA: {}}),
     f"$.layers[0].annotations.{mt.ANNOTATION_FILE_METADATA}", "type"),
    ("draft layer type", lambda d: d["layers"].append(layer(mt.mt("docker-gguf-mmproj-draft"), D2)),
     "$.layers[1].mediaType", "enum"),
    ("modelpack layer type", lambda d: d["layers"].append(layer(mt.CNCF_WEIGHT_RAW, D2)),
     "$.layers[1].mediaType", "enum"),
    ("model.file under v0.1", lambda d: d["layers"].append(layer(mt.MODEL_FILE, D2)),
     "$.layers[1].mediaType", "enum"),
    ("artifactType", lambda d: d.update(artifactType=mt.CNCF_ARTIFACT_TYPE), "$.artifactType", "not"),
    ("no mediaType", lambda d: d.pop("mediaType"), "$", "required"),
    ("docker image type", lambda d: d.update(mediaType=mt.DOCKER_MANIFEST_V2), "$.mediaType", "const"),
    ("config type", lambda d: d["config"].update(mediaType=mt.CNCF_CONFIG), "$.config.mediaType", "enum"),
    ("sha512 layer", lambda d: d["layers"][0].update(digest="sha512:" + "a" * 128), "$.layers[0].digest", "pattern"),
    ("negative size", lambda d: d["layers"][0].update(size=-1), "$.layers[0].size", "minimum"),
    ("no layers", lambda d: d.update(layers=[]), "$.layers", "minItems"),
    ("schemaVersion", lambda d: d.update(schemaVersion=1), "$.schemaVersion", "const"),
]


@pytest.mark.parametrize("label, change, path, keyword", MANIFEST_CASES, ids=[c[0] for c in MANIFEST_CASES])
def test_docker_manifest_refuses(label, change, path, keyword):
    assert (path, keyword) in findings(edit(docker_manifest(), change), schemas.DOCKER_MANIFEST)


def test_docker_manifest_one_template_one_projector_and_legacy_layers_pass():
    doc = docker_manifest(layers=[layer(mt.GGUF), layer(mt.LICENSE, D2), layer(mt.LICENSE, D3),
                                  layer(mt.CHAT_TEMPLATE, D2), layer(mt.MMPROJ, D3),
                                  layer(mt.SAFETENSORS, D1), layer(mt.VLLM_CONFIG_TAR, D2), layer(mt.DIR_TAR, D3)])
    assert schemas.validate(doc, schemas.DOCKER_MANIFEST) == []


def test_docker_v02_layer_needs_a_filepath():
    doc = docker_manifest(mt.DOCKER_CONFIG_V02, layers=[layer(mt.SAFETENSORS, **{FP: "model.safetensors"}),
                                                        layer(mt.MODEL_FILE, D2)])
    assert findings(doc, schemas.DOCKER_MANIFEST) == {("$.layers[1]", "required")}
    doc["layers"][1]["annotations"] = {mt.ANNOTATION_MEDIATYPE_UNTESTED: "false"}
    assert findings(doc, schemas.DOCKER_MANIFEST) == {("$.layers[1].annotations", "required")}
    doc["layers"][1]["annotations"][mt.ANNOTATION_CNAI_FILEPATH] = "tokenizer/tokenizer.json"  # not read by Docker
    assert findings(doc, schemas.DOCKER_MANIFEST) == {("$.layers[1].annotations", "required")}
    doc["layers"][1]["annotations"][FP] = "tokenizer/tokenizer.json"
    assert schemas.validate(doc, schemas.DOCKER_MANIFEST) == []


def test_docker_manifest_does_not_read_legacy_keys():
    # An org.cnai key means nothing in a Docker artifact (spec/annotations.md §1): any string is allowed.
    doc = edit(docker_manifest(), lambda d: d["layers"][0]["annotations"].update(
        {mt.ANNOTATION_CNAI_FILEPATH: "../x", mt.ANNOTATION_CNAI_FILE_METADATA: "not json"}))
    assert schemas.validate(doc, schemas.DOCKER_MANIFEST) == []


MP_MANIFEST_CASES = [
    ("no artifactType", lambda d: d.pop("artifactType"), "$", "required"),
    ("docker config", lambda d: d["config"].update(mediaType=mt.DOCKER_CONFIG_V01), "$.config.mediaType", "enum"),
    ("spelling mismatch", lambda d: d["config"].update(mediaType=mt.CNAI_CONFIG), "$.config.mediaType", "const"),
    ("legacy spelling mismatch", lambda d: d.update(artifactType=mt.CNAI_ARTIFACT_TYPE), "$.config.mediaType", "const"),
    ("docker layer", lambda d: d["layers"].append(layer(mt.GGUF, D2)), "$.layers[1].mediaType", "enum"),
    ("filepath ..", lambda d: d["layers"][0]["annotations"].update({FP: "x/.."}),
     f"$.layers[0].annotations.{FP}", "pattern"),
    ("other artifactType", lambda d: d.update(artifactType=mt.OCI_EMPTY), "$.artifactType", "enum"),
    ("legacy key filepath", lambda d: d["layers"][0]["annotations"].update({mt.ANNOTATION_CNAI_FILEPATH: "../x"}),
     f"$.layers[0].annotations.{mt.ANNOTATION_CNAI_FILEPATH}", "pattern"),
]


@pytest.mark.parametrize("label, change, path, keyword", MP_MANIFEST_CASES, ids=[c[0] for c in MP_MANIFEST_CASES])
def test_modelpack_manifest_refuses(label, change, path, keyword):
    assert (path, keyword) in findings(edit(modelpack_manifest(), change), schemas.MODELPACK_MANIFEST)


def test_modelpack_manifest_accepts_every_layer_type_and_legacy_spelling():
    layer_types = [e.media_type for e in mt.table().values() if mt.is_modelpack_layer(e.media_type)]
    assert len(layer_types) == 42  # 5 kinds x 4 encodings x 2 spellings, and Docker's gguf and safetensors weights
    doc = modelpack_manifest()
    doc["layers"] = [layer(t) for t in layer_types]  # compressed weights included: reader profile
    assert schemas.validate(doc, schemas.MODELPACK_MANIFEST) == []
    doc.update(artifactType=mt.CNAI_ARTIFACT_TYPE)
    doc["config"]["mediaType"] = mt.CNAI_CONFIG
    assert schemas.validate(doc, schemas.MODELPACK_MANIFEST) == []


MP_CONFIG_CASES = [
    (schemas.MODELPACK_CONFIG, "both diff id spellings",
     lambda d: d["modelfs"].update(diff_ids=[D1]), "$.modelfs", "oneOf"),
    (schemas.MODELPACK_CONFIG, "no diff ids", lambda d: d["modelfs"].pop("diffIds"), "$.modelfs", "required"),
    (schemas.MODELPACK_CONFIG, "Docker created", lambda d: d["descriptor"].update(created="2025-06-01T00:00:00Z"),
     "$.descriptor", "additionalProperties"),
    (schemas.MODELPACK_CONFIG, "modality", lambda d: d["config"].update(capabilities={"inputTypes": ["smell"]}),
     "$.config.capabilities.inputTypes[0]", "enum"),
    (schemas.MODELPACK_CONFIG, "language", lambda d: d["config"].update(capabilities={"languages": ["eng"]}),
     "$.config.capabilities.languages[0]", "pattern"),
    (schemas.MODELPACK_CONFIG, "empty name", lambda d: d["descriptor"].update(name=""), "$.descriptor.name", "minLength"),
    (schemas.MODELPACK_CONFIG, "modelfs type", lambda d: d["modelfs"].update(type="rootfs"), "$.modelfs.type", "const"),
    (schemas.MODELPACK_CONFIG_WRITTEN, "no createdAt", lambda d: d["descriptor"].pop("createdAt"),
     "$.descriptor", "required"),
    (schemas.MODELPACK_CONFIG_WRITTEN, "no format", lambda d: d["config"].pop("format"), "$.config", "required"),
    (schemas.MODELPACK_CONFIG_WRITTEN, "free-text diff id", lambda d: d["modelfs"].update(diffIds=["x"]),
     "$.modelfs.diffIds[0]", "pattern"),
    (schemas.MODELPACK_CONFIG_WRITTEN, "legacy diff_ids",
     lambda d: d.update(modelfs={"type": "layers", "diff_ids": [D1]}), "$.modelfs", "required"),
    (schemas.MODELPACK_CONFIG_WRITTEN, "legacy capability",
     lambda d: d["config"].update(capabilities={"tool_usage": True}), "$.config.capabilities", "not"),
    (schemas.MODELPACK_CONFIG_WRITTEN, "paramSize space", lambda d: d["config"].update(paramSize="8 B"),
     "$.config.paramSize", "pattern"),
]


@pytest.mark.parametrize("name, label, change, path, keyword", MP_CONFIG_CASES, ids=[c[1] for c in MP_CONFIG_CASES])
def test_modelpack_config_refuses(name, label, change, path, keyword):
    assert (path, keyword) in findings(edit(modelpack_config(), change), name)


def test_modelpack_reader_accepts_legacy_snake_case():
    doc = modelpack_config()
    doc["modelfs"] = {"type": "layers", "diff_ids": ["anything"]}
    doc["config"]["capabilities"] = {"input_types": ["text"], "output_types": ["text"],
                                     "knowledge_cutoff": "2024-01-01T00:00:00Z", "tool_usage": False}
    assert schemas.validate(doc, schemas.MODELPACK_CONFIG) == []


FM_CASES = [
    ("extra field", lambda d: d.update(owner="root"), "$", "additionalProperties"),
    ("missing mtime", lambda d: d.pop("mtime"), "$", "required"),
    ("typeflag 256", lambda d: d.update(typeflag=256), "$.typeflag", "maximum"),
    ("typeflag text", lambda d: d.update(typeflag="0"), "$.typeflag", "type"),
    ("negative size", lambda d: d.update(size=-1), "$.size", "minimum"),
    ("mode float", lambda d: d.update(mode=420.5), "$.mode", "type"),
    ("uid too big", lambda d: d.update(uid=2**32), "$.uid", "maximum"),
    ("mtime not RFC 3339", lambda d: d.update(mtime="2025-06-01 00:00"), "$.mtime", "pattern"),
    ("empty name", lambda d: d.update(name=""), "$.name", "minLength"),
]


@pytest.mark.parametrize("label, change, path, keyword", FM_CASES, ids=[c[0] for c in FM_CASES])
def test_file_metadata_refuses(label, change, path, keyword):
    assert (path, keyword) in findings(edit(json.loads(META), change), schemas.FILE_METADATA)


def test_oci_generic_descriptor_accepts_sha512_and_index_validates():
    doc = docker_manifest()
    doc["config"] = {"mediaType": mt.OCI_EMPTY, "digest": "sha512:" + "a" * 128, "size": 2}
    assert schemas.validate(doc, schemas.OCI_MANIFEST) == []
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
             "manifests": [{"mediaType": mt.OCI_MANIFEST, "digest": D1, "size": 1,
                            "annotations": {mt.ANNOTATION_REF_NAME: "docker.io/ai/x:latest"}}]}
    assert schemas.validate(index, schemas.OCI_INDEX) == []
    index["manifests"][0]["digest"] = "md5:abc"
    assert findings(index, schemas.OCI_INDEX) == {("$.manifests[0].digest", "pattern")}
    index["manifests"][0]["digest"] = D1
    index["mediaType"] = mt.OCI_MANIFEST
    assert findings(index, schemas.OCI_INDEX) == {("$.mediaType", "const")}
