"""Where the data files are: inside an installed wheel (`mdl/_schemas`, `mdl/_spec`, `mdl/_conformance`)
or, in a source checkout, the top-level `schemas/`, `spec/` and `conformance/` directories, which are
the only places they are written."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def _data_dir(name: str) -> Path:
    installed = _PACKAGE_DIR / f"_{name}"
    if installed.is_dir():
        return installed
    checkout = _PACKAGE_DIR.parent.parent / name
    if checkout.is_dir():
        return checkout
    raise RuntimeError(f"mdl's {name} files are missing: looked in {installed} and {checkout}")


@cache
def schemas_dir() -> Path:
    return _data_dir("schemas")


@cache
def spec_dir() -> Path:
    return _data_dir("spec")


@cache
def conformance_dir() -> Path:
    return _data_dir("conformance")


def load_json(name: str) -> dict:
    with open(schemas_dir() / name, "rb") as f:
        return json.load(f)
