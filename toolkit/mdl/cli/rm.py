"""`mdl rm REF...`: untag or remove models; blobs other models use are kept."""

from __future__ import annotations

import typer

from ..formats.units import format_binary_size
from .common import open_store


def command(
    references: list[str] = typer.Argument(..., help="Model references or IDs."),
    force: bool = typer.Option(False, "--force", "-f", help="Remove a model even when it has several tags."),
) -> None:
    """Remove models from the local store."""
    store = open_store()
    for ref in references:
        result = store.remove(ref, force=force)
        for name in result.untagged:
            print(f"Untagged: {name}")
        for digest in result.removed_models:
            print(f"Deleted: {digest}")
        if result.freed_bytes:
            print(f"Freed {format_binary_size(result.freed_bytes)}")
        if result.gc_deferred:
            print("Another mdl command is writing to the store: run `mdl prune` later to free the space")
