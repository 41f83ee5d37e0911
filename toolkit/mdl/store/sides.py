"""The local store as the two sides of a copy (`content.copy.copy_model`): a source for push and
save, a target for pull and load.

`StoreTarget.put_blob` downloads into a resumable ingest file (`LayoutStore.resumable_ingest`): an
interrupted pull resumes where it stopped, and a read that breaks mid-blob (connection reset, truncated
chunked body) is reopened at the current offset, a bounded number of times, since the registry side
does not retry mid-stream.
"""

from __future__ import annotations

import threading
import time
from typing import BinaryIO

from ..content.copy import COPY_BUFSIZE, MAX_RESUMES, blob_kind
from ..retry import is_transient
from ..content.descriptor import Descriptor, Manifest
from ..content.readahead import read_ahead
from ..content.transfer import EXISTS, SENT, BlobSource, Progress, open_blob_file
from ..errors import DigestMismatchError, StoreError
from ..reference import parse_reference
from .cas import BlobMissingError
from .store import LayoutStore


class StoreSource:
    """The local store as a ModelSource (push, save): manifests verified, blobs handed out raw
    (the target verifies what it receives)."""

    def __init__(self, store: LayoutStore):
        self.store = store

    def __repr__(self) -> str:
        return f"StoreSource({str(self.store.root)!r})"

    def fetch_manifest(self, reference: str) -> Manifest:
        """The manifest a tag, model ID or digest reference names, read and verified."""
        return self.store.manifest(self.store.resolve(reference))

    def open_blob(self, desc: Descriptor, offset: int = 0) -> tuple[BinaryIO, int]:
        path = self.store.blob_path(desc.digest)
        try:
            return open_blob_file(path, desc, offset)
        except FileNotFoundError:
            raise BlobMissingError(desc.digest) from None
        except OSError as e:
            raise StoreError(f"cannot read blob {desc.digest} at {path}: {e.strerror}",
                             "check the permissions of the store") from None


class StoreTarget:
    """The local store as a BlobTarget (pull, load).

    Blobs are written through resumable ingest files and verified before they are published; `added`
    lists the blobs this target published (SENT), for a caller that wants them gone again on failure
    (`store.discard_unreferenced(target.added)`; a pull may rather keep them, as a resume point).
    Hold `store.writing()` around the whole copy so `prune` does not delete blobs before they are tagged.
    """

    def __init__(self, store: LayoutStore, *, bufsize: int = COPY_BUFSIZE, max_resumes: int = MAX_RESUMES,
                 backoff: float = 0.2):
        self.store = store
        self.bufsize = bufsize
        self.max_resumes = max_resumes
        self.backoff = backoff  # seconds before the n-th reopening: n * backoff
        self.added: list[str] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"StoreTarget({str(self.store.root)!r})"

    def has_blob(self, desc: Descriptor) -> bool:
        return self.store.blob_size(desc.digest) == desc.size

    def put_blob(self, desc: Descriptor, source: BlobSource, progress: Progress) -> str:
        """Download `desc` from `source` (resuming a partial file an earlier run left), verify, publish.
        Reports start, advances and done to `progress` (copy_model passes each on once)."""
        progress.start(desc, blob_kind(desc))
        outcome = self._put(desc, source, progress)
        progress.done(desc, outcome)
        return outcome

    def _put(self, desc: Descriptor, source: BlobSource, progress: Progress) -> str:
        fresh_retry = False
        while True:
            with self.store.resumable_ingest(desc) as w:
                if w.exists:
                    return EXISTS
                resumed = w.offset > 0
                try:
                    self._fill(w, desc, source, progress)
                    w.commit()
                except DigestMismatchError:
                    # A partial file left by an earlier run may hold bad bytes: start over once.
                    if resumed and not fresh_retry and not w.path.exists():
                        fresh_retry = True
                        continue
                    raise
            with self._lock:
                self.added.append(desc.digest)
            return SENT

    def _fill(self, w, desc: Descriptor, source: BlobSource, progress: Progress) -> None:
        """Stream the blob into `w` from `w.offset` on, reopening the source when the stream breaks."""
        if desc.size == 0:
            return  # nothing to read; commit checks the digest of no bytes
        failures = 0
        while w.offset < desc.size:
            try:
                stream, start = source.open_blob(desc, w.offset)
            except BaseException as e:
                if not is_transient(e) or failures >= self.max_resumes:
                    raise
                failures += 1
                time.sleep(self.backoff * failures)
                continue
            try:
                if start != w.offset:
                    if start != 0:
                        raise StoreError(f"the source of blob {desc.digest} started at byte {start}, "
                                         f"not at {w.offset} or 0", "this is a bug in the source")
                    w.restart()
                for chunk in read_ahead(stream, desc.size - w.offset, bufsize=self.bufsize):
                    w.write(chunk)  # hashes, then writes, while the next chunk arrives
                    progress.advance(desc, len(chunk))
                if w.offset >= desc.size:
                    return  # all bytes there; commit checks they are the right ones
                # EOF before the end: the stream stopped early, which a reopen may fix
                if failures >= self.max_resumes:
                    return  # commit reports the short blob
                failures += 1
            except BaseException as e:
                if not is_transient(e) or failures >= self.max_resumes:
                    raise
                failures += 1
                time.sleep(self.backoff * failures)
            finally:
                try:
                    stream.close()
                except Exception:
                    pass

    def put_manifest(self, manifest: Manifest, tags: list[str]) -> None:
        had = self.store.has_blob(manifest.digest)
        self.store.put_manifest(manifest)
        if not had:
            with self._lock:
                self.added.append(manifest.digest)
        for tag in tags:
            self.store.add_tag(manifest.digest, parse_reference(tag))
        if not tags:
            self.store.add_untagged(manifest.digest)
