"""How many cores this process can keep busy: the CPUs it may run on, bounded by its cgroup's CPU quota.

A container started with `--cpus 2` on a 64-core host sees 64 CPUs through `os.cpu_count()` and its
affinity, but the kernel lets it run only two cores' worth of time each period; more hashing threads
than that only take turns. Go's runtime sizes GOMAXPROCS the same way. Both cgroup versions are read:
v2's `cpu.max` ("<quota> <period>" or "max ..."), v1's `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1 is
no quota), each along the process's cgroup path up to the mount, the tightest limit winning.
"""

from __future__ import annotations

import math
import os
from functools import cache
from pathlib import Path


@cache
def usable_cores() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    return max(1, min(cpus, math.ceil(quota))) if quota is not None else cpus


def cgroup_cpu_limit(proc_cgroup: str | os.PathLike = "/proc/self/cgroup",
                     mount: str | os.PathLike = "/sys/fs/cgroup") -> float | None:
    """Cores' worth of CPU time the cgroup quota allows (1.5 for `--cpus 1.5`); None when there is none
    or it cannot be read."""
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None
    mount = Path(mount)
    limits: list[float] = []
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2) if line.count(":") >= 2 else ("", "", "")
        if hierarchy == "0" and controllers == "":  # v2, the unified hierarchy
            limits += _limits(mount, path, _v2_limit)
        elif "cpu" in controllers.split(","):  # v1: mounted as cpu, or cpu,cpuacct
            limits += _limits(mount / controllers, path, _v1_limit)
    return min(limits) if limits else None


def _limits(root: Path, path: str, read) -> list[float]:
    """The limits set from the cgroup at `path` up to `root` (in a container, `root` is its own cgroup)."""
    out = []
    directory = root / path.strip("/")
    while True:
        limit = read(directory)
        if limit is not None:
            out.append(limit)
        if directory == root or root not in directory.parents:
            return out
        directory = directory.parent


def _v2_limit(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def _v1_limit(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None
