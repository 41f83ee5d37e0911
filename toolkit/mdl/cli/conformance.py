"""`mdl conformance …`: the conformance suite's commands, one module each (spec/, conformance/README.md)."""

from __future__ import annotations

import typer

from .lazy import CommandTable, lazy_group

COMMANDS: CommandTable = {
    "artifacts": ("conformance_artifacts", "artifacts_command", False),
    "lint": ("conformance_artifacts", "lint_command", False),
    "check": ("conformance_artifacts", "check_command", False),
    "e2e": ("conformance_e2e", "command", False),
    "registry": ("conformance_registry", "command", False),
}

conformance_app = typer.Typer(
    name="conformance",
    cls=lazy_group(COMMANDS),
    help="Check artifacts, registries and the whole chain against the spec.",
    no_args_is_help=True,
)


@conformance_app.callback()
def _group() -> None:
    """Check artifacts, registries and the whole chain against the spec."""
