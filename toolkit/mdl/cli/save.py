"""`mdl save REF -o DIR|FILE.tar`: write a model as an OCI image layout (directory or tar)."""

from __future__ import annotations

import sys

import typer

from ..ops.save import save_model
from ..formats.units import format_binary_size
from .common import JSON_OPTION, open_store, print_json, short_id
from .progress import choose_mode, make_progress


def command(
    reference: str = typer.Argument(..., help="The model to save: a reference, or a model ID."),
    output: str = typer.Option(..., "--output", "-o",
                               help="A directory (created, or an OCI layout to add to), or a file ending in .tar."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing .tar file."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Save a model as an OCI image layout that skopeo, oras and `mdl load` read."""
    store = open_store()
    # --json prints one document at the end: no progress events mixed into it
    progress = make_progress("quiet" if json_output else choose_mode(False, False, sys.stderr.isatty()))
    try:
        result = save_model(store, reference, output, force=force, progress=progress)
    finally:
        progress.close()
    if json_output:
        print_json({"digest": result.digest, "id": short_id(result.digest), "output": result.output,
                    "format": result.format, "names": result.names, "blobs": result.blobs, "size": result.size})
        return
    names = ", ".join(result.names) or f"untagged model {short_id(result.digest)}"
    kind = "tar" if result.format == "tar" else "layout"
    print(f"Saved {names} to {kind} {result.output}")
    print(f"  digest {result.digest}")
    print(f"  {result.blobs} blobs, {format_binary_size(result.size)}")
