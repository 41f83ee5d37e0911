"""`mdl ps`: the models a running `mdl serve` has loaded (`GET /engines/ps`)."""

from __future__ import annotations

from ..formats.units import format_binary_size
from .common import JSON_OPTION, print_json, print_table
from .runner_client import RunnerClient


def command(json_output: bool = JSON_OPTION) -> None:
    """Show the models the running server has loaded: mode, memory, worker, last use, keep-alive."""
    rows = RunnerClient().get("/engines/ps")
    if json_output:
        print_json(rows)
        return
    print_table(["MODEL", "MODE", "MEMORY", "PID", "CONTEXT", "IN FLIGHT", "LAST USED", "UNLOADS"], [
        [r["model_name"], r["mode"], format_binary_size(int(r.get("memory") or 0)), str(r.get("pid") or "-"),
         str(r.get("context_size") or "-"), str(r["in_flight"] + r.get("waiting", 0)), _last_used(r), _until(r)]
        for r in rows])


def _last_used(row: dict) -> str:
    if row.get("loading"):
        return "loading"
    if row.get("in_use"):
        return "now"
    return f"{duration_words(row.get('idle_seconds') or 0)} ago"


def _until(row: dict) -> str:
    keep = row.get("keep_alive")
    if keep == "never":
        return "never"
    if row.get("in_use") or row.get("loading") or row.get("idle_seconds") is None:
        return f"{keep} after use"
    return f"when idle {keep}"


def duration_words(seconds: float) -> str:
    """`12 seconds`, `3 minutes`, `2 hours`: how long, as `docker model ps` says it."""
    seconds = int(seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n > 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"
