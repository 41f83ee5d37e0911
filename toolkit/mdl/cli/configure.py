"""`mdl configure [--context-size N] [--keep-alive D] MODEL`: per-model settings of a running
`mdl serve` (`POST /engines/_configure`), applied when the model is next loaded."""

from __future__ import annotations

from typing import Optional

import typer

from .common import JSON_OPTION, print_json
from .runner_client import RunnerClient


def command(
    model: str = typer.Argument(..., metavar="MODEL", help="Model reference or ID."),
    context_size: Optional[int] = typer.Option(None, "--context-size", help="Context length in tokens."),
    keep_alive: Optional[str] = typer.Option(None, "--keep-alive", metavar="DURATION",
                                             help="How long it stays loaded while idle: 30s, 5m, 1h, 0 (unload "
                                                  "after each request), -1 (never)."),
    mode: Optional[str] = typer.Option(None, "--mode", metavar="completion|embedding",
                                       help="Configure only this mode's instance (default: both)."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Default sampling temperature."),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="Default top-p."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="Default top-k."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Default most tokens per answer."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Default sampling seed."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Set a model's context size, keep-alive and sampling defaults on the running server; with no
    setting, show them. The server checks every value; a loaded model reloads with them."""
    client = RunnerClient()
    sampling = {k: v for k, v in (("temperature", temperature), ("top_p", top_p), ("top_k", top_k),
                                  ("max_tokens", max_tokens), ("seed", seed)) if v is not None}
    if context_size is None and keep_alive is None and not sampling and mode is None:
        shown = client.get("/engines/_configure", model=model)
        if json_output:
            print_json(shown)
        elif not shown:
            print(f"{model}: not configured (the server's defaults apply)")
        for entry in [] if json_output else shown:
            print(_describe(entry))
        return
    body = {"model": model, "mode": mode, "context_size": context_size, "keep_alive": keep_alive,
            "sampling": sampling or None}
    done = client.post("/engines/_configure", {k: v for k, v in body.items() if v is not None})
    if json_output:
        print_json(done)
        return
    n = done.get("unloaded_runners") or 0
    print(_describe(done) + (f" (applies at the next load; {n} loaded instance{'s' if n != 1 else ''} unloaded)"
                             if n else " (applies at the next load)"))


def _describe(entry: dict) -> str:
    parts = []
    if entry.get("context_size"):
        parts.append(f"context size {entry['context_size']}")
    if entry.get("keep_alive") is not None:
        parts.append(f"keep-alive {entry['keep_alive']}")
    for key, value in (entry.get("sampling") or {}).items():
        parts.append(f"{key} {value}")
    mode = f" ({entry['mode']})" if entry.get("mode") else ""
    return f"{entry['model']}{mode}: " + (", ".join(parts) or "the server's defaults")
