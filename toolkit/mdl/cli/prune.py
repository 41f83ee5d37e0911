"""`mdl prune`: delete blobs no model needs and ingest files left by interrupted commands."""

from __future__ import annotations

from ..formats.units import format_binary_size
from .common import JSON_OPTION, open_store, print_json


def command(json_output: bool = JSON_OPTION) -> None:
    """Remove unreferenced blobs and stale partial downloads."""
    result = open_store().prune()
    if json_output:
        print_json({"deleted_blobs": list(result.deleted_blobs), "freed_bytes": result.freed_bytes,
                    "stale_ingest": result.stale_ingest})
        return
    print(f"Deleted {len(result.deleted_blobs)} blobs and {len(result.stale_ingest)} stale ingest files, "
          f"freed {format_binary_size(result.freed_bytes)}")
