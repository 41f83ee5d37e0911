"""`mdl conformance …`: the conformance suite's commands, one module each (spec/, conformance/README.md)."""

from __future__ import annotations

import typer

from . import conformance_artifacts, conformance_e2e, conformance_registry

conformance_app = typer.Typer(
    name="conformance",
    help="Check artifacts, registries and the whole chain against the spec.",
    no_args_is_help=True,
)
conformance_app.command("artifacts")(conformance_artifacts.artifacts_command)
conformance_app.command("lint")(conformance_artifacts.lint_command)
conformance_app.command("check")(conformance_artifacts.check_command)
conformance_app.command("e2e")(conformance_e2e.command)
conformance_app.command("registry")(conformance_registry.command)
