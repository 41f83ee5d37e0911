"""Options every registry command shares, and opening a repository with them."""

from __future__ import annotations

import os
from dataclasses import dataclass

import typer

from ..reference import Reference
from .boundary import debug_log

PLAIN_HTTP = typer.Option(False, "--plain-http", help="Talk HTTP, not HTTPS (automatic for localhost).")
CA_FILE = typer.Option(None, "--ca-file", help="CA certificate bundle to trust for the registry's TLS.")
CONCURRENCY = typer.Option(4, "--concurrency", min=1, max=64, help="Blobs transferred in parallel.")
CHUNK_SIZE = typer.Option(None, "--chunk-size", min=1,
                          help="Upload in chunks of this many MiB (default: one streamed request per blob).")


@dataclass
class RemoteOptions:
    plain_http: bool = False
    ca_file: str | None = None
    concurrency: int = 4
    chunk_mib: int | None = None

    def open(self, ref: Reference):
        # The registry client (requests and its TLS stack) loads only once a command reaches a registry:
        # `mdl verify` of a local model starts without it.
        from ..registry.open import open_repository

        repo = open_repository(ref, plain_http=self.plain_http or None, ca_file=self.ca_file, env=os.environ,
                               debug_log=debug_log, concurrency=self.concurrency)
        if self.chunk_mib:
            repo.chunk_size = self.chunk_mib << 20
        return repo
