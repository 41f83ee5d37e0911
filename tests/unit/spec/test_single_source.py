"""Media types and annotation keys are spelled once: in schemas/media-types.json.

Schemas and spec prose may spell them (they must, to be readable), but only strings of the table;
the toolkit's Python sources must not spell them at all (they use mdl.spec.mediatypes).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
MEDIA_TYPE_RE = re.compile(r"application/vnd\.[A-Za-z0-9!#$&^_.+\-]+")
ANNOTATION_RE = re.compile(r"^(?:org\.cncf\.|org\.cnai\.|org\.opencontainers\.)[a-z0-9.+-]+$")


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


def _table():
    doc = json.loads((REPO / "schemas" / "media-types.json").read_text())
    return {e["mediaType"] for e in doc["mediaTypes"]}, {e["key"] for e in doc["annotations"]}


SCHEMAS = sorted((REPO / "schemas").glob("*.schema.json"))


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda p: p.name)
def test_schema_strings_are_in_the_table(path):
    media_types, keys = _table()
    seen = 0
    for s in _strings(json.loads(path.read_text())):
        if s.startswith("application/vnd."):
            seen += 1
            assert s in media_types, f"{path.name}: {s!r} is not in media-types.json"
        elif ANNOTATION_RE.match(s):
            seen += 1
            assert s in keys, f"{path.name}: annotation key {s!r} is not in media-types.json"
        # Media types inside prose (descriptions) must be table entries too.
        for m in MEDIA_TYPE_RE.findall(s):
            assert m.rstrip(".") in media_types, f"{path.name}: {m!r} in {s!r}"


def test_the_check_sees_the_media_types_of_the_manifest_schemas():
    # Guard against a vacuous pass: the model manifest schemas do spell media types.
    media_types, _ = _table()
    for name in ("docker-manifest", "modelpack-manifest"):
        doc = json.loads((REPO / "schemas" / f"{name}.schema.json").read_text())
        assert sum(s in media_types for s in _strings(doc)) >= 10


SPEC_FILES = sorted((REPO / "spec").glob("*.md"))


def test_spec_exists():
    names = {p.name for p in SPEC_FILES}
    assert {"README.md", "media-types.md", "docker-format.md", "modelpack.md", "annotations.md",
            "references.md", "local-store.md", "runtime.md"} <= names


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.name)
def test_spec_media_types_are_in_the_table(path):
    media_types, _ = _table()
    text = path.read_text()
    # A match followed by "<" is a template (`application/vnd.cncf.model.<kind>.v1.<encoding>`), not a media type.
    found = {m.group(0).rstrip(".") for m in MEDIA_TYPE_RE.finditer(text) if text[m.end():m.end() + 1] != "<"}
    if path.name in ("docker-format.md", "modelpack.md", "media-types.md"):
        assert len(found) >= 5, f"{path.name}: the check saw no media types"
    unknown = found - media_types
    assert not unknown, f"{path.name} names media types outside the table: {sorted(unknown)}"


def test_media_types_md_lists_exactly_the_table():
    doc = json.loads((REPO / "schemas" / "media-types.json").read_text())
    text = (REPO / "spec" / "media-types.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[1].startswith("`application/"):
            rows[cells[1].strip("`")] = (cells[0].strip("`"), cells[2], cells[3], cells[4])
    expected = {e["mediaType"]: (e["id"], e["role"], e["family"], e["status"]) for e in doc["mediaTypes"]}
    assert rows == expected
    key_rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].startswith(("`org.", "`dev.")):
            key_rows[cells[1].strip("`")] = (cells[0].strip("`"), cells[2])
    assert key_rows == {e["key"]: (e["id"], e["status"]) for e in doc["annotations"]}


def test_toolkit_sources_do_not_spell_media_types():
    offenders = []
    for path in sorted((REPO / "toolkit" / "mdl").rglob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "application/vnd." in line:
                offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not offenders, "use mdl.spec.mediatypes instead:\n" + "\n".join(offenders)
