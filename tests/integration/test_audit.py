"""`mdl audit` against the real registry (distribution 2.8.2) holding one artifact of every kind
(`audit_fixtures.populate`): classification, the broken model's case, signatures with and without a key,
pagination, the rate cap, 429, resumed and incremental audits, exit codes 0/1/2, the JSON, JUnit and
HTML reports."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest

from mdl.audit import run as audit_run
from mdl.audit.check import CheckSettings
from mdl.audit.run import AuditRequest, run_audit
from mdl.audit.state import AuditState
from mdl.conformance.artifacts import load_suite
from mdl.registry.client import RegistryClient
from mdl.signing.keys import write_keypair
from tests.conftest import assert_clean_error
from tests.integration.audit_fixtures import (BROKEN_CASE, REPOSITORIES, populate, push_image_and_index,
                                              push_model, repository, run_mdl, sign)
from tests.integration.conftest import free_port
from tests.integration.faultproxy import Fault, FaultProxy
from tests.integration.registry import start_registry

SPEC_URL = "https://spec.example/mdl/spec/"
_reports = itertools.count()
_EXCHANGE = re.compile(r"^debug: (GET|HEAD|POST|PUT|PATCH|DELETE) https?://[^/]+(/\S*) -> ", re.M)


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    reg = start_registry(tmp_path_factory.mktemp("audit-registry"))
    work = tmp_path_factory.mktemp("audit-work")
    try:
        populated = populate(reg.host, work)
    except BaseException:
        reg.stop()
        raise
    yield SimpleNamespace(host=reg.host, reg=reg, work=work, keys=populated.keys, digests=populated.digests,
                          signatures=populated.signatures)
    reg.stop()


def audit(work: Path, *args: str, debug: bool = False):
    """(process, JSON report or None) of `mdl audit ARGS --json FILE`."""
    out = work / f"audit-{next(_reports)}.json"
    proc = run_mdl(work, "audit", *args, *(["--debug"] if debug else []), "--json", str(out), check=False)
    return proc, json.loads(out.read_text()) if out.exists() else None


def exchanges(proc) -> list[tuple[str, str]]:
    """(method, path) of every HTTP exchange `--debug` logged."""
    return _EXCHANGE.findall(proc.stderr)


def kinds(doc) -> list[tuple]:
    return sorted((a["repository"], tuple(a["tags"]), a["kind"], a["format"]) for a in doc["artifacts"])


def by_name(doc) -> dict:
    return {f"{a['repository']}:{a['tags'][-1]}" if a["tags"] else f"{a['repository']}@{a['digest']}": a
            for a in doc["artifacts"]}


def expected_kinds(fx) -> list[tuple]:
    """(repository, tags, kind, format) of every manifest the fixture pushed."""
    sig = "sha256-" + fx.digests["models/docker-tiny:v1"][7:]
    # the signer's referrers other than the legacy `.sig` manifest are untagged, listed in the fallback index
    untagged = [("models/docker-tiny", (), "signature", None) for d in fx.signatures if d != fx.digests["signature"]]
    return sorted([
        ("apps/web", ("1.0",), "image", None),
        ("apps/web", ("multi",), "index", None),
        ("misc/sbom", ("v1",), "artifact", None),
        ("models/broken", ("v1",), "docker-model", "docker"),
        ("models/docker-tiny", ("latest", "v1"), "docker-model", "docker"),
        ("models/docker-tiny", (sig,), "index", None),  # the referrers fallback index
        ("models/docker-tiny", (sig + ".sig",), "signature", None),
        ("models/pack-tiny", ("v1",), "modelpack-model", "modelpack"),
        *untagged,
    ])


@pytest.fixture(scope="module")
def full(fx):
    """One audit of the whole registry, with every report."""
    out = fx.work / "full"
    proc, doc = audit(fx.work, fx.host, "--junit", str(out / "junit.xml"), "--html", str(out / "html"),
                      "--spec-url", SPEC_URL)
    return SimpleNamespace(proc=proc, doc=doc, junit=out / "junit.xml", html=out / "html" / "index.html")


# -- what each artifact is, and what fails ------------------------------------------------------------


def test_every_artifact_is_classified(fx, full):
    assert full.proc.returncode == 1, full.proc.stderr
    assert kinds(full.doc) == expected_kinds(fx)
    assert full.proc.stderr == ""  # no progress when stderr is not a terminal
    a = by_name(full.doc)
    for name in ("models/docker-tiny:v1", "models/pack-tiny:v1", "models/broken:v1", "apps/web:1.0", "apps/web:multi",
                 "misc/sbom:v1"):
        assert a[name]["digest"] == fx.digests[name], name
    assert [r["name"] for r in full.doc["repositories"]] == REPOSITORIES
    assert full.doc["counts"]["kinds"] == {"docker-model": 2, "modelpack-model": 1, "signature": len(fx.signatures),
                                           "artifact": 1, "image": 1, "index": 2}
    assert full.doc["counts"]["formats"] == {"docker": 2, "modelpack": 1}
    # the index lists the image; the fallback index lists the signature, which names the model
    sig_tag = "sha256-" + fx.digests["models/docker-tiny:v1"][7:]
    fallback, signature = a[f"models/docker-tiny:{sig_tag}"], a[f"models/docker-tiny:{sig_tag}.sig"]
    assert a["apps/web:multi"]["children"] == [fx.digests["apps/web:1.0"]]
    assert a["apps/web:1.0"]["parents"] == [fx.digests["apps/web:multi"]]
    assert signature["digest"] == fx.digests["signature"] and fallback["digest"] == fx.digests["fallback"]
    assert sorted(fallback["children"]) == fx.signatures and fx.digests["signature"] in fx.signatures
    signatures = [x for x in full.doc["artifacts"] if x["kind"] == "signature"]
    assert sorted(x["digest"] for x in signatures) == fx.signatures
    for x in signatures:  # each names the model, and is listed by the fallback index
        assert x["subject"] == fallback["subject"] == fx.digests["models/docker-tiny:v1"]
        assert x["parents"] == [fallback["digest"]]
    for name in ("models/docker-tiny:v1", "models/pack-tiny:v1", "models/broken:v1"):
        assert a[name]["checked"] and a[name]["cases"] > 0 and a[name]["layersHashed"] is False
    assert not any(x["checked"] for x in full.doc["artifacts"] if x["kind"] not in ("docker-model", "modelpack-model"))


def test_the_broken_model_fails_exactly_its_case(fx, full):
    a = by_name(full.doc)
    broken = a["models/broken:v1"]
    assert [(f["kind"], f["document"], f["path"], [c["id"] for c in f["cases"]], [c["spec"] for c in f["cases"]])
            for f in broken["findings"]] == \
        [("schema", "config", "$.config.context_size", [BROKEN_CASE], ["spec/docker-format.md#41-shape"])]
    assert [x["tags"] for x in full.doc["artifacts"] if not x["ok"]] == [["v1"]] and not broken["ok"]
    assert all(x["findings"] == [] for x in full.doc["artifacts"] if x is not broken)
    assert full.doc["failuresByRule"] == [{"rule": BROKEN_CASE, "spec": "spec/docker-format.md#41-shape",
                                           "artifacts": 1}]
    assert f"FAILED models/broken:v1 ({fx.digests['models/broken:v1'][7:19]}, docker-model): 1 finding" \
        in full.proc.stdout
    assert f"-- {BROKEN_CASE} (spec/docker-format.md#41-shape)" in full.proc.stdout


def test_signature_status_without_a_key(fx, full):
    a = by_name(full.doc)
    assert {n: a[n]["signature"]["status"] for n in ("models/docker-tiny:v1", "models/pack-tiny:v1",
                                                     "models/broken:v1")} == \
        {"models/docker-tiny:v1": "signed", "models/pack-tiny:v1": "unsigned", "models/broken:v1": "unsigned"}
    assert a["models/docker-tiny:v1"]["signature"]["signatures"] == fx.signatures
    assert a["models/pack-tiny:v1"]["ok"]  # unsigned is reported, not a failure, without a key
    assert all(x["signature"] is None for x in full.doc["artifacts"] if x["kind"] not in ("docker-model",
                                                                                        "modelpack-model"))


def test_signatures_verified_with_a_key(fx, tmp_path):
    alice, bob = str(fx.keys["alice"][1]), str(fx.keys["bob"][1])
    proc, doc = audit(tmp_path, f"{fx.host}/models", "--key", alice)
    assert proc.returncode == 1, proc.stderr
    a = by_name(doc)
    docker = a["models/docker-tiny:v1"]["signature"]
    assert (docker["status"], docker["error"]) == ("verified", None) and docker["verifiedBy"] in fx.signatures
    for name in ("models/pack-tiny:v1", "models/broken:v1"):
        assert (a[name]["signature"]["status"], a[name]["signature"]["error"]["kind"], a[name]["ok"]) == \
            ("unsigned", "unsigned", False)
    assert {(x["rule"], x["artifacts"]) for x in doc["failuresByRule"]} == {(BROKEN_CASE, 1), ("[signature: unsigned]", 2)}

    proc, doc = audit(tmp_path, f"{fx.host}/models/docker-tiny", "--key", bob)
    assert proc.returncode == 1
    sig = by_name(doc)["models/docker-tiny:v1"]["signature"]
    assert (sig["status"], sig["error"]["kind"]) == ("invalid", "bad-signature")
    assert "signature invalid: " in proc.stdout and bob in proc.stdout

    proc, doc = audit(tmp_path, f"{fx.host}/models/docker-tiny", "--key", alice)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert by_name(doc)["models/docker-tiny:v1"]["signature"]["status"] == "verified"


def test_the_written_profile_and_deep_hashing(fx, full, tmp_path):
    proc, doc = audit(tmp_path, f"{fx.host}/models", "--written", "--deep")
    assert proc.returncode == 1 and doc["settings"] == {"profile": "written", "deep": True, "key": None}
    a, reader = by_name(doc), by_name(full.doc)
    assert [x["tags"] for x in doc["artifacts"] if not x["ok"]] == [["v1"]]
    assert [c["id"] for f in a["models/broken:v1"]["findings"] for c in f["cases"]] == [BROKEN_CASE]
    for name in ("models/docker-tiny:v1", "models/pack-tiny:v1"):
        assert a[name]["layersHashed"] is True and a[name]["cases"] > reader[name]["cases"] and a[name]["ok"]


def test_deep_finds_a_layer_corrupted_in_the_registrys_storage(tmp_path):
    reg = start_registry(tmp_path / "registry")
    try:
        push_model(tmp_path, reg.host, "models/m:v1")
        path = reg.blob_path(repository(reg.host, "models/m").fetch_manifest("v1").layers[0].digest)
        data = bytearray(path.read_bytes())
        data[100] ^= 0xFF  # same size: a HEAD cannot tell
        path.write_bytes(bytes(data))
        proc, doc = audit(tmp_path, reg.host)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        proc, doc = audit(tmp_path, reg.host, "--deep")
        assert proc.returncode == 1
        [model] = doc["artifacts"]
        assert [(f["kind"], f["path"], f["cases"]) for f in model["findings"]] == [("digest-mismatch", "$.layers[0]", [])]
        assert doc["failuresByRule"] == [{"rule": "[digest-mismatch]", "spec": None, "artifacts": 1}]
    finally:
        reg.stop()


# -- exit codes -------------------------------------------------------------------------------------


def test_exit_0_when_everything_audited_is_sound(fx, tmp_path):
    proc, doc = audit(tmp_path, f"{fx.host}/apps", f"{fx.host}/misc/sbom")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [k[2:] for k in kinds(doc)] == [("image", None), ("index", None), ("artifact", None)]
    assert proc.stdout.splitlines()[-1] == "OK: sound" and doc["exitCode"] == 0 and doc["ok"]


def test_exit_2_when_the_registry_is_unreachable(tmp_path):
    host = f"127.0.0.1:{free_port()}"
    proc, doc = audit(tmp_path, host)
    assert_clean_error(proc, 2, f"could not audit {host}: cannot reach registry {host}: connection refused")
    assert doc is None


def test_exit_2_without_credentials(auth_registry, tmp_path):
    proc, _ = audit(tmp_path, auth_registry.host, "--ca-file", auth_registry.ca_file)
    assert_clean_error(proc, 2, f"could not audit {auth_registry.host}")
    proc, _ = audit(tmp_path, f"{auth_registry.host}/some/repo", "--ca-file", auth_registry.ca_file)
    assert_clean_error(proc, 2, f"could not audit {auth_registry.host}")


def test_exit_2_when_a_named_repository_is_missing_and_the_rest_is_reported(fx, tmp_path):
    proc, doc = audit(tmp_path, f"{fx.host}/apps", f"{fx.host}/no/such")
    assert_clean_error(proc, 2, f"could not audit {fx.host}: 1 part(s) unreadable (first: repository no/such:")
    assert [(r["name"], (r["error"] or {}).get("kind")) for r in doc["repositories"]] == \
        [("apps/web", None), ("no/such", "not-found")]
    assert len(doc["artifacts"]) == 2 and doc["exitCode"] == 2


def test_a_manifest_served_wrong_is_a_finding_and_one_refused_is_not_audited(fx, tmp_path):
    image, index, sbom = fx.digests["apps/web:1.0"], fx.digests["apps/web:multi"], fx.digests["misc/sbom:v1"]
    with FaultProxy("127.0.0.1", int(fx.host.rsplit(":", 1)[1])) as proxy:
        proxy.add(Fault("GET", re.escape(f"/v2/apps/web/manifests/{image}") + "$", flip_at=10, times=5))
        proxy.add(Fault("GET", re.escape(f"/v2/misc/sbom/manifests/{sbom}") + "$", status=403, times=5,
                        body=b'{"errors":[{"code":"DENIED","message":"not for you"}]}'))
        proc, doc = audit(tmp_path, f"{proxy.host}/apps", f"{proxy.host}/misc")
    assert_clean_error(proc, 2, f"could not audit {proxy.host}: 1 part(s) unreadable (first: misc/sbom:v1: ")
    a = {x["digest"]: x for x in doc["artifacts"]}
    assert (a[index]["kind"], a[index]["ok"], a[index]["children"]) == ("index", True, [image])
    assert (a[image]["kind"], a[image]["tags"], a[image]["parents"]) == ("unknown", ["1.0"], [index])
    assert [(f["kind"], f["path"], f["cases"]) for f in a[image]["findings"]] == [("digest-mismatch", "$", [])]
    assert (a[sbom]["kind"], a[sbom]["error"]["kind"], a[sbom]["findings"]) == ("unknown", "denied", [])
    assert doc["counts"]["kinds"] == {"index": 1, "unknown": 2} and doc["counts"]["failing"] == 1


# -- pagination, the rate cap, 429 ------------------------------------------------------------------


def test_the_catalog_is_read_page_by_page(fx, tmp_path):
    proc, doc = audit(tmp_path, fx.host, "--page-size", "2", debug=True)
    assert proc.returncode == 1
    catalog = [p for m, p in exchanges(proc) if p.startswith("/v2/_catalog")]
    assert catalog == ["/v2/_catalog?n=2", "/v2/_catalog?last=misc/sbom&n=2",
                       "/v2/_catalog?last=models/docker-tiny&n=2"]  # 2 + 2 + 1 (as the log writes them)
    assert [r["name"] for r in doc["repositories"]] == REPOSITORIES and kinds(doc) == expected_kinds(fx)


def test_tag_lists_are_read_page_by_page(fx, tmp_path):
    """distribution 2.8.2 sends one tag page whatever `n` asks; a proxy answers the pages a paginating
    registry would (everything else goes to the registry)."""
    hexpart = fx.digests["models/docker-tiny:v1"][7:]
    port = int(fx.host.rsplit(":", 1)[1])
    with FaultProxy("127.0.0.1", port) as proxy:
        base = "/v2/models/docker-tiny/tags/list"
        proxy.add(Fault("GET", re.escape(base) + r"\?n=2$", status=200,
                        headers={"Link": f'<{base}?n=2&last=sha256-{hexpart}>; rel="next"'},
                        body=json.dumps({"name": "models/docker-tiny", "tags": ["latest", f"sha256-{hexpart}"]}).encode()))
        proxy.add(Fault("GET", re.escape(f"{base}?n=2&last=sha256-{hexpart}") + "$", status=200,
                        body=json.dumps({"name": "models/docker-tiny", "tags": [f"sha256-{hexpart}.sig", "v1"]}).encode()))
        proc, doc = audit(tmp_path, f"{proxy.host}/models/docker-tiny", "--page-size", "2")
        pages = [t for m, t in proxy.requests if t.startswith(base)]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert pages == [f"{base}?n=2", f"{base}?n=2&last=sha256-{hexpart}"]
    assert sorted(t for a in doc["artifacts"] for t in a["tags"]) == \
        ["latest", f"sha256-{hexpart}", f"sha256-{hexpart}.sig", "v1"]
    assert doc["repositories"] == [{"name": "models/docker-tiny", "tags": 4, "error": None}]


def test_the_rate_cap_spaces_every_request(fx, tmp_path):
    rate = 15
    proc, doc = audit(tmp_path, f"{fx.host}/models", "--rate", str(rate), debug=True)
    assert proc.returncode == 1, proc.stderr
    n = len(exchanges(proc))
    assert n >= 20  # enough requests for the bound to mean something
    # N requests at R per second take at least (N-1)/R seconds (measured inside the audit; small slack)
    assert doc["seconds"] >= (n - 1) / rate - 0.05, (n, doc["seconds"])


def test_a_429_is_honoured(fx, tmp_path):
    port = int(fx.host.rsplit(":", 1)[1])
    with FaultProxy("127.0.0.1", port) as proxy:
        fault = proxy.add(Fault("GET", r"^/v2/_catalog", status=429, headers={"Retry-After": "1"},
                                body=b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'))
        proc, doc = audit(tmp_path, f"{proxy.host}/apps")
        catalog = [t for m, t in proxy.requests if t.startswith("/v2/_catalog")]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert fault.hits == 1 and len(catalog) == 2 and doc["seconds"] >= 0.95  # waited as asked, then listed


# -- resumed and incremental audits -----------------------------------------------------------------


def state_keys(path: Path) -> set[tuple[str, str]]:
    out = set()
    for line in path.read_text().splitlines()[1:]:
        try:
            record = json.loads(line)["record"]
        except (ValueError, KeyError):
            continue  # the line the kill cut short
        out.add((record["repository"], record["digest"]))
    return out


def test_an_audit_killed_midway_goes_on_where_it_stopped(fx, tmp_path):
    state = tmp_path / "audit.state"
    cmd = [sys.executable, "-m", "mdl", "audit", fx.host, "--state", str(state), "--rate", "10"]
    env = {**os.environ, "MDL_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if state.exists() and len(state_keys(state)) >= 2:
                break
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    seen = state_keys(state)
    assert 2 <= len(seen) < len(expected_kinds(fx))  # killed midway: the cap leaves checks to do

    again, doc = audit(tmp_path, fx.host, "--state", str(state), debug=True)
    assert again.returncode == 1, again.stderr
    assert kinds(doc) == expected_kinds(fx)
    assert {(a["repository"], a["digest"]) for a in doc["artifacts"] if a["fromState"]} == seen
    fetched = {(m.group(1), m.group(2)) for m in re.finditer(r"^debug: GET \S+?/v2/(.+?)/manifests/(sha256:[0-9a-f]{64}) ",
                                                               again.stderr, re.M)}
    kind_of = {(a["repository"], a["digest"]): a["kind"] for a in doc["artifacts"]}
    # what the killed run checked is not fetched again (a signature manifest is, by the signature lookup of a
    # model checked now: that is the model's check, not the signature's)
    assert not {k for k in fetched & seen if kind_of[k] != "signature"}
    assert state_keys(state) == set(kind_of)  # the state now holds every manifest


def test_an_interrupted_audit_checks_only_what_is_left(fx, tmp_path, monkeypatch):
    """In process: interrupted after the third check; the rerun checks exactly the digests not kept."""
    settings = CheckSettings(load_suite())
    path = tmp_path / "audit.state"

    def interrupt(phase: str, done: int, total: int) -> None:
        if phase == "checking" and done >= 3:
            raise KeyboardInterrupt

    state = AuditState.open(path, fx.host, settings.state_key())
    with pytest.raises(KeyboardInterrupt):
        run_audit(RegistryClient(fx.host), AuditRequest(fx.host, [], settings, concurrency=2), state=state,
                  progress=interrupt)
    for t in threading.enumerate():  # checks in flight when it stopped may still end (and be kept)
        if t.name.startswith("mdl-audit"):
            t.join(30)
    state.close()
    kept = state_keys(path)
    assert len(kept) >= 3

    checked = []
    real = audit_run.audit_manifest
    monkeypatch.setattr(audit_run, "audit_manifest",
                        lambda repo, digest, tags, s: checked.append((repo.repository, digest)) or real(repo, digest, tags, s))
    state = AuditState.open(path, fx.host, settings.state_key())
    try:
        report = run_audit(RegistryClient(fx.host), AuditRequest(fx.host, [], settings), state=state)
    finally:
        state.close()
    every = {(a.repository, a.digest) for a in report.artifacts}
    assert len(every) == len(expected_kinds(fx)) and sorted(checked) == sorted(every - kept)
    assert {(a.repository, a.digest) for a in report.artifacts if a.from_state} == kept
    assert report.exit_code == 1


def test_an_incremental_audit_of_an_unchanged_registry_only_lists(fx, tmp_path):
    state = tmp_path / "audit.state"
    first, doc1 = audit(tmp_path, fx.host, "--state", str(state))
    second, doc2 = audit(tmp_path, fx.host, "--state", str(state), debug=True)
    assert first.returncode == second.returncode == 1
    assert all(a["fromState"] for a in doc2["artifacts"]) and doc2["counts"]["checkedNow"] == 0

    def same(doc):
        return [{k: v for k, v in a.items() if k != "fromState"} for a in doc["artifacts"]]
    assert same(doc1) == same(doc2)
    calls = exchanges(second)
    assert [c for c in calls if c[1].startswith("/v2/_catalog")] == [("GET", "/v2/_catalog")]
    assert sorted(p for m, p in calls if p.endswith("/tags/list")) == [f"/v2/{r}/tags/list" for r in REPOSITORIES]
    heads = [p for m, p in calls if m == "HEAD"]
    assert len(heads) == 9 and all("/manifests/" in p and "sha256:" not in p for p in heads)  # one per tag
    assert len(calls) == 1 + len(REPOSITORIES) + 9  # nothing else: no manifest, blob or referrers request


def test_an_incremental_audit_checks_what_changed(tmp_path):
    reg = start_registry(tmp_path / "registry")
    try:
        host = reg.host
        model_a = push_model(tmp_path, host, "models/a:v1")
        push_image_and_index(host, "apps/web")
        state = tmp_path / "audit.state"
        first, doc = audit(tmp_path, host, "--state", str(state))
        assert first.returncode == 0 and doc["counts"]["checkedNow"] == 3

        model_b = push_model(tmp_path, host, "models/b:v1", fmt="cncf", seed=1)
        key, _pub = write_keypair(tmp_path / "k", None)
        signed = sign(host, "models/a:v1", key)
        second, doc = audit(tmp_path, host, "--state", str(state), debug=True)
        assert second.returncode == 0, second.stdout + second.stderr
        now = {(a["repository"], a["kind"]) for a in doc["artifacts"] if not a["fromState"]}
        assert now == {("models/b", "modelpack-model"), ("models/a", "signature"), ("models/a", "index")}
        a = by_name(doc)
        assert a["models/a:v1"]["fromState"] and a["models/a:v1"]["signature"]["status"] == "signed"
        assert a["models/a:v1"]["signature"]["signatures"] == sorted(
            x["digest"] for x in doc["artifacts"] if x["kind"] == "signature")
        assert signed.signature_manifest in a["models/a:v1"]["signature"]["signatures"]
        assert a["models/b:v1"]["digest"] == model_b
        calls = exchanges(second)
        assert ("GET", f"/v2/models/a/manifests/{model_a}") not in calls  # model a is not checked again...
        assert not [p for m, p in calls if p.startswith("/v2/models/a/blobs/")]
        assert ("GET", f"/v2/models/a/referrers/{model_a}") in calls  # ...only its signatures looked up again
        assert not [p for m, p in calls if p.startswith("/v2/apps/") and m != "HEAD" and not p.endswith("/tags/list")]
    finally:
        reg.stop()


# -- the reports ------------------------------------------------------------------------------------


def test_the_junit_report(fx, full):
    suite = ET.parse(full.junit).getroot().find("testsuite")
    n = len(expected_kinds(fx))
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == \
        (str(n), "1", "0", str(n - 3))  # the two sound models pass
    failed = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert [(c.get("classname"), c.get("name")) for c in failed] == [("audit.models/broken", "v1")]
    assert failed[0].find("failure").get("message") == f"fails {BROKEN_CASE}"
    skipped = sorted(c.find("properties/property[@name='kind']").get("value") for c in suite.iter("testcase")
                     if c.find("skipped") is not None)
    assert skipped == sorted(k[2] for k in expected_kinds(fx) if not k[2].endswith("-model"))


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.bodies: list[dict] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        self.urls += [(tag, k, v) for k, v in attrs if k in ("src", "href", "action", "srcset", "poster", "data")]
        if tag == "tbody" and "data-kind" in a:
            self.bodies.append(a)


def test_the_html_page_is_self_contained(fx, full):
    text = full.html.read_text()
    page = Page()
    page.feed(text)
    assert not [u for u in page.urls if u[1] != "href"]  # no src: nothing is loaded from anywhere
    assert "link" not in page.tags and "img" not in page.tags and page.tags.count("script") == 1
    external = [v for _, _, v in page.urls if re.match(r"https?://", v)]
    assert external and all(v.startswith(SPEC_URL) and "#" in v for v in external)  # only spec links
    assert {v for v in external} == {SPEC_URL + "docker-format.md#41-shape"}
    assert sorted((b["data-kind"], b["data-ok"]) for b in page.bodies) == sorted(
        (kind, "false" if (repo, tags) == ("models/broken", ("v1",)) else "true")
        for repo, tags, kind, _ in expected_kinds(fx))
    unsigned = text.split("<h2>Unsigned models</h2>")[1].split("</section>")[0]
    assert "models/broken:v1" in unsigned and "models/pack-tiny:v1" in unsigned and "docker-tiny" not in unsigned
    rules = text.split("<h2>Failures by rule</h2>")[1].split("<h2>")[0]
    assert f'<a href="{SPEC_URL}docker-format.md#41-shape">{BROKEN_CASE}</a>' in rules


def test_the_html_filter_in_a_browser(fx, full):
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("no chromium at /usr/bin/chromium")
    problems: list[str] = []
    n = len(expected_kinds(fx))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), headless=True, args=["--no-sandbox", "--headless=new"])
        try:
            page = browser.new_page()
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(full.html.as_uri())
            shown = page.locator("#shown")
            sync_api.expect(shown).to_have_text(str(n))
            page.fill("#q", "pack-tiny")
            sync_api.expect(shown).to_have_text("1")
            page.fill("#q", "")
            page.select_option("#kind", "index")
            sync_api.expect(shown).to_have_text("2")
            page.select_option("#kind", "")
            page.check("#failing")
            sync_api.expect(shown).to_have_text("1")
            assert page.locator("#artifacts tbody:not([hidden])").first.get_attribute("data-kind") == "docker-model"
        finally:
            browser.close()
    assert problems == []
