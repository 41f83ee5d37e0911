"""`mdl tag SOURCE TARGET`: give a stored model another name (moving TARGET if it exists)."""

from __future__ import annotations

import typer

from ..errors import UsageError
from ..reference import parse_reference
from .common import open_store, short_id


def command(
    source: str = typer.Argument(..., help="Model reference or ID."),
    target: str = typer.Argument(..., help="New reference, e.g. myorg/model:v2."),
) -> None:
    """Tag a model with another reference."""
    store = open_store()
    digest = store.resolve(source)
    ref = parse_reference(target)
    if ref.digest:
        raise UsageError(f"cannot tag with a digest reference: {target}", "give a name and tag, e.g. org/model:v2")
    previous = store.add_tag(digest, ref)
    moved = f" (moved from {short_id(previous)})" if previous and previous != digest else ""
    print(f"Tagged {short_id(digest)} as {ref}{moved}")
