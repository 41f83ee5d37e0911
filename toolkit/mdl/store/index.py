"""The store's `index.json` and the layout around it: tags, model records, resolving a name to a model.

`index.json` entries are manifest descriptors. A tagged model has one entry per tag, the tag in the
`org.opencontainers.image.ref.name` annotation as a normalized reference (`docker.io/ai/tiny:latest`,
so `skopeo inspect oci:<root>:docker.io/ai/tiny:latest` finds it). A model kept without a tag (pulled
by digest, or whose tag moved elsewhere, as Docker keeps a dangling image) has one entry without the
annotation. An entry may also be an image index (signatures); its manifests count as referenced.

index.json is rewritten atomically under `index.lock` (`update_index`), so concurrent taggers never
lose an update and readers need no lock.
"""

from __future__ import annotations

import fcntl
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..content.descriptor import MANIFEST_TYPES, Index, Manifest, canonical_json, parse_node
from ..content.digest import ALGORITHM, digest_hex, validate_digest
from ..errors import (AmbiguousReferenceError, DigestMismatchError, DiskFullError, MdlError, ModelNotFoundError,
                      ReferenceFormatError, SchemaViolationError, StoreError)
from ..reference import Reference, model_id_query, parse_reference
from ..spec import mediatypes as mt
from .cas import BlobMissingError, BlobStore
from .locks import atomic_write, flock, is_disk_full, remove_temp_files

LAYOUT_VERSION = "1.0.0"
# On the index entries of a model stored partially (`mdl pull --include`): some of its layers are
# absent on purpose. Every entry of such a model carries it; a full pull of the model removes it.
PARTIAL_ANNOTATION = "dev.mdl.partial"
_SIG_TAG = re.compile(r":sha256-[0-9a-f]{64}\.sig$")


@dataclass(frozen=True)
class IndexEntry:
    digest: str
    size: int
    media_type: str
    ref_name: str | None
    annotations: dict[str, str] | None = field(default=None, hash=False)


@dataclass(frozen=True)
class ModelRecord:
    digest: str
    tags: list[str] = field(hash=False)
    size: int  # manifest + config + layers, in bytes
    partial: bool = False  # some layers were left out on purpose (PARTIAL_ANNOTATION)

    @property
    def short_id(self) -> str:
        return digest_hex(self.digest)[:12]


class IndexedStore(BlobStore):
    """Blobs plus the index that names models: `index.json`, `oci-layout`, tags and resolution."""

    def __init__(self, root):
        super().__init__(root)
        self.index_path = self.root / "index.json"
        self.index_lock = self.root / "index.lock"

    def ensure_layout(self) -> None:
        if (self.root / "oci-layout").is_file() and self.index_path.is_file() and self.ingest_dir.is_dir() \
                and self.blobs_dir.is_dir():
            self._check_layout_version()
            return
        super().ensure_layout()
        try:
            # Both files are written under the index lock, so every temp file in the root belongs to
            # a holder of that lock: one found while holding it was left by a killed process.
            with flock(self.index_lock, fcntl.LOCK_EX):
                self._remove_temp_files()
                if not (self.root / "oci-layout").exists():
                    atomic_write(self.root / "oci-layout", canonical_json({"imageLayoutVersion": LAYOUT_VERSION}))
                else:
                    self._check_layout_version()
                if not self.index_path.exists():
                    atomic_write(self.index_path, Index.build([]).raw)
        except OSError as e:
            if is_disk_full(e):
                raise DiskFullError(self.root) from None
            raise StoreError(f"cannot create the local store at {self.root}: {e.strerror}",
                             "check the permissions, or set MDL_HOME to a writable directory") from None

    def _remove_temp_files(self) -> None:
        """The temp files of a killed writer of index.json or oci-layout (call holding the index lock)."""
        for name in ("index.json", "oci-layout"):
            remove_temp_files(self.root, name)

    def _check_layout_version(self) -> None:
        path = self.root / "oci-layout"
        try:
            doc = json.loads(path.read_bytes())
            version = doc.get("imageLayoutVersion") if isinstance(doc, dict) else None
        except (OSError, ValueError):
            version = None
        if version != LAYOUT_VERSION:
            raise StoreError(f"{path} is not an OCI image layout version {LAYOUT_VERSION} (found {version!r})",
                             "point MDL_HOME at an mdl store, or move this directory away")

    def put_manifest(self, manifest: Manifest, *, partial: bool = False) -> None:
        """Store the manifest's bytes; its config and every layer must be in the store already, unless
        `partial` (then tag it with `partial=True`). A complete model loses its partial mark here."""
        for d in manifest.blob_descriptors():
            size = self.blob_size(d.digest)
            if size is None:
                if partial and d.digest != manifest.config.digest:
                    continue
                raise StoreError(f"manifest {manifest.digest} refers to blob {d.digest}, which is not in the store",
                                 "store the config and every layer before the manifest")
            if size != d.size:
                raise DigestMismatchError("blob", d.digest, "(not hashed)", d.size, size)
        self.write_blob(manifest.raw, manifest.digest)
        if not partial and self.is_partial(manifest.digest):  # complete now: every entry loses the mark
            def complete(entries: list[dict]) -> None:
                for d in entries:
                    if d["digest"] == manifest.digest:
                        _mark_partial(d, False)

            self.update_index(complete)

    def is_partial(self, digest: str) -> bool:
        """Whether the model `digest` is stored partially (`mdl pull --include`)."""
        return any(d["digest"] == digest and _is_partial(d) for d in self.read_index())

    def manifest(self, digest: str) -> Manifest:
        validate_digest(digest)
        raw = self.read_blob(digest, what="manifest")
        return Manifest.parse(raw, digest)


    def read_index(self) -> list[dict]:
        """index.json's entries (descriptor objects); an absent file is an empty store."""
        try:
            raw = self.index_path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise StoreError(f"cannot read {self.index_path}: {e.strerror}", "check the store's permissions") from None
        try:
            return Index.parse(raw, what=str(self.index_path)).entries
        except SchemaViolationError as e:
            path, msg = e.findings[0]
            problem = f"is {msg}" if path == "$" else f"has a bad entry at {path}: {msg}"
            raise StoreError(f"{self.index_path} {problem}",
                             f"the store's index is damaged; move {self.root} away and pull or package the models "
                             "again (its blobs/ can be kept)") from None

    def update_index(self, change: Callable[[list[dict]], Any]) -> Any:
        """Read-modify-write index.json under the exclusive index lock; `change` edits the entry list in
        place and returns a value; the file is rewritten only when the list changed."""
        self.ensure_layout()
        with flock(self.index_lock, fcntl.LOCK_EX):
            self._remove_temp_files()  # a killed writer's; the next one cleans up after it
            entries = self.read_index()
            before = json.dumps(entries)
            result = change(entries)
            if json.dumps(entries) != before:
                try:
                    atomic_write(self.index_path, Index.build(entries).raw)
                except OSError as e:
                    if is_disk_full(e):
                        raise DiskFullError(self.root) from None
                    raise StoreError(f"cannot write {self.index_path}: {e.strerror}",
                                     "check the store's permissions") from None
            return result

    def entries(self) -> list[IndexEntry]:
        return [_entry(d) for d in self.read_index()]

    def models(self) -> list[ModelRecord]:
        order: list[str] = []
        tags: dict[str, list[str]] = {}
        partial: set[str] = set()
        for d in self.read_index():
            e = _entry(d)
            if e.media_type not in MANIFEST_TYPES or is_signature_entry(d):
                continue  # signature manifests (spec/signing.md) travel with models but are not models
            if _is_partial(d):
                partial.add(e.digest)
            if e.digest not in tags:
                order.append(e.digest)
                tags[e.digest] = []
            if e.ref_name is not None:
                tags[e.digest].append(e.ref_name)
        out = []
        for digest in order:
            m = self.manifest(digest)
            out.append(ModelRecord(digest, tags[digest], m.size + sum(d.size for d in m.blob_descriptors()),
                                   digest in partial))
        return out

    def tags_of(self, digest: str) -> list[str]:
        validate_digest(digest)
        return [e.ref_name for e in self.entries() if e.digest == digest and e.ref_name is not None]

    def _entry_for(self, digest: str) -> dict:
        """The index entry (descriptor) for a stored manifest or index blob."""
        node = parse_node(self.read_blob(digest, what="manifest"), digest)
        if isinstance(node, Index):
            return {"mediaType": node.media_type or mt.OCI_INDEX, "digest": digest, "size": node.size}
        return node.descriptor().to_dict()

    def add_tag(self, digest: str, ref: Reference, *, partial: bool = False) -> str | None:
        """Point `ref` at the stored manifest `digest`, moving it if it pointed elsewhere; returns the
        digest it pointed at before, if any. A model that loses its last tag this way is kept untagged.
        The entry is marked partial when `partial` or when the model's other entries are."""
        validate_digest(digest)
        if ref.digest is not None and (ref.tag is None or ref.digest != digest):
            raise ReferenceFormatError(str(ref), "only a tag can be stored; this reference names a digest")
        name = str(Reference(ref.registry, ref.repository, ref.tag, None))
        if not self.has_blob(digest):
            raise BlobMissingError(digest, "manifest")
        new = self._entry_for(digest)
        new["annotations"] = {mt.ANNOTATION_REF_NAME: name}

        def change(entries: list[dict]) -> str | None:
            _mark_partial(new, partial or any(d["digest"] == digest and _is_partial(d) for d in entries))
            previous = None
            moved = None
            for i, d in enumerate(entries):
                if ref_name(d) == name:
                    previous = d["digest"]
                    if previous == digest:
                        return previous
                    moved = entries.pop(i)
                    break
            # the model is tagged now: drop its untagged entry
            entries[:] = [d for d in entries if not (d["digest"] == digest and ref_name(d) is None)]
            entries.append(new)
            if moved is not None and not any(d["digest"] == previous for d in entries):
                # Docker keeps a model whose tag moved away, untagged (a dangling model)
                untagged = {k: v for k, v in moved.items() if k != "annotations"}
                rest = {k: v for k, v in (moved.get("annotations") or {}).items() if k != mt.ANNOTATION_REF_NAME}
                if rest:
                    untagged["annotations"] = rest
                entries.append(untagged)
            return previous

        with self.gc_shared():
            return self.update_index(change)

    def add_untagged(self, digest: str, *, partial: bool = False) -> None:
        """Keep a stored manifest as a model with no tag (e.g. after a pull by digest)."""
        validate_digest(digest)
        if not self.has_blob(digest):
            raise BlobMissingError(digest, "manifest")
        new = self._entry_for(digest)

        def change(entries: list[dict]) -> None:
            if not any(d["digest"] == digest for d in entries):
                entries.append(_mark_partial(new, partial))

        with self.gc_shared():
            self.update_index(change)

    def match_id(self, text: str, digests: list[str]) -> str | None:
        query = model_id_query(text)
        if query is None:
            return None
        if query.startswith(ALGORITHM + ":"):
            return query if query in digests else None
        matches = sorted({d for d in digests if digest_hex(d).startswith(query)})
        if len(matches) > 1:
            raise AmbiguousReferenceError(text, matches)
        return matches[0] if matches else None

    def resolve(self, text: str) -> str:
        """The manifest digest `text` names: a model ID (full or a unique prefix of 12+ hex), a digest
        reference to a stored manifest, or a tag in the index."""
        entries = self.entries()
        digests = [e.digest for e in entries if e.media_type in MANIFEST_TYPES]
        found = self.match_id(text, digests)
        if found is not None:
            return found
        ref = lookup_reference(text)
        if ref.digest is not None:
            if ref.digest in digests or self._is_manifest(ref.digest):
                return ref.digest
            raise ModelNotFoundError(text)
        name = str(ref)
        for e in entries:
            if e.ref_name == name:
                return e.digest
        raise ModelNotFoundError(text)

    def _is_manifest(self, digest: str) -> bool:
        if not self.has_blob(digest):
            return False
        try:
            self.manifest(digest)
        except MdlError:
            return False
        return True


def lookup_reference(text: str) -> Reference:
    """`text` parsed as a reference; an ID-like string that matched no model is 'not found', not 'invalid'."""
    try:
        return parse_reference(text)
    except ReferenceFormatError:
        if model_id_query(text) is not None:
            raise ModelNotFoundError(text) from None
        raise


def ref_name(d: dict) -> str | None:
    """The tag an index entry carries (its `org.opencontainers.image.ref.name`), if any."""
    return (d.get("annotations") or {}).get(mt.ANNOTATION_REF_NAME)


def is_signature_entry(d: dict | IndexEntry) -> bool:
    """An index entry (raw or IndexEntry) of a cosign signature manifest stored beside its model
    (`<repo>:sha256-<hex>.sig`, spec/signing.md): not a model."""
    if isinstance(d, IndexEntry):
        return bool(_SIG_TAG.search(d.ref_name or ""))
    return (d.get("artifactType") in (mt.COSIGN_SIGNATURE_ARTIFACT_TYPE, mt.SIGSTORE_BUNDLE)
            or bool(_SIG_TAG.search(ref_name(d) or "")))


def _is_partial(d: dict) -> bool:
    return (d.get("annotations") or {}).get(PARTIAL_ANNOTATION) == "true"


def _mark_partial(d: dict, partial: bool) -> dict:
    """Set or clear the partial mark of an index entry, in place."""
    annotations = {k: v for k, v in (d.get("annotations") or {}).items() if k != PARTIAL_ANNOTATION}
    if partial:
        annotations[PARTIAL_ANNOTATION] = "true"
    if annotations:
        d["annotations"] = annotations
    else:
        d.pop("annotations", None)
    return d


def _entry(d: dict) -> IndexEntry:
    ann = d.get("annotations") or None
    return IndexEntry(d["digest"], d["size"], d["mediaType"], ref_name(d), dict(ann) if ann else None)
