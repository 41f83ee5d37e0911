"""`mdl status [--json]`: whether a model runner answers, and what it is doing (`GET /engines/status`)."""

from __future__ import annotations

import typer

from .common import JSON_OPTION, print_json
from .runner_client import RunnerClient, RunnerUnreachableError


def command(json_output: bool = JSON_OPTION) -> None:
    """Say whether `mdl serve` is running (at MODEL_RUNNER_HOST), its version and what it has loaded."""
    client = RunnerClient()
    try:
        status = client.get("/engines/status")
    except RunnerUnreachableError as e:
        if not json_output:
            raise
        print_json({"running": False, "url": client.url, "error": e.message})
        raise typer.Exit(1) from None
    if json_output:
        print_json(status | {"url": client.url})
        return
    loaded = status.get("models_loaded", 0)
    print(f"mdl model runner is running at {client.url}")
    print(f"  version {status.get('version')}, " + ", ".join(f"{k}: {v}" for k, v in status.get("backends", {}).items()))
    print(f"  {loaded} model{'s' if loaded != 1 else ''} loaded (at most {status.get('max_models')}), "
          f"idle models unload after {status.get('keep_alive')}")
