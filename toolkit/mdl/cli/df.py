"""`mdl df`: disk usage of the local store."""

from __future__ import annotations

import dataclasses

from ..formats.units import format_binary_size
from .common import JSON_OPTION, open_store, print_json, print_table


def command(json_output: bool = JSON_OPTION) -> None:
    """Show the local store's disk usage."""
    store = open_store()
    usage = store.disk_usage()
    if json_output:
        print_json(dataclasses.asdict(usage) | {"root": str(store.root)})
        return
    print(f"Store: {store.root}")
    print_table(["TYPE", "COUNT", "SIZE", "RECLAIMABLE"], [
        ["Models", str(usage.models), format_binary_size(usage.referenced_bytes), ""],
        ["Blobs", str(usage.blobs), format_binary_size(usage.blob_bytes),
         format_binary_size(usage.reclaimable_bytes)],
        ["Ingest", "", format_binary_size(usage.ingest_bytes), format_binary_size(usage.ingest_bytes)],
    ])
