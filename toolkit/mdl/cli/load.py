"""`mdl load DIR|FILE.tar`: copy the models of an OCI image layout into the local store."""

from __future__ import annotations

import sys

import typer

from ..ops.load import load_layout
from .common import JSON_OPTION, open_store, print_json, short_id
from .progress import choose_mode, make_progress


def command(
    path: str = typer.Argument(..., help="An OCI layout directory, or a tar of one."),
    tag: str = typer.Option(None, "--tag", "-t",
                            help="Also tag the loaded model (for layouts whose names are not references)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Load models from an OCI image layout (directory or tar), verifying every blob and schema."""
    store = open_store()
    progress = make_progress("quiet" if json_output else choose_mode(False, False, sys.stderr.isatty()))
    try:
        result = load_layout(store, path, tag=tag, progress=progress)
    finally:
        progress.close()
    if json_output:
        print_json({"source": result.source,
                    "models": [{"digest": m.digest, "id": short_id(m.digest), "tags": m.tags,
                                "ignored_names": m.ignored_names} for m in result.models],
                    "added_blobs": len(result.added)})
        return
    for m in result.models:
        if m.tags:
            print(f"Loaded {', '.join(m.tags)} ({short_id(m.digest)})")
        else:
            print(f"Loaded untagged model {short_id(m.digest)}")
        if m.ignored_names:
            print(f"  ignored name{'s' if len(m.ignored_names) > 1 else ''} "
                  f"{', '.join(repr(n) for n in m.ignored_names)}: not a reference; tag it with `mdl tag` or --tag")
        print(f"  digest {m.digest}")
