"""Every kind of MdlError has its row in mdl.errors.OUTCOMES (exit code, HTTP status, OpenAI error), so
a new kind cannot end as a silent exit 1 / HTTP 500; and the rows keep the codes users rely on."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import mdl
from mdl.errors import OUTCOMES, DiskFullError, MdlError, ModelNotFoundError, Outcome, outcome_of

# Modules that import these (the `serve` extra) are skipped only when it is not installed.
OPTIONAL_EXTRAS = {"llama_cpp", "starlette", "uvicorn"}


def _import_every_module() -> None:
    for info in pkgutil.walk_packages(mdl.__path__, "mdl."):
        if info.name == "mdl.__main__":  # runs the CLI
            continue
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] not in OPTIONAL_EXTRAS:
                raise


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _subclasses(sub)
    return found


def _error_classes() -> list[type]:
    _import_every_module()
    return sorted({MdlError} | _subclasses(MdlError), key=lambda c: f"{c.__module__}.{c.__qualname__}")


def test_every_error_class_has_a_row():
    missing = [f"{c.__module__}.{c.__qualname__}: {key!r}" for c in _error_classes()
               for key in {c.kind, c.outcome_kind or c.kind} if key not in OUTCOMES]
    assert not missing, "add these kinds to mdl.errors.OUTCOMES:\n" + "\n".join(missing)


def test_kinds_set_per_instance_have_rows():
    """StepFailure (conformance e2e) takes its kind as an argument: read the kinds it is raised with."""
    from mdl.conformance import e2e

    kinds = set(re.findall(r'StepFailure\(\s*"([a-z-]+)"', inspect.getsource(e2e)))
    assert kinds and kinds <= set(OUTCOMES), kinds - set(OUTCOMES)


@pytest.mark.parametrize("kind, exit_code, status, api_type, api_code", [
    ("error", 1, 500, "server_error", "error"),
    ("usage", 2, 400, "invalid_request_error", "invalid_value"),
    ("reference", 2, 400, "invalid_request_error", "invalid_model"),
    ("internal", 70, 500, "server_error", "internal"),
    ("not-found", 1, 404, "invalid_request_error", "model_not_found"),
    ("conflict", 1, 409, "invalid_request_error", "conflict"),
    ("disk-full", 1, 507, "server_error", "disk_full"),
    ("digest-mismatch", 1, 500, "server_error", "model_damaged"),
    ("invalid-request", 1, 400, "invalid_request_error", "invalid_value"),
    ("auth", 1, 401, "authentication_error", "registry_auth"),
    ("denied", 1, 403, "permission_error", "registry_denied"),
    ("unreachable", 1, 502, "server_error", "registry_unreachable"),
    ("signature", 10, 500, "server_error", "signature"),
    ("bad-signature", 11, 500, "server_error", "bad_signature"),
    ("payload-digest-mismatch", 12, 500, "server_error", "model_damaged"),
    ("key-permissions", 16, 500, "server_error", "key_permissions"),
])
def test_rows_keep_the_codes_in_use(kind, exit_code, status, api_type, api_code):
    assert OUTCOMES[kind] == Outcome(exit_code, status, api_type, api_code)


def test_an_error_ends_by_its_kind():
    assert ModelNotFoundError("ai/x").exit_code == 1
    assert DiskFullError("/tmp").outcome.http_status == 507
    assert outcome_of("no-such-kind") == OUTCOMES["error"]  # never raised: the tests above keep kinds known
