"""`mdl conformance registry` against the real registries in `--quick` mode: Debian's distribution 2.8.2
and distribution v3.1.2 (`registry-v3`, built by tests/interop/build_peers.sh; missing, its tests fail).

The statuses must equal that registry's column of the `## Registry results` table in conformance/README.md,
nothing pushed may be left behind, and a registry that fails a required check (read-only maintenance mode)
gives exit status 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest
import requests

from mdl.spec import mediatypes as mt
from tests.conftest import REPO_ROOT, assert_clean_error
from tests.integration.registry import FLAVORS, start_registry

README = REPO_ROOT / "conformance" / "README.md"


def readme_table() -> dict[str, dict[str, tuple[bool, str]]]:
    """registry column (`2.8.2`, `v3`) -> check id -> (required, result), from the `## Registry results`
    table: `| check | required | <registry> ... | notes |`."""
    text = README.read_text(encoding="utf-8")
    assert "\n## Registry results\n" in text, "conformance/README.md has no '## Registry results' section"
    section = text.split("\n## Registry results\n", 1)[1].split("\n## ", 1)[0]
    columns: list[str] = []
    tables: dict[str, dict[str, tuple[bool, str]]] = {}
    for line in section.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:2] == ["check", "required"]:
            assert cells[-1] == "notes", cells
            columns = cells[2:-1]
            tables = {c: {} for c in columns}
        elif cells[0].startswith("`"):
            assert len(cells) == len(columns) + 3, line
            for name, result in zip(columns, cells[2:-1]):
                tables[name][cells[0].strip("`")] = (cells[1] == "yes", result)
    assert tables and all(tables.values()), "the Registry results section has no table of checks"
    return tables


def test_the_readme_table_has_a_column_per_registry():
    tables = readme_table()
    assert list(tables) == list(FLAVORS)
    assert len({tuple(t) for t in tables.values()}) == 1, "the columns list different checks"


@pytest.fixture(scope="module", params=FLAVORS)
def registry(request, tmp_path_factory):
    """Each registry in turn (overrides the conftest's 2.8.2 one for this module)."""
    reg = start_registry(tmp_path_factory.mktemp(f"registry-{request.param}"), flavor=request.param)
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def quick_run(registry, tmp_path_factory):
    """One `--quick` run against the loopback registry: (process, report dir, seconds)."""
    tmp = tmp_path_factory.mktemp("conformance-registry")
    reports = tmp / "reports"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "DOCKER_CONFIG": str(tmp / "docker-config"),
           "MDL_HOME": str(tmp / "home")}
    started = time.monotonic()
    proc = _mdl(["conformance", "registry", f"{registry.host}/ns", "--quick", "--report-dir", str(reports)], env)
    return proc, reports, time.monotonic() - started


def _mdl(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mdl", *args], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=600)


def test_the_quick_run_matches_the_readme_table(quick_run, registry):
    proc, reports, seconds = quick_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((reports / "registry-report.json").read_text())
    got = {c["id"]: (c["required"], c["status"]) for c in report["checks"]}
    assert got == readme_table()[registry.flavor], \
        f"conformance/README.md's Registry results column {registry.flavor} and the run differ"
    assert report["mode"] == "quick" and report["blob_size"] == 64 << 20
    assert seconds < 120, f"--quick took {seconds:.0f} s"


def test_the_reports_say_why(quick_run, registry):
    proc, reports, _ = quick_run
    report = json.loads((reports / "registry-report.json").read_text())
    checks = report["checks"]
    for c in checks:
        assert c["reason"] and c["link"], c
        assert c["exchanges"], f"{c['id']} names no deciding exchange"
        for ex in c["exchanges"]:
            assert {"method", "url", "status"} <= set(ex)
    by_id = {c["id"]: c for c in checks}
    chunked = by_id["blob/chunked"]["data"]
    assert chunked["oci_chunk_min_length"] is None and chunked["refused_chunks"] == []
    assert chunked["chunks"] >= 2 and chunked["largest_chunk_accepted"] > chunked["last_chunk"]
    assert by_id["referrers/api"]["exchanges"][-1]["status"] == 404
    assert by_id["referrers/api"]["data"] == {"oci_subject_header": False}
    # The README's notes: 2.8.2 lists tags unordered in one page; v3 in lexical order, paged by n and Link.
    tags = by_id["tags/list"]["data"]
    v3 = registry.flavor == "v3"
    assert (tags["sorted"], tags["paginates"]) == (v3, v3), tags
    assert report["summary"]["required_failed"] == []
    # The human summary names every check and the chunk limits.
    for c in checks:
        assert c["id"] in proc.stdout
    assert "Chunk limits: OCI-Chunk-Min-Length not sent" in proc.stdout

    suite = ET.parse(reports / "registry-junit.xml").getroot().find("testsuite")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert list(cases) == [c["id"] for c in checks]
    assert suite.get("tests") == str(len(checks)) and suite.get("failures") == "0"
    skipped = sorted(name for name, case in cases.items() if case.find("skipped") is not None)
    assert skipped == sorted(c["id"] for c in checks if c["status"] == "not-supported")
    assert all(case.find("failure") is None for case in cases.values())


def test_nothing_pushed_is_left_behind(quick_run, registry):
    _, reports, _ = quick_run
    report = json.loads((reports / "registry-report.json").read_text())
    assert report["left_behind"] == []
    assert report["pushed"], "the report lists nothing pushed"
    kinds = {item["kind"] for item in report["pushed"]}
    assert kinds == {"manifest", "blob"}
    for item in report["pushed"]:
        path = "manifests" if item["kind"] == "manifest" else "blobs"
        r = requests.head(f"{registry.url}/v2/{item['repository']}/{path}/{item['digest']}",
                          headers={"Accept": ", ".join(mt.MANIFEST_ACCEPT)}, timeout=10)
        assert r.status_code == 404, item
    assert len(report["repositories"]) == 2
    for repo in report["repositories"]:
        r = requests.get(f"{registry.url}/v2/{repo}/tags/list", timeout=10)
        # distribution answers NAME_UNKNOWN for a repository without tags, or an empty list
        assert r.status_code == 404 or not (r.json().get("tags") or []), (repo, r.text)
    # What the API cannot remove is said: the emptied repositories stay in the catalog, blob bytes until GC.
    # 2.8.2 lists both; v3 only the one that held manifests (its catalog walks `_manifests` folders, and
    # the `-mount` repository only ever received a mounted blob).
    catalog = requests.get(f"{registry.url}/v2/_catalog", params={"n": "1000"}, timeout=10).json()["repositories"]
    listed = report["repositories"] if registry.flavor == "2.8.2" else report["repositories"][:1]
    assert [repo for repo in report["repositories"] if repo in catalog] == listed
    remains = report["not_removable"]
    assert remains[:-1] == [f"repository {repo}: still listed in /v2/_catalog (the API has no repository delete)"
                            for repo in listed]
    blobs = sum(item["kind"] == "blob" for item in report["pushed"])
    assert remains[-1].startswith(f"the bytes of the {blobs} blob(s) pushed:")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_a_required_failure_exits_1(tmp_path_factory, flavor):
    tmp = tmp_path_factory.mktemp("conformance-readonly")
    reg = start_registry(tmp / "registry", readonly=True, flavor=flavor)
    try:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "DOCKER_CONFIG": str(tmp / "docker-config")}
        proc = _mdl(["conformance", "registry", f"{reg.host}/ns", "--quick", "--json",
                     "--check", "api-root", "--check", "config-media-type/docker-v0.1", "--check", "delete/blob"], env)
    finally:
        reg.stop()
    assert_clean_error(proc, 1, "failed 1 required check(s): config-media-type/docker-v0.1")
    report = json.loads(proc.stdout)
    status = {c["id"]: c["status"] for c in report["checks"]}
    assert status == {"api-root": "pass", "config-media-type/docker-v0.1": "fail", "delete/blob": "fail"}
    failed = next(c for c in report["checks"] if c["id"] == "config-media-type/docker-v0.1")
    assert failed["exchanges"][-1]["status"] == 405 and "405" in failed["reason"]
    assert report["summary"]["required_failed"] == ["config-media-type/docker-v0.1"]
    assert report["left_behind"] == []  # nothing was stored, so nothing is reported left
