"""`mdl verify REF|LAYOUT-DIR`: check models against the spec and their digests; exit 1 on any finding."""

from __future__ import annotations

import typer

from ..errors import UsageError
from ..formats.units import format_binary_size
from ..model_check import Report
from ..ops.verify import StoreVerification, Verification, is_layout_dir, verify, verify_store
from .common import JSON_OPTION, open_store, print_json, short_id
from .remote import CA_FILE, PLAIN_HTTP, RemoteOptions


def command(
    target: str = typer.Argument(None, help="Model reference or ID, or an OCI layout directory."),
    all_models: bool = typer.Option(False, "--all", help="Verify every model in the local store."),
    repair: bool = typer.Option(False, "--repair",
                                help="With --all: remove corrupt blobs and the models that need them."),
    json_output: bool = JSON_OPTION,
    key: str = typer.Option(None, "--key", help="Public key (PEM): also check the model's signature "
                                                "(in the local store, else in the registry)."),
    remote: bool = typer.Option(False, "--remote", help="Check the model in its registry even if it is in the "
                                                         "local store (nothing is pulled)."),
    deep: bool = typer.Option(False, "--deep", help="Registry: also stream and hash every layer (nothing is stored)."),
    plain_http: bool = PLAIN_HTTP,
    ca_file: str = CA_FILE,
) -> None:
    """Verify models: schemas, digests, sizes, diff_ids, annotations; with --key, signatures.

    A model not in the local store (or any with --remote/--deep) is checked in its registry without
    pulling: manifest, config, and every layer's presence and size (HEAD); --deep hashes the layers."""
    if key is not None:  # a signature check names one model; --all, --repair, --remote, --deep do not apply
        if not target:
            raise UsageError("--key needs a model to verify", "name a model reference")
    else:
        if repair and not all_models:
            raise UsageError("--repair works on the whole store", "use `mdl verify --all --repair`")
        if not target and not all_models:
            raise UsageError("name a model or a layout directory to verify", "or use --all")
        if all_models and (remote or deep):
            raise UsageError("--all checks the local store; --remote and --deep check one registry model",
                             "name the model to check in its registry")
        if all_models and not is_layout_dir(target):
            return _show_store(verify_store(open_store(), repair=repair), json_output, repair)
    result = verify(open_store(), target, open_repository=RemoteOptions(plain_http, ca_file).open, key=key,
                    remote=remote or deep, deep=deep)
    _show(result, key, json_output)


def _show(result: Verification, key: str | None, json_output: bool) -> None:
    if json_output:
        doc = {"ok": result.ok}
        if result.signature is not None:
            doc["signature"] = result.signature.as_dict()
        print_json(doc | {"models": [r.as_dict() for r in result.reports]})
    else:
        if result.signature is not None:
            sig = result.signature
            print(f"OK     signature of {sig.subject} ({short_id(sig.digest)}) verifies with {sig.key or key} "
                  f"({sig.form} form, {short_id(sig.signature_manifest)})")
        for r in result.reports:
            _render(r)
    if not result.ok:
        raise typer.Exit(1)


def _render(r: Report) -> None:
    name = ", ".join(r.tags) or short_id(r.digest)
    if r.ok:
        layers = "" if r.layers_hashed else " (layers checked by size; --deep hashes them)"
        print(f"OK     {name} ({short_id(r.digest)}): {r.blobs_checked} blobs, "
              f"{format_binary_size(r.bytes_checked)} verified{layers}")
        _render_absent(r)
        return
    print(f"FAILED {name} ({short_id(r.digest)}): {len(r.findings)} finding(s)")
    for f in r.findings:
        where = f.path if f.document == "manifest" else f"{f.document} {f.path}"
        print(f"  [{f.kind}] {where}: {f.message}")
    _render_absent(r)


def _render_absent(r: Report) -> None:
    """What a model pulled partially lacks (not a failure: it was left out on purpose)."""
    if r.absent:
        print(f"       partial: {len(r.absent)} layer(s) not pulled: "
              + ", ".join(f"{a['file']} ({format_binary_size(a['size'])})" for a in r.absent))


def _show_store(result: StoreVerification, json_output: bool, repair: bool) -> None:
    report, removed = result.report, result.removed
    if json_output:
        doc = report.as_dict()
        if repair:
            doc["repair"] = {"removed_models": removed.removed_models if removed else [],
                             "untagged": removed.untagged if removed else [],
                             "deleted_blobs": removed.deleted_blobs if removed else []}
        print_json(doc)
    else:
        for r in report.models:
            _render(r)
        for f in report.findings:
            print(f"{'INFO' if f.severity == 'info' else 'FAILED':<6} [{f.kind}] {f.path}: {f.message}")
        print(f"{'OK' if report.ok else 'FAILED'}: {len(report.models)} model(s), "
              f"{sum(f.severity == 'error' for f in report.findings)} store finding(s)")
        if removed is not None:
            for t in removed.untagged:
                print(f"Untagged: {t}")
            for d in removed.removed_models:
                print(f"Removed model: {d}")
            for d in removed.deleted_blobs:
                print(f"Deleted blob: {d}")
    if not result.ok:
        raise typer.Exit(1)
