"""What commands share: the store (resolved once from the environment) and output helpers."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone

import typer

from ..timestamps import parse_rfc3339
from ..store import LayoutStore

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON.")
QUIET_OPTION = typer.Option(False, "--quiet", "-q", help="Print only the result.")


def open_store() -> LayoutStore:
    return LayoutStore(LayoutStore.default_root(os.environ))


def print_json(doc) -> None:
    json.dump(doc, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    for line in [headers, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())


def short_id(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def ago(created: str | None, now: datetime | None = None) -> str:
    """'3 days ago', like `docker model ls`."""
    t = parse_rfc3339(created)
    if t is None:
        return created or ""
    seconds = int(((now or datetime.now(timezone.utc)) - t).total_seconds())
    for unit, size in (("year", 365 * 86400), ("month", 30 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "just now"
