"""`mdl conformance e2e REGISTRY[/NAMESPACE]`: generate, package, push, pull, verify, serve and chat, then
clean up (mdl.conformance.e2e); one line per step, a summary, exit 1 when a step failed."""

from __future__ import annotations

import json

import typer

from ..conformance.e2e import run_e2e
from .common import JSON_OPTION
from .remote import CA_FILE, PLAIN_HTTP, RemoteOptions

_STATUS = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}


def command(
    target: str = typer.Argument(..., metavar="REGISTRY[/NAMESPACE]",
                                 help="Where to push the test model, e.g. localhost:5000/e2e."),
    plain_http: bool = PLAIN_HTTP,
    ca_file: str = CA_FILE,
    json_output: bool = JSON_OPTION,
    keep: bool = typer.Option(False, "--keep", help="Leave what was pushed in the registry (for debugging)."),
) -> None:
    """Run the whole chain against a registry: a generated tiny GGUF, packaged in both formats, pushed,
    pulled into a fresh store, verified, served, and answering a chat exactly as llama.cpp does."""
    report = run_e2e(target, RemoteOptions(plain_http, ca_file, concurrency=2).open, keep=keep,
                     on_step=None if json_output else _print_step)
    if json_output:
        print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        for label, items in (("Left behind", report.left_behind), ("Not removable through the API",
                                                                   report.not_removable)):
            if items:
                print(f"{label}: " + "; ".join(items))
        counts = report.counts()
        print(f"{'ok' if report.ok else 'FAILED'}: {counts['pass']} passed, {counts['fail']} failed, "
              f"{counts['skip']} skipped in {report.seconds:.1f}s ({report.registry}/{report.repository})")
    if not report.ok:
        raise typer.Exit(1)


def _print_step(step) -> None:
    name = f"{step.name} ({step.format})" if step.format else step.name
    print(f"{_STATUS[step.status]}  {name:<17} {step.seconds:6.2f}s  {step.detail}", flush=True)
    if step.error and step.error.get("hint"):
        print(f"      hint: {step.error['hint']}", flush=True)
