"""Our ModelPack reader schema accepts everything the upstream ModelPack schema accepts.

Upstream files come from ../shared/interop/modelpack (skipped when absent). Upstream validation asserts
`format` (date-time), as our schemas do; see spec/modelpack.md#41-relation-to-the-upstream-schema.
"""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from mdl.spec import schemas


@pytest.fixture(scope="module")
def upstream(upstream_dir):
    doc = json.loads((upstream_dir / "config-schema.json").read_text())
    return Draft202012Validator(doc, format_checker=Draft202012Validator.FORMAT_CHECKER)


@pytest.fixture(scope="module")
def example(upstream_dir):
    return json.loads((upstream_dir / "config-example.json").read_text())


def test_upstream_example_validates(upstream, example):
    assert list(upstream.iter_errors(example)) == []
    assert schemas.validate(example, schemas.MODELPACK_CONFIG) == []


def _variants(example):
    minimal = {"descriptor": {}, "config": {}, "modelfs": {"type": "layers", "diffIds": ["x"]}}
    yield "minimal", minimal
    for section in ("descriptor", "config"):
        for key in example[section]:
            doc = copy.deepcopy(minimal)
            doc[section][key] = copy.deepcopy(example[section][key])
            yield f"only {section}.{key}", doc
    for key in example["config"]["capabilities"]:
        doc = copy.deepcopy(minimal)
        doc["config"]["capabilities"] = {key: example["config"]["capabilities"][key]}
        yield f"only capabilities.{key}", doc
    doc = copy.deepcopy(example)
    doc["config"]["capabilities"] = {}
    yield "empty capabilities", doc
    doc = copy.deepcopy(example)
    doc["descriptor"]["createdAt"] = "2025-01-01T00:00:00.123456+05:30"
    doc["config"]["capabilities"]["languages"] = []
    yield "offset time, no languages", doc
    doc = copy.deepcopy(example)
    doc["modelfs"]["diffIds"] = ["not-a-digest"]
    yield "free-text diff id", doc
    doc = copy.deepcopy(example)
    doc["config"]["capabilities"]["inputTypes"] = ["text", "image", "audio", "video", "embedding", "other"]
    yield "every modality", doc


def test_upstream_valid_variants_validate(upstream, example):
    count = 0
    for label, doc in _variants(example):
        assert list(upstream.iter_errors(doc)) == [], f"variant {label!r} is not upstream-valid"
        assert schemas.validate(doc, schemas.MODELPACK_CONFIG) == [], label
        count += 1
    assert count > 25


def test_upstream_invalid_documents_are_refused_too(upstream, example):
    # Our closed objects match upstream's: what upstream refuses for an unknown key, we refuse at the same place.
    for path, doc in (
        ("$", {**example, "extra": 1}),
        ("$.descriptor", {**example, "descriptor": {**example["descriptor"], "created": "2025-01-01T00:00:00Z"}}),
        ("$.config", {**example, "config": {**example["config"], "parameters": "8B"}}),
        ("$.modelfs", {**example, "modelfs": {**example["modelfs"], "extra": []}}),
    ):
        assert list(upstream.iter_errors(doc)), path
        findings = schemas.validate(doc, schemas.MODELPACK_CONFIG)
        assert (path, "additionalProperties") in {(f.path, f.keyword) for f in findings}, findings


# Hypothesis: documents shaped like upstream configs, kept when upstream accepts them. Each field is
# mostly valid, with a rare invalid value, so the upstream filter decides at the boundary without
# discarding most inputs.
_text = st.text(max_size=12)
_GOOD_TIMES = ["2025-01-01T00:00:00Z", "2024-05-21T12:30:45.5+02:00", "1999-12-31T23:59:59-08:00",
               "2025-02-28t10:00:00z"]
_time = st.sampled_from(_GOOD_TIMES * 5 + ["not a time"])
_modality = st.sampled_from(["text", "image", "audio", "video", "embedding", "other"] * 3 + ["smell"])


def _optional(d):
    return st.fixed_dictionaries({}, optional=d)


_capabilities = _optional({
    "inputTypes": st.lists(_modality, max_size=3),
    "outputTypes": st.lists(_modality, max_size=3),
    "knowledgeCutoff": _time,
    "reasoning": st.booleans(),
    "toolUsage": st.booleans(),
    "reward": st.sampled_from([True, False] * 5 + ["yes"]),
    "languages": st.lists(st.sampled_from(["en", "zh", "fr", "de", "ja", "ko", "es", "EN"]), max_size=3),
})
_documents = st.fixed_dictionaries(
    {
        "descriptor": _optional({
            "createdAt": _time, "authors": st.lists(_text, max_size=2), "vendor": _text, "family": _text,
            "name": _text, "version": _text, "title": _text, "description": _text, "docURL": _text,
            "sourceURL": _text, "datasetsURL": st.lists(_text, max_size=2), "revision": _text,
            "licenses": st.lists(_text, max_size=2),
        }),
        "config": _optional({
            "architecture": _text, "format": _text, "paramSize": _text, "precision": _text,
            "quantization": _text, "capabilities": _capabilities,
        }),
        "modelfs": st.fixed_dictionaries(
            {"type": st.sampled_from(["layers"] * 10 + ["rootfs"]),
             "diffIds": st.lists(st.one_of(_text, st.just("sha256:" + "a" * 64)), min_size=1, max_size=3)}),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_documents)
def test_generated_upstream_valid_documents_validate(upstream, doc):
    # Keep only what upstream accepts; Hypothesis fails the test (filter_too_much) if that is too rare.
    assume(not list(upstream.iter_errors(doc)))
    assert schemas.validate(doc, schemas.MODELPACK_CONFIG) == []


def test_written_profile_output_is_upstream_valid(upstream):
    doc = {
        "descriptor": {"createdAt": "2025-06-01T00:00:00Z", "family": "llama"},
        "config": {"architecture": "llama", "format": "gguf", "paramSize": "183", "quantization": "Unknown"},
        "modelfs": {"type": "layers", "diffIds": ["sha256:" + "ab" * 32]},
    }
    assert schemas.validate(doc, schemas.MODELPACK_CONFIG_WRITTEN) == []
    assert list(upstream.iter_errors(doc)) == []


def test_v007_embedding_boolean_is_read_not_written(upstream, example):
    # ModelPack v0.0.7's Go types have capabilities.embedding; upstream main removed it for the modality.
    doc = copy.deepcopy(example)
    doc["config"]["capabilities"]["embedding"] = True
    assert [e.validator for e in upstream.iter_errors(doc)] == ["additionalProperties"]
    assert schemas.validate(doc, schemas.MODELPACK_CONFIG) == []
    written = {"descriptor": {"createdAt": "2025-06-01T00:00:00Z"},
               "config": {"format": "safetensors", "capabilities": {"outputTypes": ["embedding"], "languages": ["en"]}},
               "modelfs": {"type": "layers", "diffIds": ["sha256:" + "ab" * 32]}}
    assert schemas.validate(written, schemas.MODELPACK_CONFIG_WRITTEN) == [] and not list(upstream.iter_errors(written))
    written["config"]["capabilities"]["embedding"] = True
    assert [(f.path, f.keyword) for f in schemas.validate(written, schemas.MODELPACK_CONFIG_WRITTEN)] == \
        [("$.config.capabilities", "not")]


_written_capabilities = _optional({
    "inputTypes": st.lists(_modality, max_size=3),
    "outputTypes": st.lists(_modality, max_size=3),
    "knowledgeCutoff": _time,
    "reasoning": st.booleans(),
    "toolUsage": st.booleans(),
    "reward": st.booleans(),
    "languages": st.lists(st.sampled_from(["en", "zh", "fr", "EN", "eng"]), max_size=3),
    "embedding": st.booleans(),
})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(capabilities=_written_capabilities, created=_time)
def test_written_profile_documents_are_upstream_valid(upstream, capabilities, created):
    # The written profile follows upstream main: whatever it accepts, upstream accepts.
    doc = {"descriptor": {"createdAt": created, "family": "llama"},
           "config": {"format": "gguf", "paramSize": "183", "capabilities": capabilities},
           "modelfs": {"type": "layers", "diffIds": ["sha256:" + "ab" * 32]}}
    assume(schemas.validate(doc, schemas.MODELPACK_CONFIG_WRITTEN) == [])
    assert list(upstream.iter_errors(doc)) == []
