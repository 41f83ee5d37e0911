"""The local store: an OCI image layout (image-spec v1.1 `image-layout.md`) that skopeo and oras can read.

On disk, under the store root (`$MDL_HOME`, else `$XDG_DATA_HOME/mdl`, else `~/.local/share/mdl`)::

    <root>/
      oci-layout              {"imageLayoutVersion": "1.0.0"}
      index.json              OCI image index: one entry per (model, tag), see below
      index.lock              flock'ed exclusively around every read-modify-write of index.json
      gc.lock                 flock'ed shared by writers (`writing()`), exclusively by `prune()`
      blobs/sha256/<hex>      content-addressed blobs: manifests, configs, layers (read-only, 0444)
      ingest/<random>.part    blobs being written; each flock'ed by its writer while it lives
      ingest/sha256-<hex>.part  a resumable download of blob sha256:<hex> (`resumable_ingest`): kept
                              when the copy is interrupted, so the next pull resumes from its size

`index.json` entries are manifest descriptors. A tagged model has one entry per tag, the tag in the
`org.opencontainers.image.ref.name` annotation as a normalized reference (`docker.io/ai/tiny:latest`,
so `skopeo inspect oci:<root>:docker.io/ai/tiny:latest` finds it). A model kept without a tag (pulled
by digest, or whose tag moved elsewhere, as Docker keeps a dangling image) has one entry without the
annotation. An entry may also be an image index (signatures); its manifests count as referenced.

Consistency rules:
- A blob becomes visible only whole and verified: it is written to an ingest file, hashed while written,
  checked against the expected digest and size, fsync'ed, made read-only, then published by a link (or
  rename) to `blobs/sha256/<hex>`; when that name exists already the existing blob is kept.
- `import_file` hard-links the input file into the store when it is on the same file system (no copy,
  never chmod'ed: the inode is the user's too). Every read goes through a verifying reader, so a blob
  whose linked source was later edited in place is reported as corrupt, never served.
- `index.json` is rewritten to a temp file in the root, fsync'ed and `os.replace`d under `index.lock`,
  so concurrent taggers never lose an update and readers need no lock.
- Locks are `flock`s: they die with their process, so a killed process never leaves a stale lock.
  Writers hold `gc.lock` shared (`writing()`) from their first blob until their tag is written, so
  `prune` never deletes a blob that is published but not yet referenced.
- A killed process may leave files behind: the next writer removes those nobody can use (`writing()`:
  one-shot ingest files and partial downloads of blobs published since; `index.lock` holders: the temp
  files of an interrupted atomic write in the root), so `prune` is not needed to clean up after a kill.
- Nothing is held in memory in proportion to a blob: blobs are streamed through a 1 MiB buffer.
- One rule decides that an ingest file is stale (`ingest.is_stale`: nobody holds its flock), for
  writers, `prune` and `verify --all` alike.
- A resumable ingest file is named by the digest it must hash to and flock'ed by its one writer; a
  second writer of the same blob waits for the lock, then finds the blob published (or resumes the
  partial file). Nobody holds the lock of an abandoned download, so `prune` deletes it as stale.

The modules, one job each (docs/architecture.md draws how they fit):

    locks.py   flock, atomic writes and fsync: the one home for crash-safe file updates
    ingest.py  BlobWriter, ResumableWriter, and the one stale-ingest rule
    cas.py     BlobStore: blobs/ and ingest/, verified reads, publish, import, the gc lock
    index.py   IndexedStore: index.json, oci-layout, tags, resolving a name to a model
    gc.py      the referenced set, rm, prune, df, discarding what a failed command published
    store.py   LayoutStore: the whole store (the class every caller uses)
    sides.py   StoreSource and StoreTarget: the store as the two sides of a copy
"""

from .cas import DOCUMENT_LIMIT, BlobMissingError, BlobStore, BlobTooLargeError
from .gc import DiskUsage, PruneResult, RemovalResult
from .index import LAYOUT_VERSION, IndexEntry, ModelRecord, is_signature_entry
from .ingest import BlobWriter, ResumableWriter
from .store import LayoutStore

__all__ = [
    "BlobMissingError", "BlobStore", "BlobTooLargeError", "BlobWriter", "DOCUMENT_LIMIT", "DiskUsage", "IndexEntry",
    "LAYOUT_VERSION", "LayoutStore", "ModelRecord", "PruneResult", "RemovalResult", "ResumableWriter",
    "is_signature_entry",
]
