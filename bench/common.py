"""Helpers shared by the benchmark scripts: timing child processes and their peak memory.

Absolute times mean little on shared machines, so every script measures its baseline in the same
run and prints ratios.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"


def run_measured(argv: list[str], env: dict | None = None, cwd: Path | None = None) -> tuple[float, int]:
    """Run a command; return (wall seconds, peak RSS in bytes) of that one child."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(argv)}\n{err}")
    return wall, usage.ru_maxrss * 1024


def python_snippet(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def median(values: list[float]) -> float:
    return statistics.median(values)


def mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"
