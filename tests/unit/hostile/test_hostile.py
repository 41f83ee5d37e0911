"""Hostile input, a short run for CI: every parser gives only mdl's own errors, with bounded memory.

The properties live in `props.py`; `bench/fuzz.py` runs the same ones with many more examples.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from tests.unit.hostile.props import PROPERTIES

SHORT = settings(max_examples=120, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                        HealthCheck.filter_too_much])


@pytest.mark.parametrize("name,strategy,check", PROPERTIES, ids=[p[0] for p in PROPERTIES])
def test_hostile_input(name, strategy, check):
    SHORT(given(strategy)(check))()
