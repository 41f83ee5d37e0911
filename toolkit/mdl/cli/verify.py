"""`mdl verify REF|LAYOUT-DIR`: check models against the spec and their digests; exit 1 on any finding."""

from __future__ import annotations

from pathlib import Path

import typer

from ..content.layout import LayoutStore
from ..errors import ModelNotFoundError, UsageError
from ..formats.units import format_binary_size
from ..store_check import check_store, repair as repair_store
from ..verify import Report, verify_model
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
    if key is not None:
        return _verify_signed(target, key, json_output, plain_http, ca_file)
    if repair and not all_models:
        raise UsageError("--repair works on the whole store", "use `mdl verify --all --repair`")
    if not target and not all_models:
        raise UsageError("name a model or a layout directory to verify", "or use --all")
    if all_models and (remote or deep):
        raise UsageError("--all checks the local store; --remote and --deep check one registry model",
                         "name the model to check in its registry")
    if target and (Path(target) / "oci-layout").is_file():
        store = LayoutStore(Path(target))
        digests = [m.digest for m in store.models()]
    elif all_models:
        _verify_store(open_store(), json_output, repair)
        return
    else:
        store = open_store()
        digest = None if remote or deep else local_digest(store, target)
        if digest is None:
            return _show([verify_remote(target, deep, plain_http, ca_file)], json_output)
        digests = [digest]
    _show([verify_model(store, d) for d in digests], json_output)


def local_digest(store: LayoutStore, target: str) -> str | None:
    """The model `target` names in the local store, or None when it is not there."""
    try:
        return store.resolve(target)
    except ModelNotFoundError:
        return None


def verify_remote(target: str, deep: bool, plain_http: bool, ca_file: str | None) -> Report:
    """The model `target` names, checked in its registry without pulling it."""
    from ..reference import parse_reference
    from ..verify import verify_source

    ref = parse_reference(target)
    repo = RemoteOptions(plain_http, ca_file).open(ref)
    report = verify_source(repo, ref.digest or ref.tag, deep=deep)
    report.tags = [str(ref)]
    return report


def _show(reports: list[Report], json_output: bool) -> None:
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
        layers = "" if r.layers_hashed else " (layers checked by size; --deep hashes them)"
        print(f"OK     {name} ({short_id(r.digest)}): {r.blobs_checked} blobs, "
              f"{format_binary_size(r.bytes_checked)} verified{layers}")
        return
    print(f"FAILED {name} ({short_id(r.digest)}): {len(r.findings)} finding(s)")
    for f in r.findings:
        where = f.path if f.document == "manifest" else f"{f.document} {f.path}"
        print(f"  [{f.kind}] {where}: {f.message}")


def _verify_store(store: LayoutStore, json_output: bool, repair: bool) -> None:
    report = check_store(store)
    removed = repair_store(store, report)[1] if repair and not report.ok else None
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
    if not report.ok and (removed is None or _unrepaired(report, removed)):
        raise typer.Exit(1)


def _unrepaired(report, removed) -> bool:
    """Failures --repair did not remove (e.g. a schema finding in an intact model)."""
    gone = set(removed.removed_models)
    return (any(not r.ok and r.digest not in gone for r in report.models)
            or any(f.severity == "error" and f.kind not in ("blob-corrupt", "index-entry-missing")
                   for f in report.findings))


def _verify_signed(target: str | None, key: str, json_output: bool, plain_http: bool, ca_file: str | None) -> None:
    """The signature first (spec/signing.md), then the artifact checks when the model is local."""
    from ..reference import parse_reference
    from ..sign import load_public_key, local_signature_names, verify_local, verify_remote

    if not target:
        raise UsageError("--key needs a model to verify", "name a model reference")
    public = load_public_key(key)
    store = open_store()
    try:
        digest = store.resolve(target)
    except ModelNotFoundError:
        digest = None
    if digest is not None and local_signature_names(store, digest):
        verified = verify_local(store, target, digest, public, key)  # offline
    else:  # not local, or local without its signatures: ask the registry
        ref = parse_reference(target)
        repo = RemoteOptions(plain_http, ca_file).open(ref)
        verified = verify_remote(repo, ref, public, key)
        if digest is not None and verified.digest != digest:
            digest = None  # the local copy is another manifest: only the registry's was verified
    reports = [verify_model(store, digest)] if digest is not None else []
    ok = all(r.ok for r in reports)
    if json_output:
        print_json({"ok": ok, "signature": verified.as_dict(), "models": [r.as_dict() for r in reports]})
    else:
        print(f"OK     signature of {verified.subject} ({short_id(verified.digest)}) verifies with {key}")
        for r in reports:
            _render(r)
    if not ok:
        raise typer.Exit(1)
