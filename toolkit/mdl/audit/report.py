"""An audit's report as JSON (`AuditReport.as_dict()`), as JUnit XML for CI, and as the terminal summary.

JUnit: one testsuite, one testcase per artifact (classname `audit.<repository>`, name its tags or
digest): a model with findings is a `<failure>` whose message lists the broken cases and whose body
lists each finding with its case and spec link; an artifact that could not be audited is an `<error>`;
what is not a model (and has no finding) is `<skipped>`. A repository whose tags could not be listed is
a testcase with an `<error>` too.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from ..formats.units import format_binary_size
from ..store.locks import atomic_write
from .model import Artifact, AuditReport


def to_json(report: AuditReport) -> str:
    return json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n"


def finding_line(f: dict) -> str:
    where = f["path"] if f["document"] == "manifest" else f"{f['document']} {f['path']}"
    cases = ", ".join(f"{c['id']} ({c['spec']})" for c in f["cases"]) or "no case: integrity"
    return f"[{f['kind']}] {where}: {f['message']} -- {cases}"


def to_junit(report: AuditReport) -> str:
    cases = [_testcase(a) for a in report.artifacts] + [_repository_case(r) for r in report.repositories if r.error]
    counts = {k: sum(c.find(k) is not None for c in cases) for k in ("failure", "error", "skipped")}
    suite = ET.Element("testsuite", {
        "name": f"mdl audit: {report.registry}", "tests": str(len(cases)), "failures": str(counts["failure"]),
        "errors": str(counts["error"]), "skipped": str(counts["skipped"]), "time": f"{report.seconds:.3f}",
        "timestamp": report.started,
    })
    props = ET.SubElement(suite, "properties")
    for name, value in (("registry", report.registry), ("targets", " ".join(report.targets)),
                        *((k, _text(v)) for k, v in report.settings.items())):
        ET.SubElement(props, "property", {"name": name, "value": value})
    suite.extend(cases)
    root = ET.Element("testsuites", {"name": "mdl audit", "tests": str(len(cases)), "failures": str(counts["failure"]),
                                      "errors": str(counts["error"]), "skipped": str(counts["skipped"])})
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _testcase(a: Artifact) -> ET.Element:
    case = ET.Element("testcase", {"classname": f"audit.{a.repository}",
                                   "name": ", ".join(a.tags) if a.tags else a.digest, "time": "0"})
    props = ET.SubElement(case, "properties")
    for name, value in (("digest", a.digest), ("kind", a.kind), ("format", a.format or ""), ("size", str(a.size)),
                        ("signature", (a.signature or {}).get("status", ""))):
        ET.SubElement(props, "property", {"name": name, "value": value})
    if a.error is not None:
        ET.SubElement(case, "error", {"message": a.error["message"], "type": a.error["kind"]})
    elif not a.ok:
        rules = a.failed_cases + sorted({f"[{f['kind']}]" for f in a.findings if not f["cases"]})
        lines = [finding_line(f) for f in a.findings]
        if a.signature_failed:
            rules.append(f"[signature: {a.signature['status']}]")
            lines.append(f"signature {a.signature['status']}: {(a.signature.get('error') or {}).get('message', '')}")
        ET.SubElement(case, "failure", {"message": "fails " + ", ".join(rules), "type": "findings"}).text = \
            "\n".join(lines)
    elif not a.is_model:
        ET.SubElement(case, "skipped", {"message": f"not a model ({a.kind}): not checked against the cases"})
    return case


def _repository_case(r) -> ET.Element:
    case = ET.Element("testcase", {"classname": f"audit.{r.name}", "name": "(tags)", "time": "0"})
    ET.SubElement(case, "error", {"message": r.error["message"], "type": r.error["kind"]})
    return case


def write_file(path: str | os.PathLike, text: str) -> Path:
    """Write a report file atomically (its directory is created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(p, text.encode("utf-8"))
    return p


def summary(report: AuditReport) -> str:
    """The terminal summary: the totals, then each artifact that fails or could not be audited."""
    c = report.counts()
    s = report.settings
    how = s["profile"] + " profile" + (", layers hashed" if s["deep"] else "") + (", key given" if s["key"] else "")
    lines = [f"Audit of {report.registry} ({how}) in {report.seconds:.1f} s: "
             f"{_n(c['repositories'], 'repository', 'repositories')}, {_n(c['tags'], 'tag')}, "
             f"{_n(c['artifacts'], 'artifact')} ({c['checkedNow']} checked, {c['fromState']} from the state file)"]
    if c["kinds"]:
        lines.append("  kinds: " + ", ".join(f"{k} {n}" for k, n in c["kinds"].items()))
    if c["formats"]:
        lines.append("  formats: " + ", ".join(f"{k} {n}" for k, n in c["formats"].items()))
    if c["models"]:
        largest = max(report.models, key=lambda a: a.size)
        lines.append(f"  models: {c['models']}, {sum(not a.ok for a in report.models)} failing; signatures: "
                     + ", ".join(f"{k} {n}" for k, n in c["signatures"].items())
                     + f"; largest {largest.name} ({format_binary_size(largest.size)})")
    for a in report.artifacts:
        if a.error is not None:
            lines.append(f"ERROR  {a.name} ({a.kind}): {a.error['message']}")
        elif not a.ok:
            what = [_n(len(a.findings), "finding")] if a.findings else []
            what += [f"signature {a.signature['status']}"] if a.signature_failed else []
            lines.append(f"FAILED {a.name} ({a.digest[7:19]}, {a.kind}): {', '.join(what)}")
            lines += [f"  {finding_line(f)}" for f in a.findings]
            if a.signature_failed:
                lines.append(f"  signature {a.signature['status']}: {(a.signature.get('error') or {}).get('message', '')}")
    lines += [f"ERROR  repository {r.name}: {r.error['message']}" for r in report.repositories if r.error]
    verdict = {0: "sound", 1: f"{_n(c['failing'], 'artifact')} failing", 2: f"incomplete: {_n(c['errors'], 'error')}"}
    lines.append(f"{'OK' if report.exit_code == 0 else 'FAILED'}: {verdict[report.exit_code]}")
    return "\n".join(lines)


def _n(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _text(value) -> str:
    return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
