"""`mdl logs [-f]`: the log of a running `mdl serve` (`GET /logs`): loads, unloads, workers, errors."""

from __future__ import annotations

import sys

import typer

from .runner_client import RunnerClient


def command(follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines.")) -> None:
    """Show the running server's log (its recent lines; with -f, then each new one)."""
    client = RunnerClient()
    for line in client.lines("/logs", follow="1" if follow else None):
        print(line)
        sys.stdout.flush()
