"""`mdl conformance artifacts|lint|check`: the artifact cases against the library, the cases themselves,
and one real artifact (local store, OCI layout or registry) against every case that applies."""

from __future__ import annotations

from pathlib import Path

import typer

from ..conformance import artifacts as suite
from ..layout.dir import LayoutDir
from ..model_check import check_model_in_source
from ..ops.verify import verify
from ..reference import parse_reference
from ..store.sides import StoreSource
from .common import JSON_OPTION, open_store, print_json, short_id
from .remote import CA_FILE, PLAIN_HTTP, RemoteOptions

CASES = typer.Option(None, "--cases", help="Directory of case files (default: the suite shipped with mdl).")


def artifacts_command(
    cases: Path = CASES,
    json_output: bool = JSON_OPTION,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="List every test, not only failures."),
) -> None:
    """Run the artifact conformance cases against mdl's library; exit 1 if any test fails."""
    loaded = suite.load_suite(cases)
    results = suite.run_suite(loaded)
    failed = [r for r in results if not r.passed]
    if json_output:
        print_json({"ok": not failed, "cases": len(loaded), "tests": len(results), "failed": len(failed),
                    "results": [r.as_dict() for r in results]})
    else:
        for r in results:
            if verbose or not r.passed:
                print(f"{'PASS' if r.passed else 'FAIL'}  {r.case.id}: {r.test.description}")
                if not r.passed:
                    print(f"      {r.detail}")
        print(f"{len(results) - len(failed)}/{len(results)} tests passed in {len(loaded)} cases")
    if failed:
        raise typer.Exit(1)


def lint_command(
    cases: Path = CASES,
    json_output: bool = JSON_OPTION,
) -> None:
    """Lint the case files: JSON, the case schema, unique descriptions, spec links and quotes."""
    problems = suite.lint(cases)
    if json_output:
        print_json({"ok": not problems, "problems": [p.__dict__ for p in problems]})
    else:
        for p in problems:
            print(p)
        print(f"{len(problems)} problem(s)" if problems else "the suite is clean")
    if problems:
        raise typer.Exit(1)


def check_command(
    target: str = typer.Argument(..., help="A model reference or ID (local store, else its registry), or an "
                                           "OCI layout directory."),
    cases: Path = CASES,
    remote: bool = typer.Option(False, "--remote", help="Check the registry's copy even if the model is local."),
    shallow: bool = typer.Option(False, "--shallow", help="Registry: check layers by size (HEAD), not by hash."),
    written: bool = typer.Option(False, "--written", help="Also apply the written profile: what a writer (mdl "
                                                          "package) must produce, beyond what readers accept."),
    json_output: bool = JSON_OPTION,
    plain_http: bool = PLAIN_HTTP,
    ca_file: str = CA_FILE,
) -> None:
    """Check one real artifact against every case of the suite that applies to it; exit 1 on any failure."""
    loaded = suite.load_suite(cases)
    options = RemoteOptions(plain_http, ca_file)
    checked = []
    for report, source in _reports(target, remote, not shallow, options):
        extra = suite.written_findings(source(), report.digest, report.findings) if written else None
        checked.append(_verdict(report, loaded, extra))
    ok = all(c["ok"] for c in checked)
    if json_output:
        print_json({"ok": ok, "profile": "written" if written else "reader", "artifacts": checked})
    else:
        for c in checked:
            _render(c)
    if not ok:
        raise typer.Exit(1)


def _reports(target: str, remote: bool, deep: bool, options: RemoteOptions):
    """(verify report, where its manifest lies) for each artifact `target` names: every model of a
    layout, else the model in the local store (unless `remote`), else in its registry."""
    if (Path(target) / "oci-layout").is_file():
        layout = LayoutDir(target)
        return [(check_model_in_source(layout, entry["digest"], deep=True), lambda: layout)
                for entry in layout.read_index()]
    store = open_store()
    reports = verify(store, target, open_repository=options.open, remote=remote, deep=deep).reports
    # verify read the store's copy unless `remote` or the store lacks it; the same bytes are read again here.
    local = not remote and all(store.has_blob(r.digest) for r in reports)
    return [(r, (lambda: StoreSource(store)) if local else (lambda: options.open(parse_reference(target))))
            for r in reports]


def _verdict(report, cases: list[suite.Case], written: list | None = None) -> dict:
    config_type = report.config_media_type
    verdicts, unmatched = suite.classify(report.findings, config_type, cases, written)
    failed = [v for v in verdicts if not v.passed]
    return {
        "ok": not failed and not unmatched,
        "name": ", ".join(report.tags) or report.digest,
        "digest": report.digest,
        "format": suite.artifact_format(config_type),
        "cases": len(verdicts),
        "failed": [{"case": v.case.id, "spec": v.case.link, "profile": v.case.profile,
                    "findings": [f.__dict__ for f in v.findings]} for v in failed],
        "other_findings": [f.__dict__ for f in unmatched],
        "blobs_checked": report.blobs_checked,
        "layers_hashed": report.layers_hashed,
    }


def _render(c: dict) -> None:
    status = "OK    " if c["ok"] else "FAILED"
    print(f"{status} {c['name']} ({short_id(c['digest'])}, {c['format'] or 'not a model'}): "
          f"{c['cases'] - len(c['failed'])}/{c['cases']} cases pass, {c['blobs_checked']} blobs checked")
    for v in c["failed"]:
        print(f"  FAIL {v['case']} ({v['spec']})")
        for f in v["findings"]:
            print(f"       [{f['kind']}] {f['document']} {f['path']}: {f['message']}")
    for f in c["other_findings"]:
        print(f"  FAIL [{f['kind']}] {f['document']} {f['path']}: {f['message']}")
