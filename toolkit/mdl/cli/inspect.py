"""`mdl inspect REF`: a stored model's ID, tags, creation time and config (or its manifest)."""

from __future__ import annotations

import json

import typer

from ..spec import mediatypes as mt
from ..summary import summarize
from .common import JSON_OPTION, open_store, print_json


def command(
    reference: str = typer.Argument(..., help="Model reference or ID."),
    manifest: bool = typer.Option(False, "--manifest", help="Print the manifest instead of the config."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Show a model's details."""
    store = open_store()
    s = summarize(store, store.resolve(reference))
    if manifest:
        print_json(json.loads(s.manifest.raw))
        return
    if json_output:
        print_json(s.as_dict())
        return
    print(f"ID:           {s.digest}")
    print(f"Tags:         {', '.join(s.tags) or '<none>'}")
    print(f"Created:      {s.created or ''}")
    print(f"Format:       {s.format or ''}")
    print(f"Architecture: {s.architecture or ''}")
    print(f"Parameters:   {s.parameters or ''}")
    print(f"Quantization: {s.quantization or ''}")
    print(f"Size:         {s.size}")
    if s.context_size:
        print(f"Context size: {s.context_size}")
    print(f"Config:       {s.manifest.config.media_type}")
    print("Layers:")
    for d in s.manifest.layers:
        path = (d.annotations or {}).get(mt.ANNOTATION_FILEPATH, "")
        print(f"  {d.digest}  {d.size:>12}  {d.media_type}  {path}")
