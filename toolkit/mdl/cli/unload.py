"""`mdl unload [--all] [MODEL...]`: unload models from a running `mdl serve` (`POST /engines/unload`)."""

from __future__ import annotations

from typing import Optional

import typer

from ..errors import UsageError
from .runner_client import RunnerClient


def command(
    models: Optional[list[str]] = typer.Argument(None, metavar="[MODEL]...", help="Models to unload."),
    everything: bool = typer.Option(False, "--all", help="Unload every model."),
) -> None:
    """Unload models from the running server, freeing their memory (they load again when next used)."""
    if not everything and not models:
        raise UsageError("name the models to unload, or use --all")
    if everything and models:
        raise UsageError("--all unloads every model: name none with it")
    body = {"all": True} if everything else {"models": list(models or ())}
    n = RunnerClient().post("/engines/unload", body)["unloaded_runners"]
    print(f"Unloaded {n} model instance{'s' if n != 1 else ''}")
