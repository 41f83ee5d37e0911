"""The registry conformance reports (JSON, JUnit, summary), and the pieces of the engine that need no registry:
the check list against its README, `--blob-size`, the generated blob, the 4 MiB manifest."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET

import pytest

from mdl.conformance import report as rep
from mdl.cli.conformance_registry import parse_blob_size
from mdl.conformance.registry import (FAIL, NOT_SUPPORTED, PASS, CheckResult, Report, all_checks, exchange_dict,
                                      split_target)
from mdl.conformance.registry_blobs import BLOCK, GeneratedBlob, default_chunk
from mdl.conformance.registry_checks import limit_artifact, model_artifact
from mdl.errors import UsageError
from mdl.registry.client import Exchange
from mdl.registry.client import redact_headers
from mdl.spec import mediatypes as mt
from mdl.spec import schemas
from tests.conftest import REPO_ROOT

SECRET = "s3cr3t-token"


def _exchange(method: str, url: str, status: int, **response_headers: str) -> dict:
    ex = Exchange(method, url, status, redact_headers({"Authorization": f"Bearer {SECRET}", "User-Agent": "x"}),
                  redact_headers({"Date": "today", **response_headers}))
    return exchange_dict(ex)


def _report() -> Report:
    results = [
        CheckResult("api-root", "The registry answers the API root", True, "https://example/spec#x", PASS,
                    "GET /v2/ answered 200", 0.01, [_exchange("GET", "http://r/v2/", 200)], {"api_version": "2"}),
        CheckResult("blob/chunked", "Stores a large blob sent in chunks", True, "spec#chunks", FAIL,
                    "PATCH of bytes 0-99 answered 416, expected 202", 1.5,
                    [_exchange("PATCH", "http://r/v2/ns/x/blobs/uploads/u", 416, Range="0-0")],
                    {"oci_chunk_min_length": 5 << 20, "largest_chunk_accepted": 4 << 20, "last_chunk": 1 << 20,
                     "chunks": 3, "refused_chunks": [{"size": 8 << 20, "status": 416}]},
                    ["blob sha256:ab in ns/x (DELETE answered 405 UNSUPPORTED)"]),
        CheckResult("referrers/api", "Lists referrers", False, "spec#referrers", NOT_SUPPORTED,
                    "GET referrers answered 404", 0.2, [_exchange("GET", "http://r/v2/ns/x/referrers/d", 404)]),
    ]
    return Report("r.example:5000", "ns", ["ns/x"], "quick", 64 << 20, "2026-01-01T00:00:00Z", 2.5, results,
                  [{"repository": "ns/x", "kind": "blob", "digest": "sha256:ab"}],
                  ["repository ns/x: still listed in /v2/_catalog (the API has no repository delete)"])


def test_exchanges_keep_the_relevant_headers_redacted():
    ex = _exchange("PATCH", "http://r/v2/ns/x/blobs/uploads/u", 202, Range="0-9", Location="/next?token=abc")
    assert ex["request_headers"] == {"Authorization": "<redacted>"}
    assert ex["response_headers"]["Range"] == "0-9" and "Date" not in ex["response_headers"]
    assert "abc" not in ex["response_headers"]["Location"]


def test_json_report(tmp_path):
    json_path, junit_path = rep.write_reports(_report(), tmp_path / "out")
    assert json_path.name == "registry-report.json" and junit_path.name == "registry-junit.xml"
    text = json_path.read_text()
    assert SECRET not in text
    doc = json.loads(text)
    assert doc["summary"] == {"pass": 1, "fail": 1, "not-supported": 1, "required_failed": ["blob/chunked"]}
    assert [c["status"] for c in doc["checks"]] == [PASS, FAIL, NOT_SUPPORTED]
    chunked = doc["checks"][1]
    assert chunked["exchanges"][0]["status"] == 416 and chunked["data"]["refused_chunks"][0]["status"] == 416
    assert doc["left_behind"] == ["blob sha256:ab in ns/x (DELETE answered 405 UNSUPPORTED)"]
    assert doc["pushed"] == [{"repository": "ns/x", "kind": "blob", "digest": "sha256:ab"}]
    assert doc["not_removable"] == ["repository ns/x: still listed in /v2/_catalog (the API has no repository delete)"]
    assert {"registry", "namespace", "repositories", "mode", "blob_size", "started", "seconds"} <= set(doc)


def test_junit_report(tmp_path):
    _, junit_path = rep.write_reports(_report(), tmp_path)
    text = junit_path.read_text()
    assert SECRET not in text
    root = ET.fromstring(text)
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(cases) == ["api-root", "blob/chunked", "referrers/api"]
    assert cases["blob/chunked"].get("classname") == "registry.blob"
    failure = cases["blob/chunked"].find("failure")
    assert failure.get("message") == "PATCH of bytes 0-99 answered 416, expected 202"
    assert failure.get("type") == "required" and "PATCH http://r/v2/ns/x/blobs/uploads/u -> 416" in failure.text
    assert cases["referrers/api"].find("skipped").get("message").startswith("not supported: ")
    assert cases["api-root"].find("failure") is None and cases["api-root"].find("skipped") is None
    props = {p.get("name"): p.get("value") for p in cases["referrers/api"].find("properties")}
    assert props == {"required": "false", "link": "spec#referrers"}
    assert "left behind: blob sha256:ab" in cases["blob/chunked"].find("system-out").text
    assert suite.find("system-out").text == ("not removable through the API: repository ns/x: still listed in "
                                             "/v2/_catalog (the API has no repository delete)")


def test_summary():
    text = rep.summary(_report())
    lines = text.splitlines()
    assert lines[0] == "Registry conformance of r.example:5000/ns (quick, blob 64 MiB) in 2.5 s"
    assert lines[1].split()[:3] == ["PASS", "api-root", "required"]
    assert lines[2].split()[:3] == ["FAIL", "blob/chunked", "required"]
    assert lines[3].split()[:4] == ["NOT", "SUPPORTED", "referrers/api", "optional"]
    assert "Chunk limits: OCI-Chunk-Min-Length 5242880; largest chunk accepted 4 MiB; refused: 8 MiB (416)" in text
    assert "Left behind (1): blob sha256:ab" in text
    assert lines[-2] == ("Not removable through the API: repository ns/x: still listed in /v2/_catalog (the API "
                         "has no repository delete)")
    assert lines[-1] == "1 passed, 1 failed (1 required), 1 not supported"


def _readme_checks() -> dict[str, bool]:
    rows = {}
    for line in (REPO_ROOT / "conformance" / "registry" / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`") and cells[1] in ("yes", "no"):
            rows[cells[0].strip("`")] = cells[1] == "yes"
    return rows


def test_the_readme_lists_every_check():
    checks = all_checks()
    assert len({c.id for c in checks}) == len(checks)
    assert _readme_checks() == {c.id: c.required for c in checks}
    for c in checks:
        assert c.link.startswith(("spec/", "https://github.com/opencontainers/distribution-spec/")), c.link
        if c.link.startswith("spec/"):
            assert (REPO_ROOT / c.link.split("#")[0]).is_file(), c.link


@pytest.mark.parametrize("text,size", [("67108864", 64 << 20), ("1GiB", 1 << 30), ("512 MiB", 512 << 20),
                                       ("100000000", 100_000_000), ("1.5g", 3 << 29), ("4194304b", 4 << 20)])
def test_blob_size(text, size):
    assert parse_blob_size(text) == size


@pytest.mark.parametrize("text", ["", "big", "10 parsecs", "1", "-5", "1MiB"])
def test_blob_size_refused(text):
    with pytest.raises(UsageError):
        parse_blob_size(text)


def test_split_target():
    assert split_target("127.0.0.1:5000/NS/sub/") == ("127.0.0.1:5000", "ns/sub")
    assert split_target("ghcr.io") == ("ghcr.io", "")
    assert split_target("localhost/x") == ("localhost", "x")
    with pytest.raises(UsageError):
        split_target("myorg/models")


def test_generated_blob_is_deterministic_and_random_access():
    size = 2 * BLOCK + 12345
    blob = GeneratedBlob("seed", size)
    whole = b"".join(blob.pieces())
    assert len(whole) == size and whole == b"".join(GeneratedBlob("seed", size).pieces())
    assert whole != b"".join(GeneratedBlob("other", size).pieces())
    assert blob.digest == "sha256:" + hashlib.sha256(whole).hexdigest()
    for start, end in ((0, 1), (BLOCK - 3, BLOCK + 3), (size - 10, size), (BLOCK, 2 * BLOCK)):
        assert blob.read(start, end) == whole[start:end]
        assert len(blob.body(start, end)) == end - start and b"".join(blob.body(start, end)) == whole[start:end]
    stream, offset = blob.open_blob(blob.descriptor(), BLOCK + 7)
    assert offset == BLOCK + 7 and stream.read() == whole[BLOCK + 7:]


def test_default_chunk():
    assert default_chunk(64 << 20) == 12 << 20
    assert default_chunk(1 << 30) == 64 << 20
    assert default_chunk(3 << 20) == 1 << 20


@pytest.mark.parametrize("kind", ["docker-v0.1", "docker-v0.2", "cncf-v1", "cnai-v1"])
def test_model_artifacts_pass_the_schemas(kind):
    art = model_artifact(kind, "unit")
    config, config_type = art.blobs[0]
    assert art.manifest.config.media_type == config_type
    schemas.check(json.loads(config), schemas.config_schema_for(config_type), "config")
    schemas.check(art.manifest.as_dict(), schemas.manifest_schema_for(config_type), "manifest")
    digests = {hashlib.sha256(data).hexdigest() for data, _ in art.blobs}
    assert {d.digest.split(":")[1] for d in art.manifest.blob_descriptors()} == digests
    assert art.manifest.artifact_type == {"cncf-v1": mt.CNCF_ARTIFACT_TYPE, "cnai-v1": mt.CNAI_ARTIFACT_TYPE}.get(kind)


def test_a_referrer_names_its_subject():
    subject = model_artifact("cncf-v1", "s").manifest
    referrer = model_artifact("cncf-v1", "r", subject.descriptor()).manifest
    assert referrer.subject.digest == subject.digest


@pytest.mark.parametrize("target", [300_000, 300_001, 300_002, 300_003])
def test_limit_artifact_is_exact(target):
    # Paths are written twice (filepath and title): an odd remainder is padded in the base name too.
    art = limit_artifact("unit", target=target)
    assert len(art.manifest.raw) == target
    assert len(art.manifest.layers) > 100
    last = art.manifest.layers[-1].annotations
    assert last[mt.ANNOTATION_TITLE] == last[mt.ANNOTATION_FILEPATH]
