"""An OCI layout directory other than the store (`mdl save DIR`, `mdl load DIR`, skopeo's `oci:DIR`)
as both sides of a copy. See `layout.common` for what a layout holds."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO

from ..content.copy import COPY_BUFSIZE, blob_kind
from ..content.descriptor import Descriptor, Index, Manifest, canonical_json
from ..content.digest import ALGORITHM, digest_hex, sha256_bytes
from ..content.transfer import EXISTS, SENT, BlobSource, Progress, open_blob_file
from ..errors import DigestMismatchError, ReferenceFormatError
from ..reference import parse_reference
from ..spec import mediatypes as mt
from ..store import DOCUMENT_LIMIT, LAYOUT_VERSION
from ..store.index import ref_name
from ..store.locks import Writeback, atomic_write, temp_name, unlink_quiet, write_all
from .common import LayoutError, check_layout_version, parse_index


class LayoutDir:
    """An OCI layout directory other than the store: a ModelSource (load) and a BlobTarget (save).

    Unlike the store it keeps no lock files and no ingest directory: blobs are written to a hidden temp
    file beside their final name, verified, and renamed; index.json is replaced atomically.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._blobs = self.root / "blobs" / ALGORITHM
        self._index = self.root / "index.json"

    def __repr__(self) -> str:
        return f"LayoutDir({str(self.root)!r})"

    def is_layout(self) -> bool:
        return (self.root / "oci-layout").is_file()

    def check_layout(self) -> None:
        path = self.root / "oci-layout"
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise LayoutError(f"{self.root} is not an OCI image layout (no oci-layout file)",
                              "name a directory written by `mdl save` or `skopeo copy ... oci:DIR`") from None
        except OSError as e:
            raise LayoutError(f"{path} cannot be read: {e}", "check the layout") from None
        check_layout_version(raw, str(path))

    def create(self) -> None:
        """Make this directory a layout (empty or missing), or check it is one already."""
        if self.root.exists() and not self.root.is_dir():
            raise LayoutError(f"{self.root} exists and is not a directory",
                              "name a new directory, or a file ending in .tar")
        if self.root.is_dir() and not self.is_layout():
            if any(self.root.iterdir()):
                raise LayoutError(f"{self.root} is not empty and is not an OCI image layout",
                                  "name a new or empty directory, or an existing layout to add the model to")
        if self.is_layout():
            self.check_layout()
        self._blobs.mkdir(parents=True, exist_ok=True)
        if not self.is_layout():
            atomic_write(self.root / "oci-layout", canonical_json({"imageLayoutVersion": LAYOUT_VERSION}))
        if not self._index.exists():
            atomic_write(self._index, Index.build([]).raw)

    def blob_path(self, digest: str) -> Path:
        return self._blobs / digest_hex(digest)

    def read_index(self) -> list[dict]:
        try:
            raw = self._index.read_bytes()
        except FileNotFoundError:
            raise LayoutError(f"{self.root} has no index.json", "the layout is incomplete") from None
        return parse_index(raw, str(self._index))

    def read_blob(self, desc: Descriptor, what: str = "blob") -> bytes:
        """A small blob (a manifest or config) read whole and checked against `desc`."""
        if desc.size > DOCUMENT_LIMIT:
            raise LayoutError(f"{self.root}: {what} {desc.digest} is {desc.size} bytes, "
                              f"over the {DOCUMENT_LIMIT}-byte limit for a document", "the layout is damaged")
        path = self.blob_path(desc.digest)
        try:
            with open(path, "rb") as f:
                data = f.read(DOCUMENT_LIMIT + 1)
        except FileNotFoundError:
            raise LayoutError(f"{self.root}: {what} {desc.digest} is missing (no {path})",
                              "the layout is incomplete; save or copy it again") from None
        actual = sha256_bytes(data)
        if len(data) != desc.size or actual != desc.digest:
            raise DigestMismatchError(f"{self.root}: {what}", desc.digest, actual, desc.size, len(data))
        return data

    # -- ModelSource ---------------------------------------------------------------------------------

    def fetch_manifest(self, reference: str) -> Manifest:
        """The manifest whose ref.name is `reference` (as written, or normalized), or whose digest it is."""
        entries = self.read_index()
        wanted = {reference}
        try:
            ref = parse_reference(reference)
            wanted.add(str(ref))
            if ref.digest:
                wanted.add(ref.digest)
        except ReferenceFormatError:
            pass
        for d in entries:
            if ref_name(d) in wanted or d["digest"] in wanted:
                desc = Descriptor.from_dict(d)
                return Manifest.parse(self.read_blob(desc, "manifest"), desc.digest)
        raise LayoutError(f"{self.root} has no manifest named {reference!r}",
                          "list its names with `skopeo inspect` or look in its index.json")

    def open_blob(self, desc: Descriptor, offset: int = 0) -> tuple[BinaryIO, int]:
        path = self.blob_path(desc.digest)
        try:
            return open_blob_file(path, desc, offset)
        except FileNotFoundError:
            raise LayoutError(f"{self.root}: blob {desc.digest} is missing (no {path})",
                              "the layout is incomplete; save or copy it again") from None

    # -- BlobTarget --------------------------------------------------------------------------------------

    def has_blob(self, desc: Descriptor) -> bool:
        return self.blob_size(desc.digest) == desc.size

    def blob_size(self, digest: str) -> int | None:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def put_blob(self, desc: Descriptor, source: BlobSource, progress: Progress) -> str:
        progress.start(desc, blob_kind(desc))
        outcome = EXISTS if self.has_blob(desc) else self._write_blob(desc, source, progress)
        progress.done(desc, outcome)
        return outcome

    def _write_blob(self, desc: Descriptor, source: BlobSource, progress: Progress) -> str:
        final = self.blob_path(desc.digest)
        tmp = temp_name(final)
        stream, start = source.open_blob(desc, 0)
        try:
            with open(tmp, "xb", buffering=0) as out:
                h = hashlib.sha256()
                writeback = Writeback(out.fileno())
                size = _pump(stream, desc, lambda v: (h.update(v), write_all(out.fileno(), v), writeback.wrote(len(v))),
                             progress)
                actual = f"{ALGORITHM}:{h.hexdigest()}"
                if size != desc.size or actual != desc.digest:
                    raise DigestMismatchError("blob", desc.digest, actual, desc.size, size)
                os.fsync(out.fileno())
            os.replace(tmp, final)
        except BaseException:
            unlink_quiet(tmp)
            raise
        finally:
            stream.close()
        return SENT

    def put_manifest(self, manifest: Manifest, tags: list[str]) -> None:
        for d in manifest.blob_descriptors():
            if not self.has_blob(d):
                raise LayoutError(f"{self.root}: blob {d.digest} is missing", "copy the blobs before the manifest")
        if not self.has_blob(manifest.descriptor()):
            atomic_write(self.blob_path(manifest.digest), manifest.raw)
        entries = self._read_index_or_empty()
        base = manifest.descriptor().to_dict()
        for name in tags:
            entries = [d for d in entries if ref_name(d) != name]
            entries.append({**base, "annotations": {mt.ANNOTATION_REF_NAME: name}})
        if not tags and not any(d["digest"] == manifest.digest for d in entries):
            entries.append(base)
        atomic_write(self._index, Index.build(entries).raw)

    def _read_index_or_empty(self) -> list[dict]:
        return self.read_index() if self._index.exists() else []


def _pump(stream, desc: Descriptor, sink, progress: Progress) -> int:
    """Copy `stream` to `sink(view)` through one reused buffer; the byte count (stops past desc.size)."""
    buf = bytearray(COPY_BUFSIZE)
    view = memoryview(buf)
    total = 0
    read = getattr(stream, "readinto", None)
    while True:
        if read is not None:
            n = read(view)
            chunk = view[:n] if n else None
        else:
            chunk = stream.read(len(buf))
            n = len(chunk)
        if not n:
            return total
        sink(chunk)
        total += n
        progress.advance(desc, n)
        if total > desc.size:
            return total
