"""Copy a manifest graph from a source to a target (DESIGN.md: every command is a copy).

`copy_model` serves push, pull, save and load: blobs first (config and layers, in parallel), then the
manifest, then its tags, so a target never holds a manifest whose blobs it lacks. It calls
`progress.start` before and `progress.done` after each `put_blob`; the target calls only
`progress.advance`. The first failure cancels what has not started, stops the transfers under way
(at their next `advance`) and propagates unchanged: saying which side failed is the caller's job.

`StoreSource` and `StoreTarget` are the local store's sides. `StoreTarget.put_blob` downloads into a
resumable ingest file (LayoutStore.resumable_ingest): an interrupted pull resumes where it stopped,
and a read that breaks mid-blob (connection reset, truncated chunked body) is reopened at the
current offset, a bounded number of times, since the registry side does not retry mid-stream.
"""

from __future__ import annotations

import http.client
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import BinaryIO

from ..errors import DigestMismatchError, MdlError, StoreError
from ..reference import parse_reference
from ..spec import mediatypes as mt
from .descriptor import INDEX_TYPES, MANIFEST_TYPES, Descriptor, Manifest, load_json_document
from .layout import BlobMissingError, LayoutStore
from .readahead import read_ahead
from .transfer import EXISTS, SENT, BlobSource, BlobTarget, ModelSource, NoProgress, Progress

COPY_BUFSIZE = 1 << 20  # read size; three reads are in flight per transfer (readahead.py)
MAX_RESUMES = 3  # reopenings of one blob after its stream broke
MAX_NESTING = 8
_NESTED_LIMIT = 4 << 20


def _transient_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(errors that mean 'the stream broke, reopen it', errors that look like it but are not)."""
    retry: list[type[BaseException]] = [OSError, http.client.HTTPException]
    never: list[type[BaseException]] = []
    try:
        import urllib3.exceptions as u3

        retry += [u3.ProtocolError, u3.ReadTimeoutError, u3.DecodeError]
    except ImportError:  # pragma: no cover - requests brings urllib3
        pass
    try:
        import requests.exceptions as rq

        retry += [rq.ChunkedEncodingError, rq.ConnectionError, rq.ContentDecodingError]
        never += [rq.HTTPError, rq.InvalidURL, rq.InvalidHeader, rq.MissingSchema]
    except ImportError:  # pragma: no cover
        pass
    return tuple(retry), tuple(never)


TRANSIENT_ERRORS, _NOT_TRANSIENT = _transient_errors()


def is_transient(error: BaseException | None) -> bool:
    """A broken stream worth reopening: connection reset, truncated body; not an HTTP status.

    An mdl error counts when it says so (`transient = True`) or was raised from such a low-level error
    (the registry side wraps a connection lost mid-body in RegistryUnreachableError, `from` the cause)."""
    for _ in range(8):
        if error is None:
            return False
        if getattr(error, "transient", False):
            return True
        if not isinstance(error, MdlError):
            return isinstance(error, TRANSIENT_ERRORS) and not isinstance(error, _NOT_TRANSIENT)
        error = error.__cause__
    return False


def blob_kind(desc: Descriptor) -> str:
    """What a blob is, for progress: "manifest", "config" or "layer" (by media type)."""
    if desc.media_type in MANIFEST_TYPES or desc.media_type in INDEX_TYPES:
        return "manifest"
    if desc.media_type in mt.MODEL_CONFIGS or desc.media_type == mt.OCI_EMPTY:
        return "config"
    return "layer"


@dataclass
class CopyResult:
    digest: str  # the manifest's
    sent: int = 0  # blob bytes moved (a resumed blob counts only what this run moved)
    blobs: dict[str, str] = field(default_factory=dict)  # digest -> SENT, EXISTS or MOUNTED


class CopyCancelled(Exception):
    """Raised inside a transfer when another transfer of the same copy failed (never escapes copy_model)."""


class _Tracker:
    """Wraps the caller's Progress: counts bytes, stops a transfer once the copy is cancelled, and passes
    on one start and one done per blob (copy_model reports them, and so may the target's put_blob)."""

    def __init__(self, inner: Progress):
        self.inner = inner
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._started: set[str] = set()
        self._done: set[str] = set()
        self.sent = 0

    def start(self, desc: Descriptor, what: str) -> None:
        if self.cancelled.is_set():
            raise CopyCancelled()
        with self._lock:
            if desc.digest in self._started:
                return
            self._started.add(desc.digest)
        self.inner.start(desc, what)

    def advance(self, desc: Descriptor, nbytes: int) -> None:
        if self.cancelled.is_set():
            raise CopyCancelled()
        with self._lock:
            self.sent += nbytes
        self.inner.advance(desc, nbytes)

    def done(self, desc: Descriptor, outcome: str) -> None:
        with self._lock:
            if desc.digest in self._done:
                return
            self._done.add(desc.digest)
        self.inner.done(desc, outcome)


def copy_model(source: ModelSource, target: BlobTarget, manifest: Manifest, tags: list[str], *,
               concurrency: int = 4, progress: Progress | None = None) -> CopyResult:
    """Copy `manifest` (already fetched from `source` and verified) and its blobs to `target`, then tag it.

    Blobs go first, `concurrency` at a time, each verified by the target before it becomes visible;
    the manifest is put last, with `tags` (an empty list stores it untagged). A config or layer that
    is itself a manifest or an index is copied with its own blobs first (nested graphs, bounded depth).
    The first error propagates unchanged after the other transfers stopped.
    """
    tracker = _Tracker(progress if progress is not None else NoProgress())
    result = CopyResult(manifest.digest)
    _copy_blobs(source, target, manifest, tracker, result, max(1, concurrency), 0)
    mdesc = manifest.descriptor()
    tracker.start(mdesc, "manifest")
    target.put_manifest(manifest, list(tags))
    tracker.done(mdesc, SENT)
    result.sent = tracker.sent
    return result


def _copy_blobs(source: BlobSource, target: BlobTarget, manifest: Manifest, tracker: _Tracker,
                result: CopyResult, concurrency: int, depth: int) -> None:
    jobs: dict[str, tuple[Descriptor, str]] = {}
    for what, desc in [("config", manifest.config), *(("layer", d) for d in manifest.layers)]:
        if desc.digest not in jobs and desc.digest not in result.blobs:
            jobs[desc.digest] = (desc, what)
    nested = [d for d, _ in jobs.values() if d.media_type in MANIFEST_TYPES or d.media_type in INDEX_TYPES]
    for desc in nested:  # their blobs first, so nothing refers to what the target lacks
        _copy_nested(source, target, desc, tracker, result, concurrency, depth + 1)

    def one(desc: Descriptor, what: str) -> str:
        tracker.start(desc, what)
        outcome = target.put_blob(desc, source, tracker)
        tracker.done(desc, outcome)
        return outcome

    todo = list(jobs.values())
    if concurrency == 1 or len(todo) <= 1:
        for desc, what in todo:
            result.blobs[desc.digest] = one(desc, what)
        return
    pool = ThreadPoolExecutor(max_workers=min(concurrency, len(todo)), thread_name_prefix="mdl-copy")
    try:
        futures = {pool.submit(one, desc, what): desc for desc, what in todo}
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        first = _first_error(futures, done)
        if first is not None:
            raise first
        for f, desc in futures.items():
            result.blobs[desc.digest] = f.result()
    except BaseException:
        tracker.cancelled.set()  # the transfers under way stop at their next advance
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _first_error(futures: dict, done: set) -> BaseException | None:
    """The error that stopped the copy: a real one, in submission order, rather than a cancellation."""
    errors = [f.exception() for f in futures if f in done and not f.cancelled() and f.exception() is not None]
    real = [e for e in errors if not isinstance(e, CopyCancelled)]
    return (real or errors or [None])[0]


def _copy_nested(source: BlobSource, target: BlobTarget, desc: Descriptor, tracker: _Tracker,
                 result: CopyResult, concurrency: int, depth: int) -> None:
    """A manifest or index referenced as a blob: copy what it refers to (it is put as a blob afterwards)."""
    if depth > MAX_NESTING:
        raise StoreError(f"manifest {desc.digest} nests manifests more than {MAX_NESTING} deep",
                         "this is not a model artifact mdl can copy")
    if target.has_blob(desc):
        return
    raw = read_small_blob(source, desc)
    if desc.media_type in MANIFEST_TYPES:
        _copy_blobs(source, target, Manifest.parse(raw, desc.digest), tracker, result, concurrency, depth)
        return
    doc = load_json_document(raw, f"index {desc.digest}")
    children = doc.get("manifests") if isinstance(doc, dict) else None
    for i, d in enumerate(children if isinstance(children, list) else []):
        child = Descriptor.from_dict(d, what=f"index {desc.digest}", path=f"$.manifests[{i}]")
        if child.media_type in MANIFEST_TYPES or child.media_type in INDEX_TYPES:
            _copy_nested(source, target, child, tracker, result, concurrency, depth + 1)
            if child.digest not in result.blobs:
                tracker.start(child, "manifest")
                result.blobs[child.digest] = target.put_blob(child, source, tracker)
                tracker.done(child, result.blobs[child.digest])


def read_small_blob(source: BlobSource, desc: Descriptor) -> bytes:
    """A small document's bytes (a nested manifest, a config), checked against its descriptor."""
    from .digest import sha256_bytes

    if desc.size > _NESTED_LIMIT:
        raise StoreError(f"manifest {desc.digest} is {desc.size} bytes, over the {_NESTED_LIMIT}-byte limit",
                         "this is not a model artifact mdl can copy")
    stream, _ = source.open_blob(desc, 0)
    try:
        data = b""
        while len(data) < desc.size + 1:
            chunk = stream.read(desc.size + 1 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        stream.close()
    actual = sha256_bytes(data)
    if len(data) != desc.size or actual != desc.digest:
        raise DigestMismatchError("blob", desc.digest, actual, desc.size, len(data))
    return data


# ---------------------------------------------------------------------------------------------
# the local store's sides


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


def open_blob_file(path, desc: Descriptor, offset: int) -> tuple[BinaryIO, int]:
    """A blob file opened at `offset` when that lies inside the blob, else at 0 (BlobSource.open_blob)."""
    f = open(path, "rb", buffering=0)
    start = offset if 0 < offset <= desc.size else 0
    if start:
        f.seek(start)
    return f, start  # type: ignore[return-value]


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


__all__ = [
    "COPY_BUFSIZE", "CopyResult", "MAX_RESUMES", "StoreSource", "StoreTarget", "TRANSIENT_ERRORS",
    "blob_kind", "copy_model", "is_transient",
]
