"""`mdl push REF [TARGET]`: send a stored model to a registry."""

from __future__ import annotations

import json
import sys

import typer

from ..formats.units import format_binary_size
from ..ops.push import PushResult, push
from ..reference import parse_reference
from .common import JSON_OPTION, QUIET_OPTION, open_store
from .progress import choose_mode, make_progress
from .remote import CA_FILE, CHUNK_SIZE, CONCURRENCY, PLAIN_HTTP, RemoteOptions


def command(
    reference: str = typer.Argument(..., help="A model in the local store (reference or ID)."),
    target: str = typer.Argument(None, help="Where to push it (default: REF itself)."),
    plain_http: bool = PLAIN_HTTP,
    ca_file: str = CA_FILE,
    concurrency: int = CONCURRENCY,
    chunk_size: int = CHUNK_SIZE,
    json_output: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    """Push a model to a registry."""
    target_ref = parse_reference(target or reference)
    repo = RemoteOptions(plain_http, ca_file, concurrency, chunk_size).open(target_ref)
    progress = make_progress(choose_mode(json_output, quiet, sys.stderr.isatty()))
    try:
        result = push(open_store(), repo, reference, target_ref, concurrency=concurrency, progress=progress)
    finally:
        progress.close()
    render_push(result, json_output, quiet)


def render_push(result: PushResult, json_output: bool, quiet: bool) -> None:
    """`TARGET@sha256:...`, or a JSON summary; shared by `push` and `package --push`."""
    if json_output:
        print(json.dumps({"event": "summary", "reference": result.reference, "digest": result.digest,
                          "size": result.size, "sent": result.sent, "layers": len(result.outcomes) - 1,
                          "blobs": result.outcomes}), flush=True)
    elif quiet:
        print(result.reference)
    else:
        print(f"Pushed {format_binary_size(result.size)} ({format_binary_size(result.sent)} sent)", file=sys.stderr)
        print(result.reference)
