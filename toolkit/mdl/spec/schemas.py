"""Load the project's JSON Schemas (2020-12) and validate documents against them.

Schemas are the files `schemas/*.schema.json`, each with an `$id` of the form
`https://mdl.dev/schemas/<name>.schema.json`; they may `$ref` each other by that `$id`.
Findings name the JSON path where a document fails (`$.layers[0].mediaType`), so callers and the
conformance suite can check that a document fails for the right reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

from typing import TYPE_CHECKING

from ..errors import SchemaViolationError
from . import mediatypes as mt
from . import quickcheck
from .resources import schemas_dir

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from referencing import Registry

ID_PREFIX = "https://mdl.dev/schemas/"

# Names of the schema documents (file `schemas/<name>.schema.json`).
DOCKER_CONFIG = "docker-model-config"
DOCKER_CONFIG_WRITTEN = "docker-model-config-written"
MODELPACK_CONFIG = "modelpack-config"
MODELPACK_CONFIG_WRITTEN = "modelpack-config-written"
DOCKER_MANIFEST = "docker-manifest"
MODELPACK_MANIFEST = "modelpack-manifest"
OCI_MANIFEST = "oci-manifest"
OCI_INDEX = "oci-index"
FILE_METADATA = "file-metadata"
MEDIA_TYPES = "media-types"
# What the packager checks everything it writes against (artifact.build).
WRITER_PROFILES = (DOCKER_CONFIG_WRITTEN, MODELPACK_CONFIG_WRITTEN, DOCKER_MANIFEST, MODELPACK_MANIFEST)


@dataclass(frozen=True)
class Finding:
    path: str  # JSON path, "$" for the root
    message: str
    keyword: str  # the schema keyword that failed ("enum", "required", ...)


def schema_id(name: str) -> str:
    return f"{ID_PREFIX}{name}.schema.json"


# jsonschema and referencing are imported only for a document the quick check does not accept
# (spec/quickcheck.py): ~0.1 s that a command reading or writing valid documents never needs.


@cache
def _document(uri: str) -> dict:
    """The schema document whose `$id` is `uri`."""
    if not uri.startswith(ID_PREFIX):
        raise KeyError(f"not one of mdl's schemas: {uri}")
    with open(schemas_dir() / uri.removeprefix(ID_PREFIX), "rb") as f:
        return json.load(f)


@cache
def _registry() -> Registry:
    from referencing import Registry, Resource

    resources = []
    for path in sorted(schemas_dir().glob("*.schema.json")):
        doc = _document(f"{ID_PREFIX}{path.name}")
        resources.append((doc["$id"], Resource.from_contents(doc)))
    return Registry().with_resources(resources)


@cache
def _validator(name: str) -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    resolved = _registry().get_or_retrieve(schema_id(name)).value
    return Draft202012Validator(resolved.contents, registry=_registry(),
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


@cache
def _compiler() -> quickcheck.Compiler:
    return quickcheck.Compiler(_document)


@cache
def _quick_check(name: str) -> quickcheck.Check | None:
    """The quick check of schema `name`; None if it uses a keyword the check lacks (a test keeps every
    schema compiling), and then jsonschema decides every document."""
    try:
        return _compiler().check(schema_id(name))
    except quickcheck.UnsupportedSchema:
        return None


def schema(name: str) -> dict:
    return _document(schema_id(name))


def json_path(parts) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def warm_up(*names: str) -> None:
    """Compile the checks of these schemas now (a caller with other work under way overlaps the cost)."""
    for name in names:
        _quick_check(name)


def validate(document, name: str) -> list[Finding]:
    """Every way `document` fails schema `name`, deepest cause first for each branch."""
    check = _quick_check(name)
    if check is not None and quickcheck.accepts(check, document):
        return []
    from jsonschema.exceptions import best_match

    findings = []
    for error in sorted(_validator(name).iter_errors(document), key=lambda e: list(e.absolute_path)):
        # For oneOf/anyOf failures, report the most relevant sub-error: it has the precise path.
        cause = best_match([error]) if not error.context else best_match(error.context)
        findings.append(Finding(json_path(cause.absolute_path), cause.message, str(cause.validator)))
    return findings


def check(document, name: str, what: str) -> None:
    """Raise SchemaViolationError naming `what` when `document` fails schema `name`."""
    findings = validate(document, name)
    if findings:
        raise SchemaViolationError(what, [(f.path, f.message) for f in findings])


def config_schema_for(config_media_type: str, *, written: bool = False) -> str | None:
    """The schema a config blob of this media type must pass (`written`: the stricter profile mdl writes)."""
    if config_media_type in mt.DOCKER_CONFIGS:
        return DOCKER_CONFIG_WRITTEN if written else DOCKER_CONFIG
    if config_media_type in mt.MODELPACK_CONFIGS:
        return MODELPACK_CONFIG_WRITTEN if written else MODELPACK_CONFIG
    return None


def manifest_schema_for(config_media_type: str) -> str | None:
    """The manifest profile for an artifact whose config has this media type."""
    if config_media_type in mt.DOCKER_CONFIGS:
        return DOCKER_MANIFEST
    if config_media_type in mt.MODELPACK_CONFIGS:
        return MODELPACK_MANIFEST
    return None
