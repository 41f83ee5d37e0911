"""The artifact conformance suite: load the case files, run them against the library, lint them, and
tell which cases a real artifact's findings break.

A case file (`conformance/artifacts/*.json`, schema `conformance-case.schema.json`) is an array of
cases; a case tests one rule of `spec/` on documents of one media type. A test passes when the
library's verdict is the expected one: no finding for a valid document; for an invalid one, a
finding of exactly the named kind at exactly the named JSON path (so it cannot pass for the wrong
reason). The algorithm is written out in conformance/README.md for other implementations.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..artifact_check import Finding, config_findings, document_findings, manifest_findings, reference_findings
from ..content.copy import read_small_blob
from ..errors import MdlError
from ..reference import parse_reference
from ..spec import mediatypes as mt
from ..spec import schemas
from ..spec.resources import conformance_dir, spec_dir

CASE_SCHEMA = "conformance-case"


class CaseFileError(MdlError):
    """A case file cannot be read as a suite (not JSON, or not a case file): run `mdl conformance lint`."""

    kind = "case-file"

    def __init__(self, path: Path, problem: str):
        self.path = str(path)
        super().__init__(f"{path}: {problem}", "run `mdl conformance lint` on the cases for every problem")


@dataclass(frozen=True)
class Test:
    description: str
    document: object
    valid: bool
    error: tuple[str, str] | None = None  # (kind, path) an invalid document must fail with
    companion: dict | None = None
    normalized: str | None = None


@dataclass(frozen=True)
class Case:
    id: str  # "<file stem>/<description slug>"
    file: str
    description: str
    link: str
    quote: str
    media_type: str | None  # None for references
    format: str | None
    profile: str
    tests: tuple[Test, ...]

    @property
    def is_reference(self) -> bool:
        return self.media_type is None


@dataclass
class TestResult:
    case: Case
    test: Test
    passed: bool
    detail: str  # why it failed ("" when it passed)

    def as_dict(self) -> dict:
        return {"case": self.case.id, "test": self.test.description, "passed": self.passed, "detail": self.detail}


# ---------------------------------------------------------------------------------------------
# loading


def default_cases_dir() -> Path:
    return conformance_dir() / "artifacts"


def case_files(cases_dir: Path) -> list[Path]:
    files = sorted(Path(cases_dir).glob("*.json"))
    if not files:
        raise CaseFileError(Path(cases_dir), "no case files (*.json) here")
    return files


def load_suite(cases_dir: Path | None = None) -> list[Case]:
    """Every case of every file, in file order; a file that is not a valid case file is an error."""
    cases: list[Case] = []
    for path in case_files(cases_dir or default_cases_dir()):
        doc = _read_json(path)
        findings = schemas.validate(doc, CASE_SCHEMA)
        if findings:
            f = findings[0]
            raise CaseFileError(path, f"not a case file at {f.path}: {f.message}")
        cases += [_case(path, c) for c in doc]
    return cases


def _read_json(path: Path):
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise CaseFileError(path, f"not JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except OSError as e:
        raise CaseFileError(path, f"cannot read it: {e.strerror}") from None


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _case(path: Path, c: dict) -> Case:
    tests = tuple(Test(t["description"], t["document"], t["valid"],
                       (t["error"]["kind"], t["error"]["path"]) if "error" in t else None,
                       t.get("companion"), t.get("normalized")) for t in c["tests"])
    return Case(f"{path.stem}/{slug(c['description'])}", path.name, c["description"], c["spec"]["link"],
                c["spec"]["quote"], c.get("mediaType"), c.get("format"), c.get("profile", "reader"), tests)


# ---------------------------------------------------------------------------------------------
# running


def findings_for(case: Case, test: Test) -> list[Finding]:
    if case.is_reference:
        return reference_findings(test.document) if isinstance(test.document, str) else [
            Finding("reference", "$", "a reference is a string")]
    return document_findings(case.media_type, test.document, written=case.profile == "written",
                             companion=test.companion, format=case.format)


def run_test(case: Case, test: Test) -> TestResult:
    try:
        found = findings_for(case, test)
    except MdlError as e:  # a rule that raises instead of reporting is a failure of the library
        return TestResult(case, test, False, f"the library raised {e.kind}: {e.message}")
    listed = "; ".join(f"[{f.kind}] {f.path}: {f.message}" for f in found[:3])
    if test.valid:
        if found:
            return TestResult(case, test, False, f"expected valid, got {len(found)} finding(s): {listed}")
        if test.normalized is not None:
            got = str(parse_reference(test.document))
            if got != test.normalized:
                return TestResult(case, test, False, f"normalized to {got!r}, expected {test.normalized!r}")
        return TestResult(case, test, True, "")
    kind, path = test.error
    if any(f.kind == kind and f.path == path for f in found):
        return TestResult(case, test, True, "")
    if not found:
        return TestResult(case, test, False, f"expected [{kind}] at {path}, but the document was accepted")
    return TestResult(case, test, False, f"expected [{kind}] at {path}, got: {listed}")


def run_suite(cases: list[Case]) -> list[TestResult]:
    return [run_test(case, test) for case in cases for test in case.tests]


# ---------------------------------------------------------------------------------------------
# linting


@dataclass(frozen=True)
class LintProblem:
    file: str
    where: str  # the case (and test) description, or the JSON path in the file
    problem: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.problem}"


def lint(cases_dir: Path | None = None, spec_root: Path | None = None) -> list[LintProblem]:
    """Every problem of the suite: files that are not JSON or not case files, repeated descriptions,
    media types outside the table, spec links to no heading, quotes not in the linked section."""
    spec_root = spec_root or spec_dir()
    problems: list[LintProblem] = []
    seen: dict[str, str] = {}
    try:
        files = case_files(cases_dir or default_cases_dir())
    except CaseFileError as e:
        return [LintProblem(e.path, "$", "no case files (*.json) here")]
    for path in files:
        try:
            doc = _read_json(path)
        except CaseFileError as e:
            problems.append(LintProblem(path.name, "$", e.message.split(": ", 1)[1]))
            continue
        bad = schemas.validate(doc, CASE_SCHEMA)
        problems += [LintProblem(path.name, f.path, f.message) for f in bad]
        if bad:
            continue
        for c in doc:
            problems += _lint_case(path.name, c, seen, spec_root)
    return problems


def _lint_case(file: str, c: dict, seen: dict[str, str], spec_root: Path) -> list[LintProblem]:
    out = []
    where = c["description"]
    key = slug(where)
    if key in seen:
        out.append(LintProblem(file, where, f"case description repeats one in {seen[key]}"))
    seen[key] = file
    tests = [slug(t["description"]) for t in c["tests"]]
    for t in c["tests"]:
        if tests.count(slug(t["description"])) > 1:
            out.append(LintProblem(file, f"{where} / {t['description']}", "test description repeats in its case"))
    if "mediaType" in c and mt.entry(c["mediaType"]) is None:
        out.append(LintProblem(file, where, f"media type {c['mediaType']!r} is not in schemas/media-types.json"))
    problem = spec_link_problem(c["spec"]["link"], c["spec"]["quote"], spec_root)
    if problem:
        out.append(LintProblem(file, where, problem))
    return out


def heading_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def _squash(text: str) -> str:
    return " ".join(text.split())


def spec_link_problem(link: str, quote: str, spec_root: Path) -> str | None:
    """Why `link` (spec/<file>.md#<anchor>) does not resolve, or `quote` is not in that section; None if fine."""
    file, _, anchor = link.partition("#")
    path = spec_root / file.removeprefix("spec/")
    if not path.is_file():
        return f"spec link {link}: no such spec document"
    section = _section(path.read_text(encoding="utf-8"), anchor)
    if section is None:
        return f"spec link {link}: no heading with that anchor"
    if _squash(quote) not in _squash(section):
        return f"spec link {link}: the quote is not in that section: {quote!r}"
    return None


def _section(text: str, anchor: str) -> str | None:
    """The text under the heading whose anchor is `anchor`, up to the next heading of its level or above."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(#+)\s+(.*)$", line)
        if m and heading_anchor(m.group(2)) == anchor:
            level = len(m.group(1))
            body = []
            for rest in lines[i + 1:]:
                n = re.match(r"^(#+)\s", rest)
                if n and len(n.group(1)) <= level:
                    break
                body.append(rest)
            return "\n".join(body)
    return None


# ---------------------------------------------------------------------------------------------
# a real artifact's findings, by the case each one breaks


def _shape(path: str) -> str:
    return re.sub(r"\[\d+\]", "[]", path)


@dataclass
class CaseVerdict:
    case: Case
    findings: list[Finding] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.findings


def artifact_format(config_media_type: str | None) -> str | None:
    if config_media_type in mt.DOCKER_CONFIGS:
        return "docker"
    if config_media_type in mt.MODELPACK_CONFIGS:
        return "modelpack"
    return None


def classify(findings: list[Finding], config_media_type: str | None, cases: list[Case],
             written: list[Finding] | None = None) -> tuple[list[CaseVerdict], list[Finding]]:
    """The reader cases that apply to an artifact whose config has `config_media_type`, each with the
    findings that break it (a finding breaks a case when one of the case's invalid tests names its kind
    and, indices aside, its path); with `written` (what the written profile finds beyond the reader
    profile), the written cases too, broken only by those; and the findings no case names (integrity:
    missing or corrupt blobs)."""
    fmt = artifact_format(config_media_type)
    doc_types = {"manifest": mt.OCI_MANIFEST, "config": config_media_type}

    def applying(profile: str) -> list[CaseVerdict]:
        return [CaseVerdict(c) for c in cases
                if c.profile == profile and c.media_type in doc_types.values() and c.format in (None, fmt)]

    reader = applying("reader")
    written_verdicts = applying("written") if written is not None else []
    unmatched = _assign(findings, reader, doc_types) + _assign(written or [], written_verdicts, doc_types)
    return reader + written_verdicts, unmatched


def _assign(findings: list[Finding], verdicts: list[CaseVerdict], doc_types: dict) -> list[Finding]:
    """Add each finding to the verdicts of the cases it breaks; return those that break none."""
    unmatched = []
    for f in findings:
        hit = False
        for v in verdicts:
            if v.case.media_type != doc_types.get(f.document):
                continue
            if any(t.error == (f.kind, t.error[1]) and _shape(t.error[1]) == _shape(f.path)
                   for t in v.case.tests if t.error):
                v.findings.append(f)
                hit = True
        if not hit:
            unmatched.append(f)
    return unmatched


def written_findings(source, digest: str, reader: list[Finding]) -> list[Finding]:
    """What the written profile finds, beyond `reader`, on the manifest `digest` in `source` (a store, an
    OCI layout or a registry repository: a ModelSource) and its config. A config that cannot be read is
    the reader report's finding already: the manifest is then checked alone."""
    manifest = source.fetch_manifest(digest)
    doc = manifest.as_dict()
    config = None
    if manifest.config is not None:
        try:
            config = json.loads(read_small_blob(source, manifest.config))
        except (MdlError, ValueError):
            config = None
    found = manifest_findings(doc, config if isinstance(config, dict) else None, written=True)
    if isinstance(config, dict) and manifest.config.media_type in mt.MODEL_CONFIGS:
        found += config_findings(config, manifest.config.media_type, written=True, manifest=doc)
    seen = {(f.kind, f.path, f.document) for f in reader}
    return [f for f in found if (f.kind, f.path, f.document) not in seen]
