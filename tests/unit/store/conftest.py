from __future__ import annotations

import pytest
from store_helpers import put_model

from mdl.store import LayoutStore


@pytest.fixture
def store(tmp_path) -> LayoutStore:
    return LayoutStore(tmp_path / "store")


@pytest.fixture
def model_factory(store):
    return lambda *layers, **kw: put_model(store, *layers, **kw)
