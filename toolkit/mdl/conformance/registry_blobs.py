"""The registry checks on blobs: a large uncompressed blob pushed each way clients push one (mdl's streamed
PATCH, monolithic PUT, chunked PATCHes), `Range` reads, and cross-repository mounts.

The large blob is never in memory: block `i` (1 MiB) is SHAKE-128 of `mdl-conformance:<seed>:<i>`, so any
byte range can be generated again (to resend a refused chunk, or to compare a `Range` read), its digest is
computed in a first pass, and what the registry serves back is hashed as it streams in.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
from collections.abc import Iterator

import requests

from ..content.descriptor import Descriptor
from ..content.digest import hash_stream
from ..content.transfer import EXISTS
from ..registry.client import add_query
from ..registry.blobstream import BlobStream
from ..registry.repository import RemoteRepository
from .registry_framework import (FAIL, MIB, NOT_SUPPORTED, OCI_SPEC, OCTET_STREAM, PASS, Check, Context, Outcome,
                                 check, describe)

BLOCK = MIB
RANGE_BLOB_SIZE = 8 * MIB
_UPLOAD_RANGE = re.compile(r"(?:bytes=)?0-(\d+)")


class GeneratedBlob:
    """`size` deterministic pseudo-random bytes named by `seed`, generated a block at a time (a first pass
    at construction computes the digest)."""

    def __init__(self, seed: str, size: int):
        self.seed = seed
        self.size = size
        h = hashlib.sha256()  # the first pass
        for piece in self.pieces():
            h.update(piece)
        self.digest = "sha256:" + h.hexdigest()

    def block(self, i: int) -> bytes:
        seed = f"mdl-conformance:{self.seed}:{i}".encode()
        return hashlib.shake_128(seed).digest(min(BLOCK, self.size - i * BLOCK))

    def pieces(self, start: int = 0, end: int | None = None) -> Iterator[memoryview]:
        """The bytes `[start, end)`, at most a block per piece."""
        end = self.size if end is None else end
        pos = start
        while pos < end:
            i = pos // BLOCK
            block = memoryview(self.block(i))
            hi = min(len(block), end - i * BLOCK)
            yield block[pos - i * BLOCK:hi]
            pos = i * BLOCK + hi

    def read(self, start: int, end: int) -> bytes:
        return b"".join(self.pieces(start, end))

    def descriptor(self) -> Descriptor:
        return Descriptor(OCTET_STREAM, self.digest, self.size)

    def body(self, start: int, end: int) -> _SizedBody:
        return _SizedBody(self, start, end)

    def open_blob(self, desc: Descriptor, offset: int = 0) -> tuple[io.RawIOBase, int]:
        """A `BlobSource` for `RemoteRepository.put_blob`."""
        return _PieceReader(self.pieces(offset)), offset


class _SizedBody:
    """A request body of known length, generated as it is sent: requests sends `Content-Length` for it."""

    def __init__(self, blob: GeneratedBlob, start: int, end: int):
        self.blob, self.start, self.end = blob, start, end

    def __len__(self) -> int:
        return self.end - self.start

    def __iter__(self) -> Iterator[memoryview]:
        return self.blob.pieces(self.start, self.end)


class _PieceReader(io.RawIOBase):
    """A readable stream over the pieces of a generated blob."""

    def __init__(self, pieces: Iterator[memoryview]):
        super().__init__()
        self._pieces = pieces
        self._left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._left:
            piece = next(self._pieces, None)
            if piece is None:
                return 0
            self._left = piece
        n = min(len(b), len(self._left))
        b[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


def _rate(size: int, seconds: float) -> float:
    return round(size / 1e6 / seconds, 1) if seconds > 0 else 0.0


def _verify_served(ctx: Context, repo: RemoteRepository, blob: GeneratedBlob) -> dict:
    """GET the blob and hash it as it streams in; ends the check unless it is the blob pushed."""
    started = time.monotonic()
    resp = ctx.send(repo, "GET", f"/v2/{repo.repository}/blobs/{blob.digest}", stream=True,
                    headers={"Accept-Encoding": "identity"})
    ctx.expect(resp, (200,), "GET the blob")
    with BlobStream(resp, ctx.client.registry, f"blob {blob.digest}") as stream:
        served, n = hash_stream(stream, BLOCK)
    if n != blob.size or served != blob.digest:
        ctx.fail(f"GET served {n} bytes hashing to {served}, not the {blob.size} bytes pushed")
    seconds = time.monotonic() - started
    return {"download_seconds": round(seconds, 3), "download_mb_per_s": _rate(n, seconds)}


def _upload_timing(size: int, started: float) -> dict:
    seconds = time.monotonic() - started
    return {"size": size, "upload_seconds": round(seconds, 3), "upload_mb_per_s": _rate(size, seconds)}


def _begin(ctx: Context, seed: str) -> tuple[GeneratedBlob, str, requests.Response]:
    """The large blob for `seed` (its digest computed) and a new upload session."""
    blob = GeneratedBlob(seed, ctx.blob_size)
    location, post = _start_upload(ctx, ctx.base)
    return blob, location, post


def _start_upload(ctx: Context, repo: RemoteRepository) -> tuple[str, requests.Response]:
    resp = ctx.send(repo, "POST", f"/v2/{repo.repository}/blobs/uploads/", action="pull,push",
                    headers={"Content-Length": "0"}, data=b"")
    resp.close()
    ctx.expect(resp, (202,), "POST to start an upload")
    location = resp.headers.get("Location")
    if not location:
        ctx.fail("POST to start an upload answered 202 without a Location")
    return ctx.client.url(requests.compat.urljoin(resp.url, location)), resp


def _next_location(ctx: Context, resp: requests.Response, current: str) -> str:
    location = resp.headers.get("Location")
    return ctx.client.url(requests.compat.urljoin(resp.url, location)) if location else current


def _commit(ctx: Context, repo: RemoteRepository, location: str, blob: GeneratedBlob, body=None) -> list:
    """PUT `<location>?digest=` (with the whole blob as `body`, or empty) and expect 201 with that digest."""
    headers = {"Content-Type": OCTET_STREAM, "Content-Length": str(0 if body is None else len(body))}
    resp = ctx.send(repo, "PUT", add_query(location, digest=blob.digest), action="pull,push", headers=headers,
                    data=b"" if body is None else body)
    resp.close()
    ctx.expect(resp, (201,), "PUT to complete the upload")
    ctx.pushed_item(repo, "blob", blob.digest)
    returned = resp.headers.get("Docker-Content-Digest")
    if returned is not None and returned != blob.digest:
        ctx.fail(f"the upload completed as {returned}, not {blob.digest}")
    return ctx.last()


def _mib(n: int) -> str:
    return f"{n / MIB:g} MiB"


CHECKS: list[Check] = []


@check(CHECKS, "blob/streamed", "Stores a large blob sent as one streamed PATCH", True,
       f"{OCI_SPEC}#pushing-a-blob-in-chunks")
def streamed(ctx: Context) -> Outcome:
    blob = GeneratedBlob("blob/streamed", ctx.blob_size)
    desc = blob.descriptor()
    started = time.monotonic()
    if ctx.base.put_blob(desc, blob) == EXISTS:
        return Outcome(FAIL, "the registry claimed the blob before it was pushed", ctx.last())
    ctx.pushed_item(ctx.base, "blob", blob.digest)
    data = _upload_timing(blob.size, started)
    decided = ctx.exchanges[-2:]  # the PATCH of unknown length, the PUT ?digest=
    data |= _verify_served(ctx, ctx.base, blob)
    return Outcome(PASS, f"a {_mib(blob.size)} blob sent as one PATCH of unknown length (chunked transfer encoding, "
                         "as mdl push and docker push do) was stored and served back intact",
                   decided + ctx.last(), data)


@check(CHECKS, "blob/monolithic", "Stores a large blob sent in one PUT", True,
       f"{OCI_SPEC}#pushing-a-blob-monolithically")
def monolithic(ctx: Context) -> Outcome:
    blob, location, _ = _begin(ctx, "blob/monolithic")
    started = time.monotonic()
    decided = _commit(ctx, ctx.base, location, blob, blob.body(0, blob.size))
    data = _upload_timing(blob.size, started)
    data |= _verify_served(ctx, ctx.base, blob)
    return Outcome(PASS, f"a {_mib(blob.size)} blob sent in one PUT ?digest= with Content-Length was stored and "
                         "served back intact", decided + ctx.last(), data)


def default_chunk(size: int) -> int:
    """About a fifth of the blob in whole MiB, 1 to 64 MiB: several chunks and a short last one."""
    return max(MIB, min(64 * MIB, size // 5 // MIB * MIB))


@check(CHECKS, "blob/chunked", "Stores a large blob sent in chunks", True, f"{OCI_SPEC}#pushing-a-blob-in-chunks")
def chunked(ctx: Context) -> Outcome:
    blob, location, post = _begin(ctx, "blob/chunked")
    decided = ctx.last()
    min_text = post.headers.get("OCI-Chunk-Min-Length")
    min_len = int(min_text) if min_text and min_text.isdigit() else None
    chunk = max(min_len or 0, default_chunk(blob.size))
    data: dict = {"oci_chunk_min_length": min_len, "first_chunk_size": chunk, "refused_chunks": []}
    accepted: list[int] = []
    offset = 0
    started = time.monotonic()
    while offset < blob.size:
        n = min(chunk, blob.size - offset)
        what = f"PATCH of bytes {offset}-{offset + n - 1} ({_mib(n)})"
        resp = ctx.send(ctx.base, "PATCH", location, action="pull,push", data=blob.body(offset, offset + n),
                        headers={"Content-Type": OCTET_STREAM, "Content-Range": f"{offset}-{offset + n - 1}",
                                 "Content-Length": str(n)})
        resp.close()
        if resp.status_code in (413, 416) and n == chunk and chunk // 2 >= max(min_len or 0, MIB):
            # A chunk over the registry's limit: record it, ask where the session stands, halve.
            data["refused_chunks"].append({"size": n, "status": resp.status_code})
            decided += ctx.last()
            status = ctx.send(ctx.base, "GET", location, action="pull,push")
            status.close()
            ctx.expect(status, (204,), "GET the upload's status after a refused chunk")
            m = _UPLOAD_RANGE.fullmatch((status.headers.get("Range") or "").strip())
            held = int(m.group(1)) + 1 if m and offset else 0
            if held != offset:
                ctx.fail(f"after refusing a chunk the upload holds {held} bytes, not {offset}", data)
            location = _next_location(ctx, status, location)
            chunk //= 2
            continue
        ctx.expect(resp, (202,), what)
        m = _UPLOAD_RANGE.fullmatch((resp.headers.get("Range") or "").strip())
        if not m or int(m.group(1)) != offset + n - 1:
            ctx.fail(f"{what} was acknowledged with Range {resp.headers.get('Range')!r}, not 0-{offset + n - 1}",
                     data)
        location = _next_location(ctx, resp, location)
        accepted.append(n)
        offset += n
    decided += ctx.last()
    decided += _commit(ctx, ctx.base, location, blob)
    data |= {"chunks": len(accepted), "largest_chunk_accepted": max(accepted), "last_chunk": accepted[-1]}
    data |= _upload_timing(blob.size, started)
    data |= _verify_served(ctx, ctx.base, blob)
    limit = f"OCI-Chunk-Min-Length {min_len}" if min_len is not None else "no OCI-Chunk-Min-Length"
    refused = "; refused " + ", ".join(f"{_mib(r['size'])} ({r['status']})" for r in data["refused_chunks"]) \
        if data["refused_chunks"] else ""
    return Outcome(PASS, f"a {_mib(blob.size)} blob sent in {len(accepted)} PATCHes of up to "
                         f"{_mib(max(accepted))} (last {_mib(accepted[-1])}) was stored and served back intact; "
                         f"{limit}{refused}", decided + ctx.last(), data)


@check(CHECKS, "blob/range", "Serves Range reads of a blob", False, f"{OCI_SPEC}#pulling-blobs")
def range_reads(ctx: Context) -> Outcome:
    blob = GeneratedBlob("blob/range", min(ctx.blob_size, RANGE_BLOB_SIZE))
    ctx.base.put_blob(blob.descriptor(), blob)
    ctx.pushed_item(ctx.base, "blob", blob.digest)
    decided = []
    data = {}
    # Across the first block boundary, then an open-ended tail: what a resumed download asks.
    for start, end in ((BLOCK - 100, BLOCK + 99), (blob.size - 1000, None)):
        last = blob.size - 1 if end is None else end
        header = f"bytes={start}-{'' if end is None else end}"
        resp = ctx.send(ctx.base, "GET", f"/v2/{ctx.base.repository}/blobs/{blob.digest}", stream=True,
                        headers={"Range": header, "Accept-Encoding": "identity"})
        if resp.status_code == 200:
            resp.close()
            return Outcome(NOT_SUPPORTED, f"GET with Range: {header} answered 200 with the whole blob: a download "
                                          "cannot resume", ctx.last())
        ctx.expect(resp, (206,), f"GET with Range: {header}")
        data["accept_ranges"] = resp.headers.get("Accept-Ranges")
        try:
            body = resp.raw.read(last - start + 2, decode_content=False)
        finally:
            resp.close()
        content_range = resp.headers.get("Content-Range")
        if content_range != f"bytes {start}-{last}/{blob.size}":
            ctx.fail(f"Range: {header} answered 206 with Content-Range {content_range!r}", data)
        if body != blob.read(start, last + 1):
            ctx.fail(f"Range: {header} answered 206 with other bytes ({len(body)})", data)
        decided += ctx.last()
    return Outcome(PASS, "206 with the right Content-Range and bytes, for a range across a block boundary and for "
                         "an open-ended tail (a resumed download)", decided, data)


@check(CHECKS, "blob/mount", "Mounts a blob from another repository", False,
       f"{OCI_SPEC}#mounting-a-blob-from-another-repository")
def mount(ctx: Context) -> Outcome:
    source, target = ctx.base, ctx.repo("mount")
    desc = ctx.push_blob(source, b"mdl registry conformance: blob/mount\n")
    resp = ctx.send(target, "POST", f"/v2/{target.repository}/blobs/uploads/", action="pull,push",
                    scopes=(f"repository:{source.repository}:pull",), headers={"Content-Length": "0"}, data=b"",
                    params={"mount": desc.digest, "from": source.repository})
    resp.close()
    decided = ctx.last()
    if resp.status_code == 202:
        location = _next_location(ctx, resp, "")
        if location:
            ctx.send(target, "DELETE", location, action="pull,push").close()
        return Outcome(NOT_SUPPORTED, "the mount request answered 202 (an upload session): blobs are uploaded "
                                      "again", decided)
    ctx.expect(resp, (201,), "POST ?mount=&from=")
    ctx.pushed_item(target, "blob", desc.digest)
    head = ctx.send(target, "HEAD", f"/v2/{target.repository}/blobs/{desc.digest}")
    head.close()
    if head.status_code != 200:
        return Outcome(FAIL, f"the mount answered 201 but HEAD in {target.repository} answered {describe(head)}",
                       decided + ctx.last())
    return Outcome(PASS, f"POST ?mount=&from= answered 201 and the blob is in {target.repository}",
                   decided + ctx.last())
