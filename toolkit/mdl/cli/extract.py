"""`mdl extract REF DIR`: a model's files into a plain directory, at their packaged paths, verified."""

from __future__ import annotations

import sys

import typer

from ..formats.units import format_binary_size
from ..ops.extract import extract
from ..sizes import SIZE_RULE, parse_size
from .common import JSON_OPTION, QUIET_OPTION, open_store, print_json, short_id
from .progress import choose_mode, make_progress
from .pull import EXCLUDE, INCLUDE
from .remote import CA_FILE, CONCURRENCY, PLAIN_HTTP, RemoteOptions


def command(
    reference: str = typer.Argument(..., help="The model: a reference (e.g. registry.example.com/org/model:tag) "
                                              "or the ID of a stored model."),
    directory: str = typer.Argument(..., help="Where the files go (created if missing)."),
    include: list[str] = INCLUDE,
    exclude: list[str] = EXCLUDE,
    force: bool = typer.Option(False, "--force", help="Replace files that exist in DIR."),
    copy: bool = typer.Option(False, "--copy", help="Copy from the store even where a hard link is possible."),
    verify: bool = typer.Option(False, "--verify", help="Hash the files hard-linked from the store too (copies and "
                                                        "downloads are always hashed)."),
    store_it: bool = typer.Option(False, "--store", help="Keep what is downloaded in the local store (then link "
                                                         "from it); by default a download is not stored."),
    max_unpacked: str = typer.Option(None, "--max-unpacked", help="The most one archive layer may unpack to "
                                                                  f"({SIZE_RULE}); default 32x a compressed layer, "
                                                                  "at least 256 MiB."),
    model_signature: bool = typer.Option(False, "--model-signature",
                                         help="Also write the model's OpenSSF model signature (`mdl sign "
                                              "--model-signing`) as DIR/model.sig, for `model_signing verify`."),
    plain_http: bool = PLAIN_HTTP,
    ca_file: str = CA_FILE,
    concurrency: int = CONCURRENCY,
    json_output: bool = JSON_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    """Write every file of a model into DIR at its packaged path (org.cncf.model.filepath), read-only.

    A model in the local store is hard-linked from it when DIR is on the same file system (copied
    otherwise, or with --copy); a model not stored is streamed from its registry, hashed on the way,
    and not kept unless --store. Archive layers (ModelPack tar, tar+gzip, tar+zstd; Docker's legacy
    tars) are unpacked safely. Nothing is written outside DIR, and no file appears under its name
    before it is verified."""
    limit = parse_size(max_unpacked, "--max-unpacked") if max_unpacked else None
    remote = RemoteOptions(plain_http, ca_file, concurrency)
    progress = make_progress("quiet" if json_output else choose_mode(False, quiet, sys.stderr.isatty()))
    try:
        result = extract(open_store(), reference, directory, open_repository=remote.open, include=include or (),
                         exclude=exclude or (), force=force, copy=copy, verify=verify, keep=store_it,
                         max_unpacked=limit, concurrency=concurrency, progress=progress,
                         model_signature=model_signature)
    finally:
        progress.close()
    if json_output:
        print_json({"reference": result.reference, "digest": result.digest, "directory": result.directory,
                    "source": result.source, "size": result.size, "fetched": result.fetched,
                    "hashed": result.hashed, "files": [vars(f) for f in result.files],
                    "signature": result.signature})
        return
    if quiet:
        print(result.directory)
        return
    ways = {}
    for f in result.files:
        ways[f.how] = ways.get(f.how, 0) + 1
    how = ", ".join(f"{n} {w}" for w, n in sorted(ways.items()))
    print(f"Extracted {result.reference} ({short_id(result.digest)}) from the {result.source.replace('+', ' and ')} "
          f"to {result.directory}: {len(result.files)} files ({how}), {format_binary_size(result.size)}"
          + (f", {format_binary_size(result.fetched)} fetched" if result.fetched else ""))
    if not result.hashed:
        print("  (hard links to blobs verified when they were stored; --verify hashes them again)")
    for f in result.files:
        print(f"  {f.path}")
    if result.signature:
        print(f"  {result.signature} (OpenSSF model signature: `model_signing verify key {result.directory} "
              f"--signature {result.directory}/{result.signature} --public_key KEY.pub`)")
