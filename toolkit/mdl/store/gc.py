"""Garbage collection: what the models in `index.json` reference, and deleting the rest.

Writers hold `gc.lock` shared (`writing()`) from their first blob until their tag is written, so a
collector, which holds it alone, never deletes a blob that is published but not yet referenced.
`rm` deletes the removed models' blobs at once unless a writer holds the store (then `prune` does).
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from ..content.descriptor import MANIFEST_TYPES, Descriptor
from ..content.digest import digest_hex
from ..content.graph import reachable_digests
from ..errors import ConflictError, MdlError, ModelNotFoundError, StoreError
from .index import IndexedStore, is_signature_entry, lookup_reference, ref_name
from .ingest import remove_if_stale
from .locks import flock, remove_temp_files


@dataclass
class RemovalResult:
    untagged: list[str] = field(default_factory=list)
    removed_models: list[str] = field(default_factory=list)
    deleted_blobs: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    # True when another process held the store for writing, so the removed models' blobs were left
    # for `prune` to delete.
    gc_deferred: bool = False


@dataclass
class PruneResult:
    deleted_blobs: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    stale_ingest: list[str] = field(default_factory=list)  # file names removed from ingest/


@dataclass(frozen=True)
class DiskUsage:
    models: int
    blobs: int
    blob_bytes: int
    referenced_bytes: int
    reclaimable_bytes: int
    ingest_bytes: int


def _children(store: IndexedStore, digest: str, media_type: str | None = None) -> list[str]:
    """Blobs reachable from a stored manifest or index (not the digest itself): the one graph walk."""
    # Without a media type the node's own mediaType (or its shape) says what it is.
    return reachable_digests(Descriptor(media_type or "application/octet-stream", digest, 0), store.read_node)


def referenced_blobs(store: IndexedStore) -> set[str]:
    """Every blob a model in the index needs: manifests (and indexes, recursively), configs, layers."""
    out: set[str] = set()
    for e in store.entries():
        out.add(e.digest)
        if not store.has_blob(e.digest):
            continue  # a dangling entry refers to nothing more
        try:
            out.update(_children(store, e.digest, e.media_type))
        except MdlError as err:
            raise StoreError(f"model {e.digest} in the local store is damaged: {err}",
                             f"remove it with `mdl rm --force {digest_hex(e.digest)[:12]}`, then prune") from None
    return out



def remove(store: IndexedStore, text: str, *, force: bool = False) -> RemovalResult:
    """Docker's `rm`: a tag is untagged (the model goes with its last tag); an ID or digest removes the
    model and all its tags (more than one tag needs `force`). Then the removed models' blobs that no
    remaining model uses are deleted, unless a writer holds the store (then `prune` does it later)."""
    result = RemovalResult()

    def change(entries: list[dict]) -> None:
        digests = [d["digest"] for d in entries if d["mediaType"] in MANIFEST_TYPES]
        target = store.match_id(text, digests)
        tag = None
        if target is None:
            ref = lookup_reference(text)
            if ref.digest is not None:
                if ref.digest not in digests:
                    raise ModelNotFoundError(text)
                target = ref.digest
            else:
                tag = str(ref)
                hit = [d for d in entries if ref_name(d) == tag]
                if not hit:
                    raise ModelNotFoundError(text)
                target = hit[0]["digest"]
        tags = [ref_name(d) for d in entries if d["digest"] == target and ref_name(d) is not None]
        if tag is not None:
            entries[:] = [d for d in entries if ref_name(d) != tag]
            result.untagged.append(tag)
            if not any(d["digest"] == target for d in entries):
                result.removed_models.append(target)
            return
        if len(tags) > 1 and not force:
            raise ConflictError(
                f"model {digest_hex(target)[:12]} is tagged as {', '.join(tags)}",  # type: ignore[arg-type]
                "use --force, or remove the tags one at a time")
        entries[:] = [d for d in entries if d["digest"] != target]
        result.untagged.extend(tags)  # type: ignore[arg-type]
        result.removed_models.append(target)

    if not store.index_path.exists():
        raise ModelNotFoundError(text)
    store.update_index(change)
    if result.removed_models:
        gone = {":sha256-" + digest_hex(d) + ".sig" for d in result.removed_models}
        # a removed model's signatures go with it (their blobs with the next prune)
        store.update_index(lambda entries: entries.__setitem__(slice(None), [
            d for d in entries if not any((ref_name(d) or "").endswith(s) for s in gone)]))
        _collect(store, result)
    return result



def _collect(store: IndexedStore, result: RemovalResult) -> None:
    with store.collecting(wait=False) as locked:
        if not locked:
            result.gc_deferred = True
            return
        owned: list[str] = []
        for digest in result.removed_models:
            owned.append(digest)
            try:
                owned.extend(_children(store, digest))
            except MdlError:
                pass  # a damaged manifest: delete it alone; prune finds what it referenced
        keep = referenced_blobs(store)
        for digest in dict.fromkeys(owned):
            if digest not in keep:
                freed = store.delete_blob(digest)
                if freed is not None:
                    result.deleted_blobs.append(digest)
                    result.freed_bytes += freed



def discard_unreferenced(store: IndexedStore, digests: list[str]) -> list[str]:
    """Delete those of `digests` no model references: what a failed command published and will not
    tag. Skipped (left for prune) while another writer holds the store, which may need them."""
    deleted: list[str] = []
    if not digests or not store.root.exists():
        return deleted
    with store.collecting(wait=False) as locked:
        if not locked:
            return deleted
        keep = referenced_blobs(store)
        for digest in dict.fromkeys(digests):
            if digest not in keep and store.delete_blob(digest) is not None:
                deleted.append(digest)
    return deleted



def remove_damaged(store: IndexedStore, corrupt: Collection[str], models: Collection[str],
                   still_corrupt: Callable[[str], bool] | None = None) -> RemovalResult:
    """`mdl verify --repair`: delete the `corrupt` blobs (content does not match the name), the index
    entries of `models` and of every entry whose graph uses a corrupt blob, then the removed models'
    blobs no remaining entry uses. Holds gc.lock exclusively, as `prune` does, so writers wait and a
    blob a writer has published but not yet tagged is never deleted; `still_corrupt` re-checks each
    corrupt blob under the lock (it is kept when it matches now)."""
    result = RemovalResult()
    if not store.root.exists():
        return result
    store.ensure_layout()
    with store.collecting():
        bad = {d for d in corrupt if store.has_blob(d) and (still_corrupt is None or still_corrupt(d))}
        drop = set(models) | bad

        def change(entries: list[dict]) -> None:
            kept = []
            for d in entries:
                gone = d["digest"] in drop
                if not gone and bad and store.has_blob(d["digest"]):
                    try:
                        gone = bool(bad.intersection(_children(store, d["digest"], d.get("mediaType"))))
                    except MdlError:
                        gone = False  # unreadable graph: it cannot be said to need a corrupt blob
                if gone:
                    if ref_name(d) is not None:
                        result.untagged.append(ref_name(d))  # type: ignore[arg-type]
                    if d["digest"] not in result.removed_models:
                        result.removed_models.append(d["digest"])
                else:
                    kept.append(d)
            entries[:] = kept

        store.update_index(change)
        owned: list[str] = list(bad)
        for digest in result.removed_models:
            owned.append(digest)
            if digest in bad:
                continue
            try:
                owned.extend(_children(store, digest))
            except MdlError:
                pass
        try:
            keep = referenced_blobs(store)
        except MdlError:
            keep = None  # a remaining model is damaged: delete only the corrupt blobs
        for digest in dict.fromkeys(owned):
            if digest in bad or (keep is not None and digest not in keep):
                freed = store.delete_blob(digest)
                if freed is not None:
                    result.deleted_blobs.append(digest)
                    result.freed_bytes += freed
    return result



def prune(store: IndexedStore) -> PruneResult:
    """Delete every blob no model references and every stale ingest file. Waits for writers to finish."""
    result = PruneResult()
    if not store.root.exists():
        return result
    store.ensure_layout()
    with store.collecting():
        keep = referenced_blobs(store)
        for digest, _st in list(store.blob_files()):
            if digest not in keep:
                freed = store.delete_blob(digest)
                if freed is not None:
                    result.deleted_blobs.append(digest)
                    result.freed_bytes += freed
        for p in sorted(store.ingest_dir.iterdir()):
            freed = remove_if_stale(p)
            if freed is not None:
                result.stale_ingest.append(p.name)
                result.freed_bytes += freed
        with flock(store.index_lock, fcntl.LOCK_EX):
            remove_temp_files(store.root, "index.json")
    return result


def disk_usage(store: IndexedStore) -> DiskUsage:
    keep = referenced_blobs(store) if store.index_path.exists() else set()
    count = total = referenced = 0
    for digest, st in store.blob_files():
        count += 1
        total += st.st_size
        if digest in keep:
            referenced += st.st_size
    ingest = 0
    if store.ingest_dir.is_dir():
        for p in store.ingest_dir.iterdir():
            try:
                ingest += p.stat().st_size
            except FileNotFoundError:
                pass
    models = len({d["digest"] for d in store.read_index()
                  if d["mediaType"] in MANIFEST_TYPES and not is_signature_entry(d)})
    return DiskUsage(models, count, total, referenced, total - referenced, ingest)
