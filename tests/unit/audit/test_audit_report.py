"""An audit's outputs from a made-up report: exit codes, counts, failures by rule, JUnit, the page, the
summary, and how targets name one registry."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from mdl.audit.html import render, spec_href
from mdl.audit.model import Artifact, AuditReport, RepositoryResult
from mdl.audit.report import summary, to_json, to_junit
from mdl.cli import audit as audit_cli
from mdl.cli.audit import parse_targets
from mdl.errors import UsageError

CASE = {"id": "docker-config/docker-config-context-size-a-positive-32-bit-integer",
        "spec": "spec/docker-format.md#41-shape", "profile": "reader"}
HOSTILE = '<img src="http://evil.example/x.png" onerror="alert(1)">'


def sig(status: str, keyed: bool = False, error: dict | None = None) -> dict:
    return {"status": status, "keyed": keyed, "signatures": [], "error": error, "sources": []}


def report(*artifacts: Artifact, repositories: list[RepositoryResult] | None = None, key: bool = False) -> AuditReport:
    r = AuditReport("r.example", ["r.example"], {"profile": "reader", "deep": False, "key": "k" if key else None},
                    "2025-01-01T00:00:00Z", 1.5)
    r.artifacts = list(artifacts)
    r.repositories = repositories or [RepositoryResult(a.repository, len(a.tags)) for a in artifacts]
    return r


def good() -> Artifact:
    return Artifact("models/good", "sha256:" + "1" * 64, kind="docker-model", format="docker", size=3 << 20,
                    checked=True, cases=40, signature=sig("signed"), tags=["v1", "latest"])


def broken() -> Artifact:
    return Artifact("models/bad", "sha256:" + "2" * 64, kind="docker-model", format="docker", size=1 << 20,
                    checked=True, cases=40, signature=sig("unsigned"), tags=["v1"],
                    findings=[{"kind": "schema", "document": "config", "path": "$.config.context_size",
                               "message": HOSTILE, "cases": [CASE]},
                              {"kind": "blob-missing", "document": "manifest", "path": "$.layers[0]",
                               "message": "layer blob sha256:... is missing", "cases": []}])


def image() -> Artifact:
    return Artifact("apps/web", "sha256:" + "3" * 64, kind="image", size=100, tags=["1.0"])


def test_exit_codes_rank_incomplete_over_findings_over_sound():
    assert report(good(), image()).exit_code == 0
    assert report(good(), broken()).exit_code == 1
    unreadable = Artifact("apps/web", "sha256:" + "4" * 64, error={"kind": "denied", "message": "denied"})
    assert report(good(), broken(), unreadable).exit_code == 2
    assert report(good(), repositories=[RepositoryResult("x", error={"kind": "denied", "message": "no"})]).exit_code == 2


def test_a_key_makes_a_model_without_a_verified_signature_fail():
    a = good()
    a.signature = sig("unsigned", keyed=True, error={"kind": "unsigned", "message": "has no signature"})
    b = good()
    b.signature = sig("verified", keyed=True)
    r = report(a, b, key=True)
    assert (a.ok, b.ok, r.exit_code) == (False, True, 1)
    assert r.failures_by_rule() == [("[signature: unsigned]", None, 1)]
    assert "signature unsigned: has no signature" in summary(r)


def test_counts_and_failures_by_rule():
    r = report(good(), broken(), image())
    c = r.counts()
    assert c["kinds"] == {"docker-model": 2, "image": 1} and c["formats"] == {"docker": 2}
    assert (c["models"], c["failing"], c["tags"], c["signatures"]) == (2, 1, 4, {"signed": 1, "unsigned": 1})
    assert r.failures_by_rule() == [("[blob-missing]", None, 1), (CASE["id"], CASE["spec"], 1)]
    doc = json.loads(to_json(r))
    assert doc["exitCode"] == 1 and [a["ok"] for a in doc["artifacts"]] == [True, False, True]
    assert doc["artifacts"][1]["findings"][0]["cases"] == [CASE]


def test_junit_one_testcase_per_artifact_and_per_unlisted_repository():
    err = Artifact("apps/web", "sha256:" + "4" * 64, error={"kind": "denied", "message": "no access"})
    r = report(good(), broken(), image(), err,
               repositories=[RepositoryResult("models/good", 2), RepositoryResult("x", error={
                   "kind": "registry", "message": "HTTP 500"})])
    root = ET.fromstring(to_junit(r))
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("5", "1", "2", "1")
    cases = {(c.get("classname"), c.get("name")): c for c in suite.iter("testcase")}
    failure = cases[("audit.models/bad", "v1")].find("failure")
    assert failure.get("message") == f"fails {CASE['id']}, [blob-missing]"
    assert f"{CASE['id']} ({CASE['spec']})" in failure.text and HOSTILE in failure.text  # XML-escaped, intact
    assert cases[("audit.apps/web", "1.0")].find("skipped") is not None
    assert cases[("audit.x", "(tags)")].find("error").get("message") == "HTTP 500"
    assert cases[("audit.models/good", "v1, latest")].find("failure") is None


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [(tag, k, v) for k, v in attrs if k in ("src", "href", "action", "srcset", "poster")]


def test_the_page_is_self_contained_and_escapes_what_it_shows():
    page = render(report(good(), broken(), image()), "https://spec.example/mdl/spec/")
    links = Links()
    links.feed(page)
    assert "img" not in links.tags and "link" not in links.tags  # the hostile message is text, not markup
    assert [t for t in links.tags if t == "script"] == ["script"]  # the one inline script
    assert all(tag == "a" and k == "href" for tag, k, _ in links.urls)
    assert {v for _, _, v in links.urls} == {"https://spec.example/mdl/spec/docker-format.md#41-shape"}
    assert "&lt;img src=&quot;http://evil.example/x.png&quot;" in page
    assert page.count('<tbody data-kind="docker-model"') == 2 and page.count('data-ok="false"') == 1


def test_spec_links_default_to_the_spec_mdl_ships():
    page = render(report(broken()))
    links = Links()
    links.feed(page)
    [href] = {v for _, _, v in links.urls}  # the rule's link and the finding's
    assert href.startswith("file:///") and href.endswith("/docker-format.md#41-shape")
    assert spec_href("spec/signing.md#2-payload", "https://x.example/s") == "https://x.example/s/signing.md#2-payload"


def test_the_summary_lists_what_fails():
    text = summary(report(good(), broken(), image()))
    assert text.splitlines()[0].startswith("Audit of r.example (reader profile) in 1.5 s: 3 repositories, 4 tags, "
                                           "3 artifacts")
    assert f"FAILED models/bad:v1 (222222222222, docker-model): 2 findings" in text
    assert f"[schema] config $.config.context_size: {HOSTILE} -- {CASE['id']} ({CASE['spec']})" in text
    assert text.splitlines()[-1] == "FAILED: 1 artifact failing"


@pytest.mark.parametrize("targets, expected", [
    (["localhost:5000"], ("localhost:5000", [])),
    (["r.example/ns", "r.example/ns/repo", "r.example/ns"], ("r.example", ["ns", "ns/repo"])),
    (["r.example/ns", "r.example"], ("r.example", [])),  # the whole registry covers the namespace
])
def test_targets_name_one_registry(targets, expected):
    assert parse_targets(targets) == expected


def test_targets_on_two_registries_are_refused():
    with pytest.raises(UsageError, match="is on s.example, the other targets on r.example") as e:
        parse_targets(["r.example/a", "s.example/b"])
    assert e.value.hint == "audit one registry at a time"
    with pytest.raises(UsageError, match="registry host"):
        parse_targets(["just-a-name"])


def test_progress_is_one_line_redrawn_at_most_ten_times_a_second_and_cleared(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(audit_cli.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    progress = audit_cli._Progress(out)
    progress("listing tags", 0, 3)
    now[0] += 0.05
    progress("listing tags", 1, 3)  # too soon: skipped
    progress("listing tags", 3, 3)  # a phase's end is always drawn
    now[0] += 0.2
    progress("checking", 1, 9)
    progress.close()
    assert out.getvalue() == ("\r\033[Kaudit: listing tags 0/3\r\033[Kaudit: listing tags 3/3"
                              "\r\033[Kaudit: checking 1/9\r\033[K")
