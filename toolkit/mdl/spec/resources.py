"""Where the schema files are: inside an installed wheel (`mdl/_schemas`) or, in a source checkout,
the top-level `schemas/` directory, which is the only place a schema is written."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


@cache
def schemas_dir() -> Path:
    installed = _PACKAGE_DIR / "_schemas"
    if installed.is_dir():
        return installed
    checkout = _PACKAGE_DIR.parent.parent / "schemas"
    if checkout.is_dir():
        return checkout
    raise RuntimeError(f"mdl's schemas are missing: looked in {installed} and {checkout}")


def load_json(name: str) -> dict:
    with open(schemas_dir() / name, "rb") as f:
        return json.load(f)
