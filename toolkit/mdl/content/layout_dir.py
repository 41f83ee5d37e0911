"""OCI image layout directories and tars (image-spec v1.1 `image-layout.md`): `mdl save` and `mdl load`.

A saved layout holds one model and nothing else::

    <dir>/ or <file>.tar
      oci-layout            {"imageLayoutVersion": "1.0.0"}
      index.json            one manifest descriptor per tag, `org.opencontainers.image.ref.name` set to
                            the full normalized reference (`docker.io/ai/tiny:latest`)
      blobs/sha256/<hex>    the manifest, the config and every layer

Saving to a directory is a copy (`copy_model`) from the store into a `LayoutDir`; saving into an
existing directory adds to it when it is a layout and refuses anything else. A tar is streamed:
no temporary directory, entries sorted by name, every header field fixed (mtime 0, uid/gid 0, no
user names, mode 0644 or 0755), so the same model always gives the same bytes; each blob is hashed
as it is read from the store.

Loading a directory copies each model its index.json names into the store. Loading a tar reads it
once, in order, as a stream: each `blobs/sha256/<hex>` member is ingested into the store and verified
against the digest its name gives; `index.json` and `oci-layout` are read into memory (small). The
archive is never extracted: a member with an absolute path, `..`, a link, a non-regular entry under
`blobs/`, or a name under `blobs/` that is not `blobs/sha256/<64 hex>` is refused. Then every manifest
is checked against the project's schemas (its profile chosen by its config media type), and so is its
config, before any of them is stored and tagged. On any failure the blobs this load added are deleted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..errors import ConflictError, DigestMismatchError, MdlError, ReferenceFormatError, UsageError
from ..reference import parse_reference
from ..spec import mediatypes as mt
from ..spec import schemas
from .copy import COPY_BUFSIZE, StoreSource, StoreTarget, blob_kind, copy_model, open_blob_file
from .descriptor import INDEX_TYPES, MANIFEST_TYPES, Descriptor, Manifest, canonical_json, load_json_document
from .digest import ALGORITHM, digest_hex, sha256_bytes
from .layout import DOCUMENT_LIMIT, LAYOUT_VERSION, LayoutStore
from .transfer import EXISTS, SENT, BlobSource, NoProgress, Progress

_BLOB_NAME = re.compile(r"blobs/sha256/([0-9a-f]{64})")
TAR_SUFFIXES = (".tar",)


class LayoutError(MdlError):
    """An OCI layout (directory or tar) cannot be saved to or loaded from."""

    kind = "layout"


class UnsafeArchiveError(LayoutError):
    """A tar member mdl refuses to read: it could write outside the store, or is not a layout blob."""

    kind = "unsafe-archive"

    def __init__(self, archive: str | os.PathLike, member: str, problem: str):
        self.archive = os.fspath(archive)
        self.member = member
        self.problem = problem
        super().__init__(f"{self.archive}: member {member!r} is refused: {problem}",
                         "load only archives written by `mdl save`, `skopeo copy ... oci-archive:` or similar")


@dataclass
class SaveResult:
    digest: str
    output: str
    format: str  # "dir" or "tar"
    names: list[str]  # the ref.name annotations written (empty: the model has no tag)
    blobs: int  # blobs in the layout for this model, manifest included
    size: int  # their bytes


@dataclass
class LoadedModel:
    digest: str
    tags: list[str]  # normalized references it is tagged with now (empty: kept untagged)
    ignored_names: list[str] = field(default_factory=list)  # ref.names that are not references ("latest")


@dataclass
class LoadResult:
    source: str
    models: list[LoadedModel]
    added: list[str]  # blobs the store did not have before


def is_tar_path(path: str | os.PathLike) -> bool:
    return os.fspath(path).lower().endswith(TAR_SUFFIXES)


# ---------------------------------------------------------------------------------------------
# a layout directory as a source and a target


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
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise LayoutError(f"{self.root} is not an OCI image layout (no oci-layout file)",
                              "name a directory written by `mdl save` or `skopeo copy ... oci:DIR`") from None
        except (OSError, ValueError) as e:
            raise LayoutError(f"{path} cannot be read: {e}", "check the layout") from None
        version = doc.get("imageLayoutVersion") if isinstance(doc, dict) else None
        if version != LAYOUT_VERSION:
            raise LayoutError(f"{path}: unsupported imageLayoutVersion {version!r}",
                              f"mdl reads OCI layouts of version {LAYOUT_VERSION}")

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
            _atomic_write(self.root / "oci-layout", canonical_json({"imageLayoutVersion": LAYOUT_VERSION}))
        if not self._index.exists():
            _atomic_write(self._index, canonical_json(_empty_index()))

    def blob_path(self, digest: str) -> Path:
        return self._blobs / digest_hex(digest)

    def read_index(self) -> list[dict]:
        try:
            raw = self._index.read_bytes()
        except FileNotFoundError:
            raise LayoutError(f"{self.root} has no index.json", "the layout is incomplete") from None
        return _parse_index(raw, str(self._index))

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
            if _ref_name(d) in wanted or d["digest"] in wanted:
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
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(6)}.tmp")
        stream, start = source.open_blob(desc, 0)
        try:
            with open(tmp, "xb", buffering=0) as out:
                h = hashlib.sha256()
                size = _pump(stream, desc, lambda v: (h.update(v), out.write(v)), progress)
                actual = f"{ALGORITHM}:{h.hexdigest()}"
                if size != desc.size or actual != desc.digest:
                    raise DigestMismatchError("blob", desc.digest, actual, desc.size, size)
                os.fsync(out.fileno())
            os.replace(tmp, final)
        except BaseException:
            _unlink_quiet(tmp)
            raise
        finally:
            stream.close()
        return SENT

    def put_manifest(self, manifest: Manifest, tags: list[str]) -> None:
        for d in manifest.blob_descriptors():
            if not self.has_blob(d):
                raise LayoutError(f"{self.root}: blob {d.digest} is missing", "copy the blobs before the manifest")
        if not self.has_blob(manifest.descriptor()):
            _atomic_write(self.blob_path(manifest.digest), manifest.raw)
        entries = self._read_index_or_empty()
        base = manifest.descriptor().to_dict()
        for name in tags:
            entries = [d for d in entries if _ref_name(d) != name]
            entries.append({**base, "annotations": {mt.ANNOTATION_REF_NAME: name}})
        if not tags and not any(d["digest"] == manifest.digest for d in entries):
            entries.append(base)
        doc = _empty_index()
        doc["manifests"] = entries
        _atomic_write(self._index, canonical_json(doc))

    def _read_index_or_empty(self) -> list[dict]:
        return self.read_index() if self._index.exists() else []


# ---------------------------------------------------------------------------------------------
# save


def save_model(store: LayoutStore, reference: str, output: str | os.PathLike, *, force: bool = False,
               progress: Progress | None = None, concurrency: int = 4) -> SaveResult:
    """Write the model `reference` names (tag, ID or digest) as an OCI layout: a directory, or a tar
    when `output` ends in .tar. The index names it by every tag it has in the store."""
    progress = progress if progress is not None else NoProgress()
    digest = store.resolve(reference)
    manifest = store.manifest(digest)
    names = _names_for(store, reference, digest)
    out = Path(output)
    size = manifest.size + sum(d.size for d in _unique(manifest.blob_descriptors()))
    count = 1 + len(_unique(manifest.blob_descriptors()))
    signatures = _signatures_of(store, digest)  # they travel with the model (spec/signing.md)
    if is_tar_path(out):
        _save_tar(store, manifest, names, out, force=force, progress=progress, signatures=signatures)
        return SaveResult(digest, str(out), "tar", names, count, size)
    target = LayoutDir(out)
    target.create()
    copy_model(StoreSource(store), target, manifest, names, concurrency=concurrency, progress=progress)
    for sig, name in signatures:
        copy_model(StoreSource(store), target, sig, [name], concurrency=concurrency, progress=NoProgress())
    return SaveResult(digest, str(out), "dir", names, count, size)


def _signatures_of(store: LayoutStore, digest: str) -> list[tuple[Manifest, str]]:
    from ..sign import local_signature_names
    return [(store.manifest(d), name) for name, d in local_signature_names(store, digest)]


def _names_for(store: LayoutStore, reference: str, digest: str) -> list[str]:
    """Every tag of the model, the one `reference` names first (when it named a tag, not an ID)."""
    tags = store.tags_of(digest)
    try:
        given = str(parse_reference(reference))
    except ReferenceFormatError:
        given = None
    return sorted(tags, key=lambda t: t != given)


def _unique(descs: list[Descriptor]) -> list[Descriptor]:
    seen: dict[str, Descriptor] = {}
    for d in descs:
        seen.setdefault(d.digest, d)
    return list(seen.values())


def _tar_info(name: str, size: int = 0, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _CountingReader(io.RawIOBase):
    """Reports the bytes read through to `progress` (tarfile reads the blob through this)."""

    def __init__(self, f: BinaryIO, desc: Descriptor, progress: Progress):
        super().__init__()
        self._f, self._desc, self._progress = f, desc, progress

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._f.readinto(b) or 0
        if n:
            self._progress.advance(self._desc, n)
        return n


def _save_tar(store: LayoutStore, manifest: Manifest, names: list[str], out: Path, *, force: bool,
              progress: Progress, signatures: list[tuple[Manifest, str]] = ()) -> None:
    if out.is_dir():
        raise LayoutError(f"{out} is a directory", "name a file ending in .tar, or a directory without .tar")
    if out.exists() and not force:
        raise ConflictError(f"{out} exists", "use --force to overwrite it, or name another file")
    base = manifest.descriptor().to_dict()
    entries = [{**base, "annotations": {mt.ANNOTATION_REF_NAME: n}} for n in names] or [base]
    entries += [{**sig.descriptor().to_dict(), "annotations": {mt.ANNOTATION_REF_NAME: n}} for sig, n in signatures]
    index = canonical_json({**_empty_index(), "manifests": entries})
    layout = canonical_json({"imageLayoutVersion": LAYOUT_VERSION})
    blobs = sorted(_unique([*manifest.blob_descriptors(), manifest.descriptor(),
                            *(d for sig, _ in signatures for d in (*sig.blob_descriptors(), sig.descriptor()))]),
                   key=lambda d: d.digest)
    kinds = {manifest.digest: "manifest", manifest.config.digest: "config"}
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "xb") as f:
            with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT, copybufsize=COPY_BUFSIZE) as tar:
                tar.addfile(_tar_info("blobs", directory=True))
                tar.addfile(_tar_info(f"blobs/{ALGORITHM}", directory=True))
                for d in blobs:
                    what = kinds.get(d.digest, "layer")
                    progress.start(d, what)
                    with store.open_blob(d.digest, d.size, what=what) as r:  # verifies as it reads
                        tar.addfile(_tar_info(f"blobs/{ALGORITHM}/{digest_hex(d.digest)}", d.size),
                                    _CountingReader(r, d, progress))
                    progress.done(d, SENT)
                tar.addfile(_tar_info("index.json", len(index)), io.BytesIO(index))
                tar.addfile(_tar_info("oci-layout", len(layout)), io.BytesIO(layout))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        _unlink_quiet(tmp)
        raise


# ---------------------------------------------------------------------------------------------
# load


def load_layout(store: LayoutStore, path: str | os.PathLike, *, tag: str | None = None,
                progress: Progress | None = None, concurrency: int = 4) -> LoadResult:
    """Copy every model of an OCI layout (directory or tar) into the store, tagged by its ref.names.

    `tag` also tags the loaded model (the layout must hold exactly one): for layouts whose ref.name is
    not a reference (skopeo's plain `latest`). Nothing stays in the store when it fails.
    """
    progress = progress if progress is not None else NoProgress()
    path = Path(path)
    extra = parse_reference(tag) if tag else None
    if extra is not None and extra.digest is not None:
        raise UsageError(f"--tag {tag} names a digest", "give a name and tag, e.g. org/model:v1")
    if not path.exists():
        raise LayoutError(f"{path}: no such file or directory", "name an OCI layout directory or tar")
    target = StoreTarget(store)
    added: list[str] = []
    try:
        with store.writing():
            if path.is_dir():
                models = _load_dir(store, LayoutDir(path), target, progress, concurrency, extra)
            else:
                models = _load_tar(store, path, target, added, progress, extra)
    except BaseException:
        store.discard_unreferenced([*added, *target.added])
        raise
    return LoadResult(str(path), models, [*added, *target.added])


@dataclass
class _Plan:
    manifest: Manifest
    tags: list[str]
    ignored: list[str]
    signature: bool = False  # a cosign signature manifest that travels with its model (spec/signing.md)


def _plan(where: str, entries: list[dict], read, extra) -> list[_Plan]:
    """Each manifest of index.json checked against its schemas, with the tags its ref.names give.
    `read(desc, what)` returns a small blob's verified bytes."""
    plans: dict[str, _Plan] = {}
    for i, d in enumerate(entries):
        desc = Descriptor.from_dict(d, what=f"{where} index.json", path=f"$.manifests[{i}]")
        if desc.media_type in INDEX_TYPES:
            raise LayoutError(f"{where}: entry {i} of index.json is an image index ({desc.digest})",
                              "mdl loads model manifests; copy the model out of the index first")
        if desc.media_type not in MANIFEST_TYPES:
            raise LayoutError(f"{where}: entry {i} of index.json has media type {desc.media_type!r}, "
                              "not an image manifest", "the layout is not a model layout")
        if desc.digest not in plans:
            manifest = Manifest.parse(read(desc, "manifest"), desc.digest)
            from ..sign import is_signature_manifest
            signature = is_signature_manifest(manifest)
            if not signature:
                _check_model(where, manifest, read)
            plans[desc.digest] = _Plan(manifest, [], [], signature)
        plan = plans[desc.digest]
        name = _ref_name(d)
        if name is None:
            continue
        ref = _name_reference(name)
        if ref is None or ref.digest is not None or ref.tag is None:
            plan.ignored.append(name)
        elif str(ref) not in plan.tags:
            plan.tags.append(str(ref))
    models = [p for p in plans.values() if not p.signature]
    if not models:
        raise LayoutError(f"{where} holds no model (index.json lists no manifest)", "save a model into it first")
    if extra is not None:
        if len(models) != 1:
            raise UsageError(f"--tag names one model, but {where} holds {len(models)}",
                             "load without --tag, then tag the models with `mdl tag`")
        [plan] = models
        if str(extra) not in plan.tags:
            plan.tags.append(str(extra))
    return list(plans.values())


def _name_reference(name: str):
    """The reference a ref.name gives, or None. A bare word is an OCI layout's tag-only name (skopeo's
    `latest`), not a model name: `docker.io/ai/latest:latest` is surely not what was meant."""
    if not any(c in name for c in "/:@"):
        return None
    try:
        return parse_reference(name)
    except ReferenceFormatError:
        return None


def _check_model(where: str, manifest: Manifest, read) -> None:
    cmt = manifest.config.media_type
    mschema = schemas.manifest_schema_for(cmt)
    cschema = schemas.config_schema_for(cmt)
    if mschema is None or cschema is None:
        raise LayoutError(f"{where}: manifest {manifest.digest} has config media type {cmt!r}, "
                          "which is not a model config",
                          "mdl loads Docker model artifacts and CNCF ModelPack models")
    schemas.check(manifest.as_dict(), mschema, f"{where}: manifest {manifest.digest}")
    config = load_json_document(read(manifest.config, "config"), f"{where}: config {manifest.config.digest}")
    schemas.check(config, cschema, f"{where}: config {manifest.config.digest}")


class _HoldManifests:
    """A BlobTarget that passes blobs through and keeps manifests back until every model is copied."""

    def __init__(self, inner: StoreTarget):
        self.inner = inner
        self.held: list[tuple[Manifest, list[str]]] = []

    def has_blob(self, desc: Descriptor) -> bool:
        return self.inner.has_blob(desc)

    def put_blob(self, desc: Descriptor, source: BlobSource, progress: Progress) -> str:
        return self.inner.put_blob(desc, source, progress)

    def put_manifest(self, manifest: Manifest, tags: list[str]) -> None:
        self.held.append((manifest, tags))


def _load_dir(store: LayoutStore, src: LayoutDir, target: StoreTarget, progress: Progress, concurrency: int,
              extra) -> list[LoadedModel]:
    src.check_layout()
    plans = _plan(str(src.root), src.read_index(), src.read_blob, extra)
    hold = _HoldManifests(target)
    for p in plans:
        copy_model(src, hold, p.manifest, p.tags, concurrency=concurrency, progress=progress)
    return _commit(target, plans)


def _commit(target: StoreTarget, plans: list[_Plan]) -> list[LoadedModel]:
    for p in sorted(plans, key=lambda p: p.signature):  # models first, then their signatures
        target.put_manifest(p.manifest, p.tags)
    return [LoadedModel(p.manifest.digest, p.tags, p.ignored) for p in plans if not p.signature]


def _member_name(archive: Path, member: tarfile.TarInfo) -> str:
    name = member.name
    if name.startswith("/") or re.match(r"[A-Za-z]:[\\/]", name):
        raise UnsafeArchiveError(archive, name, "an absolute path")
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(archive, name, "a path with '..'")
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(archive, name, f"a link (to {member.linkname!r})")
    if not (member.isreg() or member.isdir()):
        raise UnsafeArchiveError(archive, name, "not a regular file or directory")
    return "/".join(parts)


def _load_tar(store: LayoutStore, path: Path, target: StoreTarget, added: list[str], progress: Progress,
              extra) -> list[LoadedModel]:
    small: dict[str, bytes] = {}
    present: dict[str, int] = {}
    try:
        tar = tarfile.open(path, mode="r|*", copybufsize=COPY_BUFSIZE)
    except (tarfile.TarError, OSError) as e:
        raise LayoutError(f"{path} is not a tar archive: {e}", "name an OCI layout directory or .tar file") from None
    with tar:
        try:
            for member in tar:
                name = _member_name(path, member)
                if name in ("index.json", "oci-layout"):
                    if not member.isreg():
                        raise UnsafeArchiveError(path, member.name, "not a regular file")
                    if name in small:
                        raise UnsafeArchiveError(path, member.name, "appears twice")
                    if member.size > DOCUMENT_LIMIT:
                        raise LayoutError(f"{path}: {name} is {member.size} bytes, over the {DOCUMENT_LIMIT}-byte "
                                          "limit", "the archive is not an OCI layout")
                    small[name] = tar.extractfile(member).read()  # type: ignore[union-attr]
                    continue
                if name == "blobs" or name.startswith("blobs/"):
                    if member.isdir() and name in ("blobs", f"blobs/{ALGORITHM}"):
                        continue
                    m = _BLOB_NAME.fullmatch(name)
                    if m is None:
                        raise UnsafeArchiveError(path, member.name, "not a blob name (blobs/sha256/<64 hex>)")
                    if not member.isreg():
                        raise UnsafeArchiveError(path, member.name, "not a regular file")
                    digest = f"{ALGORITHM}:{m.group(1)}"
                    if digest not in present:
                        _ingest_member(store, path, tar, member, digest, added, progress)
                        present[digest] = member.size
                # anything else (a README, other directories) is not read
        except tarfile.TarError as e:
            raise LayoutError(f"{path} is a damaged tar archive: {e}", "save or download it again") from None
    if "oci-layout" not in small:
        raise LayoutError(f"{path} is not an OCI image layout (no oci-layout member)",
                          "load an archive written by `mdl save` or `skopeo copy ... oci-archive:`")
    try:
        version = json.loads(small["oci-layout"]).get("imageLayoutVersion")
    except (ValueError, AttributeError):
        version = None
    if version != LAYOUT_VERSION:
        raise LayoutError(f"{path}: oci-layout has imageLayoutVersion {version!r}",
                          f"mdl reads OCI layouts of version {LAYOUT_VERSION}")
    if "index.json" not in small:
        raise LayoutError(f"{path} has no index.json", "the archive is incomplete")
    entries = _parse_index(small["index.json"], f"{path}: index.json")

    def read(desc: Descriptor, what: str) -> bytes:
        if present.get(desc.digest) != desc.size:
            raise LayoutError(f"{path}: {what} {desc.digest} is missing from the archive"
                              if desc.digest not in present else
                              f"{path}: {what} {desc.digest} is {present[desc.digest]} bytes, expected {desc.size}",
                              "the archive is incomplete or damaged")
        return store.read_blob(desc.digest, desc.size, what=what)

    plans = _plan(str(path), entries, read, extra)
    for p in plans:
        for d in p.manifest.layers:
            if present.get(d.digest) != d.size:
                read(d, "layer")  # raises: missing or the wrong size
    return _commit(target, plans)


def _ingest_member(store: LayoutStore, path: Path, tar: tarfile.TarFile, member: tarfile.TarInfo, digest: str,
                   added: list[str], progress: Progress) -> None:
    desc = Descriptor(mt.OCI_EMPTY, digest, member.size)  # what it is becomes known from index.json
    if store.blob_size(digest) == member.size:
        return  # the store has it; the tar stream skips the member's bytes
    f = tar.extractfile(member)
    assert f is not None
    progress.start(desc, "blob")
    try:
        with store.ingest(digest, member.size) as w:
            buf = bytearray(COPY_BUFSIZE)
            view = memoryview(buf)
            while n := f.readinto(buf):
                w.write(view[:n])
                progress.advance(desc, n)
            w.commit()
    except DigestMismatchError as e:
        raise DigestMismatchError(f"{path}: member {member.name}", digest, e.actual, e.expected_size,
                                  e.actual_size) from None
    added.append(digest)
    progress.done(desc, SENT)


# ---------------------------------------------------------------------------------------------
# helpers


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


def _empty_index() -> dict:
    return {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}


def _parse_index(raw: bytes, what: str) -> list[dict]:
    if len(raw) > DOCUMENT_LIMIT:
        raise LayoutError(f"{what} is {len(raw)} bytes, over the {DOCUMENT_LIMIT}-byte limit", "the layout is damaged")
    doc = load_json_document(raw, what)
    if not isinstance(doc, dict) or doc.get("schemaVersion") != 2 or not isinstance(doc.get("manifests"), list):
        raise LayoutError(f"{what} is not an OCI image index", "the layout is damaged")
    for i, d in enumerate(doc["manifests"]):
        Descriptor.from_dict(d, what=what, path=f"$.manifests[{i}]")
    return doc["manifests"]


def _ref_name(d: dict) -> str | None:
    return (d.get("annotations") or {}).get(mt.ANNOTATION_REF_NAME)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink_quiet(tmp)
        raise


def _unlink_quiet(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


__all__ = [
    "LayoutDir", "LayoutError", "LoadResult", "LoadedModel", "SaveResult", "UnsafeArchiveError", "is_tar_path",
    "load_layout", "save_model",
]
