"""`mdl package`: build a model artifact from local files into the local store."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone

import typer

from ..errors import UsageError
from ..formats.units import format_binary_size
from ..ops.package import PackageRequest, package
from ..reference import parse_reference
from .common import JSON_OPTION, open_store, print_json, short_id
from .progress import choose_mode, make_progress
from .remote import CA_FILE, CHUNK_SIZE, CONCURRENCY, PLAIN_HTTP, RemoteOptions


def command(
    target: str = typer.Argument(..., help="Reference to tag the model with, e.g. ai/mymodel:latest."),
    gguf: str = typer.Option(None, "--gguf", help="A GGUF file (any shard of a split model)."),
    safetensors_dir: str = typer.Option(None, "--safetensors-dir", help="A directory of safetensors files."),
    dduf: str = typer.Option(None, "--dduf", help="A DDUF (Diffusers Unified Format) file."),
    from_ref: str = typer.Option(None, "--from", help="Repackage a model already in the store."),
    licenses: list[str] = typer.Option(None, "--license", help="A license file (repeatable)."),
    chat_template: str = typer.Option(None, "--chat-template", help="A Jinja chat template."),
    mmproj: str = typer.Option(None, "--mmproj", help="A multimodal projector file."),
    context_size: int = typer.Option(None, "--context-size", help="Default context size in tokens."),
    fmt: str = typer.Option("docker", "--format", help="Artifact format: docker or cncf (ModelPack)."),
    created: str = typer.Option(None, "--created",
                                help="Creation time (RFC 3339) for a reproducible build; "
                                     "SOURCE_DATE_EPOCH works too."),
    push: bool = typer.Option(False, "--push", help="Push TARGET to its registry after packaging."),
    sign_key: str = typer.Option(None, "--sign-key", help="Private key (PEM): sign the model right after --push."),
    plain_http: bool = PLAIN_HTTP,
    ca_file: str = CA_FILE,
    concurrency: int = CONCURRENCY,
    chunk_size: int = CHUNK_SIZE,
    json_output: bool = JSON_OPTION,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the model's digest."),
) -> None:
    """Package a model into the local store (and push it with --push)."""
    request = PackageRequest(
        gguf=gguf, safetensors_dir=safetensors_dir, dduf=dduf, from_ref=from_ref,
        licenses=list(licenses or []), chat_template=chat_template, mmproj=mmproj,
        context_size=context_size, format=fmt, created=_created(created, os.environ.get("SOURCE_DATE_EPOCH")),
    )
    ref = parse_reference(target)
    if ref.digest:
        raise UsageError(f"cannot package into a digest reference: {target}", "give a name and tag, e.g. org/model:v1")
    push_to = RemoteOptions(plain_http, ca_file, concurrency, chunk_size).open(ref) if push else None
    progress = make_progress(choose_mode(json_output, quiet, sys.stderr.isatty())) if push else None
    try:
        result = package(open_store(), request, ref, push_to=push_to, sign_key=sign_key, key_password=_key_password,
                         concurrency=concurrency, progress=progress)
    finally:
        if progress is not None:
            progress.close()
    if result.pushed is not None:
        from .push import render_push  # the registry client loads only for --push (start-up time)

        render_push(result.pushed, json_output, quiet)
        if result.signed is not None:
            print(f"Signed {result.signed.reference}: signature {result.signed.signature_manifest}", file=sys.stderr)
        return
    if json_output:
        print_json({"reference": result.reference, "digest": result.digest, "id": short_id(result.digest),
                    "layers": len(result.manifest.layers), "size": result.size, "previous": result.previous})
    elif quiet:
        print(result.digest)
    else:
        moved = f" (moved from {short_id(result.previous)})" if result.previous else ""
        print(f"Packaged {result.reference}{moved}")
        print(f"  digest {result.digest}")
        n = len(result.manifest.layers)
        print(f"  {n} layer{'s' if n != 1 else ''}, {format_binary_size(result.size)}")


def _key_password() -> bytes | None:
    from .sign import key_password  # the signing modules load only for --sign-key

    return key_password()


def _created(flag: str | None, source_date_epoch: str | None) -> datetime | None:
    if flag:
        try:
            t = datetime.fromisoformat(flag.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"--created {flag!r} is not an RFC 3339 time",
                             "use e.g. --created 2025-01-01T00:00:00Z") from None
        if t.tzinfo is None:
            raise UsageError(f"--created {flag!r} has no time zone", "end it with Z or an offset like +02:00")
        return t.astimezone(timezone.utc)
    if source_date_epoch:
        try:
            return datetime.fromtimestamp(int(source_date_epoch), timezone.utc)
        except (ValueError, OverflowError, OSError):
            raise UsageError(f"SOURCE_DATE_EPOCH={source_date_epoch!r} is not a Unix time",
                             "set it to whole seconds since 1970, e.g. $(git log -1 --format=%ct)") from None
    return None
