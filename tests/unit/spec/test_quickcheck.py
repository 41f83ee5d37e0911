"""The quick schema check is sound: whatever it accepts, jsonschema accepts (spec/quickcheck.py).

Compared on every document of the conformance cases and the spec's examples, against every schema,
and on seeded mutations of the valid ones; and it must accept the valid ones, or it saves nothing.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest

from mdl.spec import quickcheck, schemas
from mdl.spec.quickcheck import Compiler, UnsupportedSchema, accepts, json_equal

from tests.unit.spec.test_examples import EXAMPLES

REPO = Path(__file__).resolve().parents[3]
NAMES = sorted(p.name.removesuffix(".schema.json") for p in (REPO / "schemas").glob("*.schema.json"))


def _corpus() -> list:
    docs = []

    def collect(x):
        if isinstance(x, dict):
            docs.extend(x[k] for k in ("document", "companion") if k in x)
            for v in x.values():
                collect(v)
        elif isinstance(x, list):
            for v in x:
                collect(v)

    for path in sorted((REPO / "conformance" / "artifacts").glob("*.json")):
        case_file = json.loads(path.read_text())
        docs.append(case_file)  # itself a document of the conformance-case schema
        collect(case_file)
    docs.extend(ex.doc for ex in EXAMPLES)
    docs.append(json.loads((REPO / "schemas" / "media-types.json").read_text()))
    return docs


CORPUS = _corpus()


def jsonschema_valid(doc, name: str) -> bool:
    return schemas._validator(name).is_valid(doc)


@pytest.mark.parametrize("name", NAMES)
def test_every_schema_compiles(name):
    assert schemas._quick_check(name) is not None


@pytest.mark.parametrize("name", NAMES)
def test_agrees_with_jsonschema_on_every_corpus_document(name):
    check = schemas._quick_check(name)
    verdicts = [(accepts(check, doc), jsonschema_valid(doc, name)) for doc in CORPUS]
    accepted_invalid = [doc for doc, (quick, full) in zip(CORPUS, verdicts) if quick and not full]
    assert not accepted_invalid
    # Complete on these: no corpus document uses a `uri` or a lower-case date-time.
    declined_valid = [doc for doc, (quick, full) in zip(CORPUS, verdicts) if full and not quick]
    assert not declined_valid


# Values a mutation puts in: each JSON type, edge numbers, strings near the schemas' patterns.
VALUES = [None, True, False, 0, 1, -1, 1.0, 2.5, float("nan"), 2**31, "", "x", "gguf", "safetensors",
          "sha256:" + "a" * 64, "sha256:" + "A" * 64, "2025-06-01T00:00:00Z", "2025-02-30T00:00:00Z",
          "2025-06-01t00:00:00z", "application/vnd.docker.ai.gguf.v3", "http://example.com/x", [], [1], {}, {"a": 1}]


def _paths(x, prefix=()):
    yield prefix
    items = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else ()
    for k, v in items:
        yield from _paths(v, prefix + (k,))


def mutate(doc, rng: random.Random):
    """One to three random edits: replace a value, drop a member, add one, grow a list, cut a string,
    or copy one part of the document over another."""
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = rng.choice(paths)
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        key, op = path[-1], rng.randrange(6)
        if op == 0:
            parent[key] = copy.deepcopy(rng.choice(VALUES))
        elif op == 1:
            del parent[key]
        elif op == 2 and isinstance(parent, dict):
            parent[rng.choice(["extra", "size", "digest", "format", "mediaType"])] = copy.deepcopy(rng.choice(VALUES))
        elif op == 3 and isinstance(parent[key], list):
            parent[key].append(copy.deepcopy(rng.choice(parent[key] or VALUES)))
        elif op == 4 and isinstance(parent[key], str):
            parent[key] = parent[key][:rng.randrange(len(parent[key]) + 1)]
        elif op == 5:
            source = doc
            for k in rng.choice(paths):
                source = source[k]
            if source is not parent:
                parent[key] = copy.deepcopy(source)
    return doc


@pytest.mark.parametrize("name", NAMES)
def test_never_accepts_a_mutated_document_jsonschema_refuses(name):
    rng = random.Random(f"quickcheck-{name}")
    check = schemas._quick_check(name)
    valid = [doc for doc in CORPUS if jsonschema_valid(doc, name)]
    if not valid:
        pytest.skip(f"no corpus document is a valid {name}")
    refused = 0
    for _ in range(150):
        doc = mutate(rng.choice(valid), rng)
        if not jsonschema_valid(doc, name):
            refused += 1
            assert not accepts(check, doc), json.dumps(doc)[:500]
    assert refused > 0  # the mutations do break documents


def test_json_equality_is_jsonschemas():
    assert json_equal(1, 1.0) and json_equal([1, {"a": 2}], [1.0, {"a": 2.0}])
    assert not json_equal(True, 1) and not json_equal(False, 0) and not json_equal([True], [1])
    assert not json_equal({"a": 1}, {"a": 1, "b": 2}) and not json_equal("1", 1) and not json_equal([], {})


def test_declines_documents_holding_other_python_types():
    check = schemas._quick_check(schemas.FILE_METADATA)
    good = {"name": "m.gguf", "mode": 420, "uid": 0, "gid": 0, "size": 10, "mtime": "2025-06-01T00:00:00Z",
            "typeflag": 48}
    assert accepts(check, good)

    class Name(str):
        pass

    assert not accepts(check, {**good, "name": Name("m.gguf")})
    assert not accepts(check, {**good, "extra": ("a", "b")})
    assert schemas.validate({**good, "name": Name("m.gguf")}, schemas.FILE_METADATA) == []  # jsonschema decides


@pytest.mark.parametrize("value, quick", [("2025-06-01T00:00:00Z", True), ("2024-02-29T23:59:59.5+05:30", True),
                                          ("2025-06-01t00:00:00z", False), ("2025-02-30T00:00:00Z", False),
                                          ("2025-06-01T00:00:60Z", False)])
def test_date_time_accepts_the_plain_shape_and_leaves_the_rest_to_jsonschema(value, quick):
    check = Compiler({"x": {"type": "string", "format": "date-time"}}.__getitem__).check("x")
    assert accepts(check, value) is quick
    assert quickcheck._date_time(7)  # formats constrain strings only


def test_uri_is_left_to_jsonschema():
    manifest = json.loads((REPO / "conformance" / "artifacts" / "docker-manifest.json").read_text())
    doc = next(t["document"] for case in manifest for t in case["tests"] if t.get("valid", True) and
               jsonschema_valid(t["document"], schemas.DOCKER_MANIFEST))
    doc = copy.deepcopy(doc)
    doc["layers"][0]["urls"] = ["https://example.com/blob"]
    assert not accepts(schemas._quick_check(schemas.DOCKER_MANIFEST), doc)
    assert schemas.validate(doc, schemas.DOCKER_MANIFEST) == []  # jsonschema decides, and accepts it


@pytest.mark.parametrize("schema", [
    {"uniqueItems": True}, {"format": "email"}, {"type": "decimal"}, {"items": [{"type": "string"}]},
    {"$ref": "#/$defs/a", "$defs": {"a": {"x-custom": 1}}}, {"properties": {"a": {"$id": "https://elsewhere/"}}},
    {"$ref": "#/$defs/missing"}, {"$ref": "https://json-schema.org/draft/2020-12/schema"},
])
def test_refuses_to_compile_what_it_does_not_implement(schema):
    with pytest.raises(UnsupportedSchema):
        Compiler({"https://t/s": schema}.__getitem__).check("https://t/s")


def test_a_schema_may_refer_to_itself():
    tree = {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#"}}},
            "required": ["children"]}
    check = Compiler({"https://t/tree": tree}.__getitem__).check("https://t/tree")
    assert accepts(check, {"children": [{"children": []}]})
    assert not check({"children": [{"kids": []}]})
