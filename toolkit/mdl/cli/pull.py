"""`mdl pull REF`: fetch a model artifact from a registry into the local store."""

from __future__ import annotations

import json
import sys

import typer

from ..formats.units import format_binary_size
from ..ops.pull import pull
from ..reference import parse_reference
from .common import JSON_OPTION, QUIET_OPTION, open_store
from .progress import choose_mode, make_progress
from .remote import CA_FILE, CONCURRENCY, PLAIN_HTTP, RemoteOptions


def command(
    reference: str = typer.Argument(..., help="e.g. registry.example.com/org/model:tag"),
    plain_http: bool = PLAIN_HTTP,
    ca_file: str = CA_FILE,
    concurrency: int = CONCURRENCY,
    json_output: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
    verify_key: str = typer.Option(None, "--verify-key", help="Public key (PEM): refuse a model it did not sign; "
                                                              "the signature is stored with the model."),
) -> None:
    """Pull a model from a registry."""
    ref = parse_reference(reference)
    repo = RemoteOptions(plain_http, ca_file, concurrency).open(ref)
    progress = make_progress(choose_mode(json_output, quiet, sys.stderr.isatty()))
    try:
        result = pull(open_store(), repo, ref, concurrency=concurrency, progress=progress, verify_key=verify_key)
    finally:
        progress.close()
    summary = {"event": "summary", "reference": result.reference, "digest": result.digest, "size": result.size,
               "fetched": result.fetched, "layers": len(result.outcomes) - 1, "blobs": result.outcomes}
    if json_output:
        print(json.dumps(summary), flush=True)
    elif quiet:
        print(result.digest)
    else:
        print(f"Pulled {result.reference} ({result.digest}): {format_binary_size(result.size)}, "
              f"{format_binary_size(result.fetched)} fetched")
