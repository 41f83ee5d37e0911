"""`mdl verify REF|LAYOUT-DIR`: check models against the spec and their digests; exit 1 on any finding."""

from __future__ import annotations

from pathlib import Path

import typer

from ..content.layout import LayoutStore
from ..errors import UsageError
from ..formats.units import format_binary_size
from ..verify import Report, verify_model
from .common import JSON_OPTION, open_store, print_json, short_id


def command(
    target: str = typer.Argument(None, help="Model reference or ID, or an OCI layout directory."),
    all_models: bool = typer.Option(False, "--all", help="Verify every model in the local store."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Verify models: schemas, digests, sizes, diff_ids, annotations."""
    if target and (Path(target) / "oci-layout").is_file():
        store = LayoutStore(Path(target))
        digests = [m.digest for m in store.models()]
    else:
        store = open_store()
        if all_models or not target:
            if not all_models:
                raise UsageError("name a model or a layout directory to verify", "or use --all")
            digests = [m.digest for m in store.models()]
        else:
            digests = [store.resolve(target)]
    reports = [verify_model(store, d) for d in digests]
    if json_output:
        print_json({"ok": all(r.ok for r in reports), "models": [r.as_dict() for r in reports]})
    else:
        for r in reports:
            _render(r)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


def _render(r: Report) -> None:
    name = ", ".join(r.tags) or short_id(r.digest)
    if r.ok:
        print(f"OK     {name} ({short_id(r.digest)}): {r.blobs_checked} blobs, "
              f"{format_binary_size(r.bytes_checked)} verified")
        return
    print(f"FAILED {name} ({short_id(r.digest)}): {len(r.findings)} finding(s)")
    for f in r.findings:
        print(f"  [{f.kind}] {f.path}: {f.message}")
