"""`mdl conformance registry REGISTRY[/NAMESPACE]`: check what a registry does with model artifacts."""

from __future__ import annotations

import os
import sys

import typer

from ..conformance.registry import (FULL_BLOB_SIZE, QUICK_BLOB_SIZE, RegistryNonconformantError,
                                    run_registry_conformance)
from ..conformance.registry_framework import MIB
from ..conformance.report import result_line, summary, to_json, write_reports
from ..errors import UsageError
from ..sizes import SIZE_RULE, parse_size
from .boundary import debug_log
from .common import JSON_OPTION
from .remote import CA_FILE, PLAIN_HTTP


def parse_blob_size(text: str) -> int:
    """`--blob-size` in bytes, by mdl.sizes' rule; a large-blob check needs at least 2 MiB."""
    size = parse_size(text, "--blob-size")
    if size < 2 * MIB:
        raise UsageError(f"--blob-size {text!r} is under 2 MiB", "a large-blob check needs at least 2 MiB")
    return size


def command(
    target: str = typer.Argument(..., metavar="REGISTRY[/NAMESPACE]",
                                 help="The registry, and the namespace to create the test repositories under."),
    quick: bool = typer.Option(False, "--quick", help="A 64 MiB large blob instead of 1 GiB."),
    blob_size: str = typer.Option(None, "--blob-size",
                                  help=f"Size of the large blob: {SIZE_RULE}."),
    report_dir: str = typer.Option(None, "--report-dir",
                                   help="Write registry-report.json and registry-junit.xml here."),
    check: list[str] = typer.Option(None, "--check",
                                    help="Run only the checks whose id starts with this (repeatable)."),
    plain_http: bool = PLAIN_HTTP,
    ca_file: str = CA_FILE,
    json_output: bool = JSON_OPTION,
) -> None:
    """Check that a registry can hold model artifacts; exit 1 when a required check fails."""
    size = parse_blob_size(blob_size) if blob_size else QUICK_BLOB_SIZE if quick else FULL_BLOB_SIZE
    live = not json_output and sys.stderr.isatty()
    report = run_registry_conformance(
        target, blob_size=size, quick=quick, plain_http=plain_http or None, ca_file=ca_file, env=os.environ,
        debug_log=debug_log, only=check or None,
        on_result=(lambda r: print(result_line(r), file=sys.stderr, flush=True)) if live else None)
    if report_dir:
        write_reports(report, report_dir)
    if json_output:
        sys.stdout.write(to_json(report))
    else:
        print(summary(report))
        if report_dir:
            print(f"Reports: {os.path.join(report_dir, 'registry-report.json')}, "
                  f"{os.path.join(report_dir, 'registry-junit.xml')}")
    if report.failed_required:
        raise RegistryNonconformantError(report.registry, report.failed_required)
