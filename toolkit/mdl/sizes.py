"""Sizes given on the command line (`--memory-budget 8G`, `--blob-size 512MiB`), read by one rule.

The rule, as in `docker run --memory`: a bare number is bytes; a unit k, M, G or T (any case, an
optional `i` and an optional `B` after it: `8g`, `8GB`, `8GiB` are the same) multiplies by 1024,
1024², 1024³ or 1024⁴; `B` alone is bytes. A decimal point is allowed (`1.5G`); the result is rounded
down to whole bytes.
"""

from __future__ import annotations

import re
from decimal import Decimal

from .errors import UsageError

SIZE_RULE = "bytes, or with a unit k, M, G, T (powers of 1024; 8G, 8GB and 8GiB are the same)"

_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(?:([kmgt])i?)?b?\s*", re.IGNORECASE)
_POWERS = {"k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(text: str, option: str) -> int:
    """`text` in bytes by the module's rule; a UsageError naming `option` and `text` when it does not
    follow the rule or is 0. Each option checks its own minimum beyond that."""
    m = _SIZE.fullmatch(text)
    if not m:
        raise UsageError(f"invalid {option} {text!r}", f"give {SIZE_RULE}")
    unit = m.group(2)
    size = int(Decimal(m.group(1)) * (1024 ** _POWERS[unit.lower()] if unit else 1))
    if size <= 0:
        raise UsageError(f"invalid {option} {text!r}: must be positive", f"give {SIZE_RULE}")
    return size
