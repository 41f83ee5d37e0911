"""Copy a manifest graph from a source to a target: the one copy engine (docs/architecture.md).

`copy_model` serves push, pull, save and load: blobs first (config and layers, in parallel), then the
manifest, then its tags, so a target never holds a manifest whose blobs it lacks. It calls
`progress.start` before and `progress.done` after each `put_blob`; the target calls only
`progress.advance`. The first failure cancels what has not started, stops the transfers under way
(at their next `advance`) and propagates unchanged: saying which side failed is the caller's job.

The sides: the local store (`store.sides`), a registry repository (`registry.repository`), an OCI
layout directory (`layout.dir`) and an OCI layout tar (`layout.tar`); docs/architecture.md draws them.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from ..errors import DigestMismatchError, StoreError
from ..spec import mediatypes as mt
from .descriptor import Descriptor, Manifest, is_graph_node, parse_node, successors
from .digest import sha256_bytes
from .transfer import SENT, BlobSource, BlobTarget, ModelSource, NoProgress, Progress

COPY_BUFSIZE = 1 << 20  # read size; three reads are in flight per transfer (readahead.py)
MAX_RESUMES = 3  # reopenings of one blob after its stream broke
MAX_NESTING = 8
_NESTED_LIMIT = 4 << 20


def blob_kind(desc: Descriptor) -> str:
    """What a blob is, for progress: "manifest", "config" or "layer" (by media type)."""
    if is_graph_node(desc.media_type):
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
    nested = [d for d, _ in jobs.values() if is_graph_node(d.media_type)]
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
    node = parse_node(read_small_blob(source, desc), desc.digest, desc.media_type)
    if isinstance(node, Manifest):
        _copy_blobs(source, target, node, tracker, result, concurrency, depth)
        return
    for child in successors(node):
        if is_graph_node(child.media_type):
            _copy_nested(source, target, child, tracker, result, concurrency, depth + 1)
            if child.digest not in result.blobs:
                tracker.start(child, "manifest")
                result.blobs[child.digest] = target.put_blob(child, source, tracker)
                tracker.done(child, result.blobs[child.digest])


def read_small_blob(source: BlobSource, desc: Descriptor) -> bytes:
    """A small document's bytes (a nested manifest, a config), checked against its descriptor."""
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


__all__ = ["COPY_BUFSIZE", "CopyResult", "MAX_RESUMES", "blob_kind", "copy_model"]
