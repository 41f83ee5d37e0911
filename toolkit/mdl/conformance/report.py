"""Reports of a registry conformance run: a JSON document, JUnit XML for CI, and a human summary.

JSON (`registry-report.json`): `Report.to_dict()`, every check with its status, reason, the exchanges that
decided it and its data. JUnit (`registry-junit.xml`): one testsuite, one testcase per check; `fail` is a
`<failure>`, `not-supported` a `<skipped>`; the reason is the message, the exchanges the body, and
`required` a property, so CI can tell a failed optional check from a failed required one.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from .registry import FAIL, MIB, NOT_SUPPORTED, PASS, Report

JSON_NAME = "registry-report.json"
JUNIT_NAME = "registry-junit.xml"
_LABEL = {PASS: "PASS", FAIL: "FAIL", NOT_SUPPORTED: "NOT SUPPORTED"}


def to_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"


def _exchange_line(ex: dict) -> str:
    status = ex["status"] if ex.get("status") is not None else f"error: {ex.get('error')}"
    line = f"{ex['method']} {ex['url']} -> {status}"
    for key in ("request_headers", "response_headers"):
        if ex.get(key):
            line += f" {key.split('_')[0]}={json.dumps(ex[key], sort_keys=True)}"
    return line


def to_junit(report: Report) -> str:
    counts = report.counts()
    suite = ET.Element("testsuite", {
        "name": f"mdl registry conformance: {report.registry}", "tests": str(len(report.results)),
        "failures": str(counts[FAIL]), "errors": "0", "skipped": str(counts[NOT_SUPPORTED]),
        "time": f"{report.seconds:.3f}", "timestamp": report.started,
    })
    props = ET.SubElement(suite, "properties")
    for name, value in (("registry", report.registry), ("namespace", report.namespace), ("mode", report.mode),
                        ("blob_size", str(report.blob_size))):
        ET.SubElement(props, "property", {"name": name, "value": value})
    for r in report.results:
        case = ET.SubElement(suite, "testcase", {"classname": f"registry.{r.id.split('/')[0]}", "name": r.id,
                                                 "time": f"{r.seconds:.3f}"})
        case_props = ET.SubElement(case, "properties")
        ET.SubElement(case_props, "property", {"name": "required", "value": str(r.required).lower()})
        ET.SubElement(case_props, "property", {"name": "link", "value": r.link})
        detail = "\n".join(_exchange_line(x) for x in r.exchanges)
        if r.status == FAIL:
            ET.SubElement(case, "failure", {"message": r.reason, "type": "required" if r.required else "optional"}
                          ).text = detail
        elif r.status == NOT_SUPPORTED:
            ET.SubElement(case, "skipped", {"message": f"not supported: {r.reason}"})
        out = [r.reason, detail]
        if r.data:
            out.append("data: " + json.dumps(r.data, sort_keys=True))
        if r.left_behind:
            out.append("left behind: " + "; ".join(r.left_behind))
        ET.SubElement(case, "system-out").text = "\n".join(x for x in out if x)
    if report.not_removable:
        ET.SubElement(suite, "system-out").text = "not removable through the API: " + "; ".join(report.not_removable)
    root = ET.Element("testsuites", {"name": "mdl conformance", "tests": str(len(report.results)),
                                      "failures": str(counts[FAIL]), "skipped": str(counts[NOT_SUPPORTED])})
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_reports(report: Report, directory: str | os.PathLike) -> tuple[Path, Path]:
    """Write `registry-report.json` and `registry-junit.xml` into `directory` (created if missing)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = (d / JSON_NAME, d / JUNIT_NAME)
    for path, text in zip(paths, (to_json(report), to_junit(report))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return paths


def result_line(r) -> str:
    """One check as the summary prints it."""
    return f"  {_LABEL[r.status]:<13}  {r.id:<30} {'required' if r.required else 'optional':<8}  {r.reason}"


def summary(report: Report) -> str:
    """The human summary: a line per check, the chunk limits, what was left behind, the totals."""
    counts = report.counts()
    size = f"{report.blob_size / MIB:g} MiB"
    target = f"{report.registry}/{report.namespace}" if report.namespace else report.registry
    lines = [f"Registry conformance of {target} ({report.mode}, blob {size}) in {report.seconds:.1f} s"]
    lines += [result_line(r) for r in report.results]
    chunked = next((r for r in report.results if r.id == "blob/chunked" and r.data.get("chunks")), None)
    if chunked is not None:
        d = chunked.data
        min_len = d.get("oci_chunk_min_length")
        refused = ", ".join(f"{x['size'] / MIB:g} MiB ({x['status']})" for x in d.get("refused_chunks") or []) or "none"
        lines.append(f"Chunk limits: OCI-Chunk-Min-Length {min_len if min_len is not None else 'not sent'}; "
                     f"largest chunk accepted {d['largest_chunk_accepted'] / MIB:g} MiB; refused: {refused}")
    left = [x for r in report.results for x in r.left_behind]
    if left:
        more = f"; and {len(left) - 3} more (see the JSON report)" if len(left) > 3 else ""
        lines.append(f"Left behind ({len(left)}): " + "; ".join(left[:3]) + more)
    if report.not_removable:
        lines.append("Not removable through the API: " + "; ".join(report.not_removable))
    failed = report.failed_required
    lines.append(f"{counts[PASS]} passed, {counts[FAIL]} failed ({len(failed)} required), "
                 f"{counts[NOT_SUPPORTED]} not supported")
    return "\n".join(lines)
