"""`mdl requests [-f] [--model M]`: the recent requests a running `mdl serve` answered
(`GET /engines/requests`), or, with `-f`, each new one as it ends."""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from .common import JSON_OPTION, print_json, print_table
from .runner_client import RunnerClient


def command(
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new requests as they end."),
    model: Optional[str] = typer.Option(None, "--model", help="Only the requests for this model."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Show recent requests: time, API, model, status, tokens, latency, prompt and answer excerpts."""
    client = RunnerClient()
    if not follow:
        records = client.get("/engines/requests", model=model)
        if json_output:
            print_json(records)
            return
        print_table(["TIME", "API", "MODEL", "STATUS", "TOKENS", "LATENCY", "PROMPT", "RESPONSE"],
                    [_row(r) for r in records])
        return
    for record in client.events("/engines/requests", follow="1", model=model):
        if json_output:
            print(json.dumps(record, ensure_ascii=False))
        else:
            print("  ".join(_row(record)))
        sys.stdout.flush()


def _row(r: dict) -> list[str]:
    tokens = "/".join(str(r.get(k)) if r.get(k) is not None else "-" for k in ("prompt_tokens", "completion_tokens"))
    status = str(r["status"]) + (f" {r['error']}" if r.get("error") and r["status"] >= 400 else "")
    return [(r.get("time") or "")[11:23], r["api"], r.get("model") or "-", _cut(status, 60), tokens,
            f"{r['latency_ms']:.0f}ms", _cut(r.get("prompt") or "", 40), _cut(r.get("response") or "", 40)]


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"
