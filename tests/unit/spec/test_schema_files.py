"""Every schema file is a valid 2020-12 schema with the right $id, and loads through mdl.spec.schemas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from mdl.spec import mediatypes, schemas

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "schemas"
SCHEMA_FILES = sorted(SCHEMA_DIR.glob("*.schema.json"))
EXPECTED = {
    schemas.DOCKER_CONFIG, schemas.DOCKER_CONFIG_WRITTEN, schemas.MODELPACK_CONFIG,
    schemas.MODELPACK_CONFIG_WRITTEN, schemas.DOCKER_MANIFEST, schemas.MODELPACK_MANIFEST,
    schemas.OCI_MANIFEST, schemas.OCI_INDEX, schemas.FILE_METADATA, schemas.MEDIA_TYPES,
}


def test_every_named_schema_exists():
    names = {p.name.removesuffix(".schema.json") for p in SCHEMA_FILES}
    assert EXPECTED <= names, EXPECTED - names


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_schema_is_valid_2020_12_with_its_id(path):
    doc = json.loads(path.read_text())
    Draft202012Validator.check_schema(doc)
    name = path.name.removesuffix(".schema.json")
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"] == schemas.schema_id(name)
    assert doc.get("title") and doc.get("description")
    # It loads through the toolkit and resolves every $ref it has.
    loaded = schemas.schema(name)
    assert loaded["$id"] == doc["$id"]
    schemas.validate({}, name)  # walks refs; must not raise


def test_media_type_table_validates():
    doc = json.loads((SCHEMA_DIR / "media-types.json").read_text())
    assert schemas.validate(doc, schemas.MEDIA_TYPES) == []


def test_media_type_table_ids_and_strings_are_unique():
    doc = json.loads((SCHEMA_DIR / "media-types.json").read_text())
    ids = [e["id"] for e in doc["mediaTypes"]] + [e["id"] for e in doc["annotations"]]
    assert len(ids) == len(set(ids))
    mts = [e["mediaType"] for e in doc["mediaTypes"]]
    assert len(mts) == len(set(mts))
    keys = [e["key"] for e in doc["annotations"]]
    assert len(keys) == len(set(keys))


def test_media_type_schema_rejects_a_bad_entry():
    doc = json.loads((SCHEMA_DIR / "media-types.json").read_text())
    doc["mediaTypes"][3]["status"] = "deprecated"
    doc["mediaTypes"][5]["id"] = "Bad Id"
    findings = {(f.path, f.keyword) for f in schemas.validate(doc, schemas.MEDIA_TYPES)}
    assert findings == {("$.mediaTypes[3].status", "enum"), ("$.mediaTypes[5].id", "pattern")}


def test_schema_selection_helpers():
    assert schemas.config_schema_for(mediatypes.DOCKER_CONFIG_V01) == schemas.DOCKER_CONFIG
    assert schemas.config_schema_for(mediatypes.DOCKER_CONFIG_V02, written=True) == schemas.DOCKER_CONFIG_WRITTEN
    assert schemas.config_schema_for(mediatypes.CNAI_CONFIG) == schemas.MODELPACK_CONFIG
    assert schemas.manifest_schema_for(mediatypes.CNCF_CONFIG) == schemas.MODELPACK_MANIFEST
    assert schemas.manifest_schema_for(mediatypes.OCI_EMPTY) is None
