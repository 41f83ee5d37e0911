"""`mdl audit REGISTRY[/NAMESPACE[/REPO]]...`: every artifact of a registry's repositories, classified,
each model checked as `mdl conformance check` checks one, and its signatures looked up (verified with
--key). Exit 0 when everything is sound, 1 on findings, 2 when the audit could not be made whole."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TextIO

import typer

from ..audit.check import CheckSettings
from ..audit.html import PAGE_NAME, render
from ..audit.rate import RateLimiter, throttle
from ..audit.report import summary, to_json, to_junit, write_file
from ..audit.run import AuditIncompleteError, AuditRequest, run_audit
from ..audit.state import AuditState
from ..conformance.artifacts import load_suite
from ..conformance.registry import split_target
from ..content.digest import sha256_bytes
from ..errors import UsageError
from ..registry.open import open_client
from ..signing.keys import load_public_key
from .boundary import debug_log
from .remote import CA_FILE, PLAIN_HTTP


def command(
    targets: list[str] = typer.Argument(..., metavar="REGISTRY[/NAMESPACE[/REPO]]...",
                                        help="The registry, or repositories or namespaces on one registry."),
    written: bool = typer.Option(False, "--written", help="Also apply the written profile (what mdl package "
                                                          "must produce), as `conformance check --written`."),
    deep: bool = typer.Option(False, "--deep", help="Stream and hash every layer (constant memory); otherwise "
                                                    "layers are checked by presence and size."),
    key: str = typer.Option(None, "--key", help="Public key (PEM): verify each model's signature with it; a "
                                                "model it does not verify fails."),
    concurrency: int = typer.Option(4, "--concurrency", min=1, max=64, help="Requests and checks in parallel."),
    rate: float = typer.Option(None, "--rate", help="At most this many requests per second, all workers "
                                                    "together (429 and Retry-After are honoured anyway)."),
    state: Path = typer.Option(None, "--state", help="State file: an interrupted audit goes on where it "
                                                     "stopped; a later one checks only digests not seen yet."),
    json_file: str = typer.Option(None, "--json", metavar="FILE", help="Write the JSON report ('-': stdout)."),
    junit_file: str = typer.Option(None, "--junit", metavar="FILE", help="Write a JUnit XML report."),
    html_dir: str = typer.Option(None, "--html", metavar="DIR", help=f"Write a self-contained {PAGE_NAME} here."),
    spec_url: str = typer.Option(None, "--spec-url", help="Base URL of the spec for the page's links "
                                                          "(default: the spec shipped with mdl, as a file URL)."),
    page_size: int = typer.Option(None, "--page-size", min=1, help="Entries per catalog and tag-list page "
                                                                   "(default: the registry's)."),
    cases: Path = typer.Option(None, "--cases", help="Directory of case files (default: the suite shipped with mdl)."),
    plain_http: bool = PLAIN_HTTP,
    ca_file: str = CA_FILE,
) -> None:
    """Audit a registry: classify every artifact, check every model against the spec, report signatures."""
    registry, paths = parse_targets(targets)
    settings = CheckSettings(load_suite(cases), written, deep)
    if key is not None:
        settings.public_key, settings.key_name = load_public_key(key), key
        settings.key_id = sha256_bytes(Path(key).read_bytes())
    limiter = RateLimiter(rate) if rate is not None else None
    client = open_client(registry, plain_http=plain_http or None, ca_file=ca_file, env=os.environ,
                         debug_log=debug_log, concurrency=concurrency)
    if limiter is not None:
        throttle(client, limiter)
    progress = _Progress(sys.stderr) if sys.stderr.isatty() else None
    audit_state = AuditState.open(state, registry, settings.state_key()) if state is not None else None
    try:
        report = run_audit(client, AuditRequest(registry, paths, settings, concurrency, page_size),
                           state=audit_state, progress=progress)
    finally:
        if progress is not None:
            progress.close()
        if audit_state is not None:
            audit_state.close()
        client.close()
    _write(report, json_file, junit_file, html_dir, spec_url)
    print(summary(report), file=sys.stderr if json_file == "-" else sys.stdout)
    if report.exit_code == 2:
        first = report.errors[0]
        raise AuditIncompleteError(registry, f"{len(report.errors)} part(s) unreadable (first: {first})",
                                   "see the errors above; with --state FILE a rerun checks only what is left")
    if report.exit_code == 1:
        raise typer.Exit(1)


def parse_targets(targets: list[str]) -> tuple[str, list[str]]:
    """(registry, repository or namespace paths; none: the whole registry) of the targets, one registry."""
    registry, paths = None, []
    whole = False
    for target in targets:
        host, path = split_target(target)
        if registry is not None and host != registry:
            raise UsageError(f"{target!r} is on {host}, the other targets on {registry}",
                             "audit one registry at a time")
        registry = host
        whole = whole or not path
        paths.append(path)
    return registry, [] if whole else sorted(set(paths))


def _write(report, json_file: str | None, junit_file: str | None, html_dir: str | None, spec_url: str | None):
    if json_file == "-":
        sys.stdout.write(to_json(report))
    elif json_file:
        write_file(json_file, to_json(report))
    if junit_file:
        write_file(junit_file, to_junit(report))
    if html_dir:
        write_file(Path(html_dir) / PAGE_NAME, render(report, spec_url))


class _Progress:
    """One line on a terminal, redrawn at most ten times a second: the phase and how far it is."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.last = 0.0
        self.drawn = False

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < 0.1:
            return
        self.last = now
        self.drawn = True
        self.stream.write(f"\r\033[Kaudit: {phase} {done}/{total}")
        self.stream.flush()

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
