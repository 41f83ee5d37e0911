"""Usable cores: the affinity, bounded by a cgroup CPU quota (v1 and v2), the tightest along the path."""

from __future__ import annotations

import pytest

import mdl.cores as cores
from mdl.cores import cgroup_cpu_limit


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_v2_quota_in_a_container_namespace(tmp_path):
    write(tmp_path / "proc", "0::/\n")
    write(tmp_path / "cg" / "cpu.max", "150000 100000\n")
    assert cgroup_cpu_limit(tmp_path / "proc", tmp_path / "cg") == 1.5


def test_v2_the_tightest_limit_along_the_path_wins(tmp_path):
    write(tmp_path / "proc", "0::/system.slice/job.scope\n")
    write(tmp_path / "cg" / "system.slice" / "cpu.max", "200000 100000\n")
    write(tmp_path / "cg" / "system.slice" / "job.scope" / "cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(tmp_path / "proc", tmp_path / "cg") == 2.0
    write(tmp_path / "cg" / "system.slice" / "job.scope" / "cpu.max", "50000 100000\n")
    assert cgroup_cpu_limit(tmp_path / "proc", tmp_path / "cg") == 0.5


def test_v1_quota_and_its_unlimited_value(tmp_path):
    write(tmp_path / "proc", "4:memory:/x\n2:cpu,cpuacct:/docker/abc\n")
    leaf = tmp_path / "cg" / "cpu,cpuacct" / "docker" / "abc"
    write(leaf / "cpu.cfs_quota_us", "300000\n")
    write(leaf / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(tmp_path / "proc", tmp_path / "cg") == 3.0
    write(leaf / "cpu.cfs_quota_us", "-1\n")
    assert cgroup_cpu_limit(tmp_path / "proc", tmp_path / "cg") is None


@pytest.mark.parametrize("proc, files", [
    (None, {}),  # no /proc/self/cgroup: not Linux, or hidden
    ("0::/\n", {}),  # no cpu.max: the root cgroup, or the controller is off
    ("0::/\n", {"cpu.max": "max 100000\n"}),
    ("0::/\n", {"cpu.max": "garbage\n"}),
    ("0::/\n", {"cpu.max": "100000 0\n"}),
    ("not a cgroup line\n", {}),
])
def test_no_limit_when_there_is_none_or_it_cannot_be_read(tmp_path, proc, files):
    if proc is not None:
        write(tmp_path / "proc", proc)
    for name, text in files.items():
        write(tmp_path / "cg" / name, text)
    assert cgroup_cpu_limit(tmp_path / "proc", tmp_path / "cg") is None


@pytest.mark.parametrize("affinity, quota, expected", [(64, 2.0, 2), (64, 1.5, 2), (64, 0.5, 1), (2, 8.0, 2),
                                                       (4, None, 4)])
def test_usable_cores_is_the_affinity_bounded_by_the_quota(monkeypatch, affinity, quota, expected):
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: set(range(affinity)))
    monkeypatch.setattr(cores, "cgroup_cpu_limit", lambda: quota)
    cores.usable_cores.cache_clear()
    try:
        assert cores.usable_cores() == expected
    finally:
        cores.usable_cores.cache_clear()
