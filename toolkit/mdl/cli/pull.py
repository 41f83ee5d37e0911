"""`mdl pull REF [--include PATTERN]...`: fetch a model artifact (or some of its files) from a registry
into the local store."""

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

INCLUDE = typer.Option(None, "--include", help="Only files whose path matches this glob (repeatable; `*.json`, "
                                               "`tokenizer/*`); a pattern without / also matches the file name.")
EXCLUDE = typer.Option(None, "--exclude", help="Leave out files whose path matches this glob (repeatable).")


def command(
    reference: str = typer.Argument(..., help="e.g. registry.example.com/org/model:tag"),
    plain_http: bool = PLAIN_HTTP,
    ca_file: str = CA_FILE,
    concurrency: int = CONCURRENCY,
    json_output: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
    verify_key: str = typer.Option(None, "--verify-key", help="Public key (PEM): refuse a model it did not sign; "
                                                              "the signature is stored with the model."),
    include: list[str] = INCLUDE,
    exclude: list[str] = EXCLUDE,
) -> None:
    """Pull a model from a registry. With --include/--exclude, only the files they select: the model is
    stored as partial (`mdl list` says so) until a pull without them completes it."""
    ref = parse_reference(reference)
    repo = RemoteOptions(plain_http, ca_file, concurrency).open(ref)
    progress = make_progress(choose_mode(json_output, quiet, sys.stderr.isatty()))
    try:
        result = pull(open_store(), repo, ref, concurrency=concurrency, progress=progress, verify_key=verify_key,
                      include=include or (), exclude=exclude or ())
    finally:
        progress.close()
    summary = {"event": "summary", "reference": result.reference, "digest": result.digest, "size": result.size,
               "fetched": result.fetched, "layers": len(result.outcomes) - 1, "blobs": result.outcomes,
               "partial": result.partial, "absent": result.absent}
    if result.signature is not None:
        summary["signature"] = result.signature.as_dict()
    if json_output:
        print(json.dumps(summary), flush=True)
    elif quiet:
        print(result.digest)
    else:
        print(f"Pulled {result.reference} ({result.digest}): {format_binary_size(result.size)}, "
              f"{format_binary_size(result.fetched)} fetched")
        if result.signature is not None:
            print(f"  signature verified with {result.signature.key} ({result.signature.form} form)")
        if result.partial:
            print(f"  partial: {len(result.absent)} file(s) left out ({', '.join(result.absent[:5])}"
                  f"{', ...' if len(result.absent) > 5 else ''}); pull without --include to complete it")
