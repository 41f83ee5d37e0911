"""`mdl verify --all`: check the whole local store, changing nothing; `--repair` removes what is corrupt.

Every model in `index.json` is checked by `check_model_in_store`, and the store itself is checked:

- `index-entry-missing` (failure): an index entry whose manifest (or index) blob is not in `blobs/`;
- `blob-corrupt` (failure): a blob file whose content does not hash to its name;
- `dangling-link` (failure): a symbolic link in `blobs/sha256/` whose target is gone;
- `blob-unreadable` (failure): a blob file that cannot be read;
- `unreferenced-blob` (info): a blob no model needs (`mdl prune` deletes it);
- `stale-ingest` (info): an ingest file no writer holds (a killed pull or package; `mdl prune` deletes it).

Each blob file is hashed once: the per-model checks share a `HashCache`, and the store-wide pass reads
only the blobs no model check read. `repair` removes corrupt blobs and the models that need them (and
index entries whose manifest is missing), under the store's gc lock, as `prune` does; a healthy model
is never touched.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from .content.descriptor import MANIFEST_TYPES, Descriptor
from .content.digest import ALGORITHM
from .content.graph import reachable_digests
from .store import LayoutStore, RemovalResult, is_signature_entry
from .store.ingest import is_stale
from .errors import DigestMismatchError, MdlError
from .model_check import HashCache, Report, blob_matches_name, check_model_in_store, hash_layers

INFO_KINDS = frozenset({"unreferenced-blob", "stale-ingest"})


@dataclass(frozen=True)
class StoreFinding:
    kind: str
    path: str  # `index.json` JSON path, or a file path relative to the store root
    message: str
    severity: str = "error"  # "error" fails the check; "info" does not


@dataclass
class StoreReport:
    models: list[Report] = field(default_factory=list)
    findings: list[StoreFinding] = field(default_factory=list)
    corrupt_blobs: set[str] = field(default_factory=set)
    dangling_entries: set[str] = field(default_factory=set)  # manifest digests the index names but blobs lack
    broken_models: set[str] = field(default_factory=set)  # models with a missing or corrupt blob
    blobs_hashed: int = 0
    bytes_hashed: int = 0

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.models) and not any(f.severity == "error" for f in self.findings)

    def add(self, kind: str, path: str, message: str) -> None:
        self.findings.append(StoreFinding(kind, path, message, "info" if kind in INFO_KINDS else "error"))

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "models": [r.as_dict() for r in self.models],
            "store": {"findings": [asdict(f) for f in self.findings],
                      "blobs_hashed": self.blobs_hashed, "bytes_hashed": self.bytes_hashed},
        }


def check_store(store: LayoutStore) -> StoreReport:
    """Check every model and blob of `store`; reads only."""
    report = StoreReport()
    try:
        entries = store.entries()
    except MdlError as e:
        report.add("index-invalid", "index.json", e.message)
        entries = []
    cache = HashCache()
    referenced: set[str] = set()
    models: dict[str, None] = {}  # the models' digests, each once, in index order
    for i, e in enumerate(entries):
        referenced.add(e.digest)
        if not store.has_blob(e.digest):
            report.add("index-entry-missing", f"index.json$.manifests[{i}]",
                       f"index entry {e.ref_name or e.digest} names {e.digest}, which is not in the store")
            report.dangling_entries.add(e.digest)
            continue
        # what cannot be read is skipped here: the model check reports it
        referenced.update(reachable_digests(Descriptor(e.media_type, e.digest, e.size), store.read_node, tolerant=True))
        # Signature manifests are not models; their blobs are still hashed with the unreferenced ones.
        if e.media_type in MANIFEST_TYPES and e.digest not in models and not is_signature_entry(e):
            models[e.digest] = None
    hash_layers(store, _readable_manifests(store, models, cache), cache)  # all at once, then each model in turn
    for digest in models:
        model = check_model_in_store(store, digest, cache=cache)
        report.models.append(model)
        if any(f.kind in ("blob-missing", "digest-mismatch") for f in model.findings):
            report.broken_models.add(digest)
    report.corrupt_blobs |= cache.corrupt
    report.blobs_hashed = len(cache.hashed)
    _check_blob_files(store, report, cache, referenced)
    _check_ingest(store, report)
    return report


def _readable_manifests(store: LayoutStore, digests, cache: HashCache) -> list:
    """The manifests of `digests` that can be read, kept in `cache` for the model checks; those checks
    report the others."""
    for digest in digests:
        try:
            cache.manifests[digest] = store.manifest(digest)
        except MdlError:
            pass
    return [cache.manifests[d] for d in digests if d in cache.manifests]


def _check_blob_files(store: LayoutStore, report: StoreReport, cache: HashCache, referenced: set[str]) -> None:
    blobs = store.root / "blobs" / ALGORITHM
    try:
        it = os.scandir(blobs)
    except FileNotFoundError:
        return
    with it:
        names = sorted(de.name for de in it)
    for name in names:
        rel = f"blobs/{ALGORITHM}/{name}"
        p = blobs / name
        if p.is_symlink() and not p.exists():
            report.add("dangling-link", rel, f"{rel} is a symbolic link to {os.readlink(p)}, which does not exist")
            continue
        if len(name) != 64 or any(c not in "0123456789abcdef" for c in name):
            report.add("unreferenced-blob", rel, f"{rel} is not named by a digest; `mdl prune` leaves it")
            continue
        digest = f"{ALGORITHM}:{name}"
        if digest not in cache.hashed:
            try:
                with store.open_blob(digest) as f:
                    report.bytes_hashed += f.drain()
            except DigestMismatchError as e:
                report.corrupt_blobs.add(digest)
                report.add("blob-corrupt", rel, e.message)
            except MdlError as e:
                report.add("blob-unreadable", rel, e.message)
            else:
                report.blobs_hashed += 1
        if digest not in referenced:
            size = store.blob_size(digest)
            report.add("unreferenced-blob", rel, f"blob {digest} ({size} bytes) is used by no model; "
                       "`mdl prune` deletes it")
    # corrupt blobs the model checks found are reported once, on the model, at their JSON path


def _check_ingest(store: LayoutStore, report: StoreReport) -> None:
    ingest = store.root / "ingest"
    try:
        names = sorted(os.listdir(ingest))
    except FileNotFoundError:
        return
    for name in names:
        p = ingest / name
        if is_stale(p):
            report.add("stale-ingest", f"ingest/{name}",
                       f"ingest/{name} was left by a writer that stopped; `mdl prune` deletes it")


def repair(store: LayoutStore, report: StoreReport | None = None) -> tuple[StoreReport, RemovalResult]:
    """Remove corrupt blobs, the models that need them, and index entries whose manifest is missing.
    Models with a missing blob are removed too (they cannot be used; pull them again). Returns the report
    the repair acted on and what was removed."""
    report = report or check_store(store)
    models = set(report.dangling_entries) | set(report.broken_models)

    result = store.remove_damaged(report.corrupt_blobs, models,
                                  lambda digest: not blob_matches_name(store, digest))
    return report, result
