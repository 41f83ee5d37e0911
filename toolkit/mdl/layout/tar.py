"""An OCI layout tar (`mdl save X.tar`, `mdl load X.tar`, skopeo's `oci-archive:`) as both sides of a copy.

`TarTarget` streams a tar: no temporary directory, every header field fixed (mtime 0, uid/gid 0, no
user names, mode 0644 or 0755), the blobs in the order the copy puts them (deterministic with one
transfer at a time), `index.json` and `oci-layout` last, so the same model always gives the same
bytes. Each blob is hashed as it is written; the tar appears under its name only when complete.

`TarSource` reads an archive without extracting it: one pass over the member headers when opened,
then each blob is read where it lies. A member with an absolute path, `..`, a link, a non-regular
entry under `blobs/`, or a name under `blobs/` that is not `blobs/sha256/<64 hex>` is refused before
any byte of the archive is used; `index.json` and `oci-layout` are read into memory (small).
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from pathlib import Path
from typing import BinaryIO

from ..content.copy import COPY_BUFSIZE
from ..content.descriptor import Descriptor, Index, Manifest, canonical_json
from ..content.digest import ALGORITHM, VerifyingReader, digest_hex
from ..content.transfer import EXISTS, SENT, BlobSource, Progress
from ..errors import ConflictError
from ..spec import mediatypes as mt
from ..store import DOCUMENT_LIMIT, LAYOUT_VERSION
from ..store.locks import temp_name, unlink_quiet
from .common import BLOB_NAME, LayoutError, UnsafeArchiveError, check_layout_version, parse_index


def _tar_info(name: str, size: int = 0, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _Advancing(io.RawIOBase):
    """Reports the bytes tarfile reads through it to `progress`."""

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


class TarTarget:
    """A BlobTarget writing an OCI layout tar at `path`, or into `stream` (a writable binary file
    object: an HTTP response, `GET /models/{name}/export`). Copy into it one blob at a time
    (`concurrency=1`), then `close()`; leaving a `with` block on an error leaves no file behind."""

    def __init__(self, path: str | os.PathLike | None, *, force: bool = False, stream: BinaryIO | None = None):
        self._tmp: Path | None = None
        if stream is not None:
            self.path, self._file = None, stream
        else:
            self.path = Path(path)  # type: ignore[arg-type]
            if self.path.is_dir():
                raise LayoutError(f"{self.path} is a directory",
                                  "name a file ending in .tar, or a directory without .tar")
            if self.path.exists() and not force:
                raise ConflictError(f"{self.path} exists", "use --force to overwrite it, or name another file")
            self._tmp = temp_name(self.path)
            self._file = open(self._tmp, "xb")
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.PAX_FORMAT, copybufsize=COPY_BUFSIZE)
        self._written: set[str] = set()
        self._entries: list[dict] = []
        self._tar.addfile(_tar_info("blobs", directory=True))
        self._tar.addfile(_tar_info(f"blobs/{ALGORITHM}", directory=True))

    def __repr__(self) -> str:
        return f"TarTarget({str(self.path or self._file)!r})"

    def __enter__(self) -> TarTarget:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:
            self.abort()

    def has_blob(self, desc: Descriptor) -> bool:
        return desc.digest in self._written

    def put_blob(self, desc: Descriptor, source: BlobSource, progress: Progress) -> str:
        if desc.digest in self._written:
            return EXISTS
        stream, _ = source.open_blob(desc, 0)
        with VerifyingReader(stream, desc.digest, desc.size) as verified:  # a wrong byte fails the save
            self._tar.addfile(_tar_info(f"blobs/{ALGORITHM}/{digest_hex(desc.digest)}", desc.size),
                              _Advancing(verified, desc, progress))
            verified.read(1)  # the EOF read: a blob longer than its descriptor is refused too
        self._written.add(desc.digest)
        return SENT

    def _put_bytes(self, desc: Descriptor, data: bytes) -> None:
        if desc.digest not in self._written:
            self._tar.addfile(_tar_info(f"blobs/{ALGORITHM}/{digest_hex(desc.digest)}", len(data)), io.BytesIO(data))
            self._written.add(desc.digest)

    def put_manifest(self, manifest: Manifest, tags: list[str]) -> None:
        self._put_bytes(manifest.descriptor(), manifest.raw)
        base = manifest.descriptor().to_dict()
        self._entries += [{**base, "annotations": {mt.ANNOTATION_REF_NAME: t}} for t in tags] or [base]

    def close(self) -> None:
        """Write index.json and oci-layout, and give the tar its name."""
        try:
            for name, data in (("index.json", Index.build(self._entries).raw),
                               ("oci-layout", canonical_json({"imageLayoutVersion": LAYOUT_VERSION}))):
                self._tar.addfile(_tar_info(name, len(data)), io.BytesIO(data))
            self._tar.close()
            self._file.flush()
            if self._tmp is None:
                return  # a stream: the caller's to close
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._tmp, self.path)  # type: ignore[arg-type]
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if self._tmp is not None:
            self._file.close()
            unlink_quiet(self._tmp)


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


class TarSource:
    """A ModelSource over an OCI layout tar (see the module docstring). Use as a context manager."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self._tar = tarfile.open(self.path, mode="r:*", copybufsize=COPY_BUFSIZE)
        except (tarfile.TarError, OSError) as e:
            raise LayoutError(f"{self.path} is not a tar archive: {e}", "name an OCI layout directory or .tar file") \
                from None
        try:
            self._blobs, small = self._scan()
            self.entries = self._check(small)
        except BaseException:
            self._tar.close()
            raise

    def __repr__(self) -> str:
        return f"TarSource({str(self.path)!r})"

    def __enter__(self) -> TarSource:
        return self

    def __exit__(self, *exc) -> None:
        self._tar.close()

    def _scan(self) -> tuple[dict[str, tarfile.TarInfo], dict[str, bytes]]:
        blobs: dict[str, tarfile.TarInfo] = {}
        small: dict[str, bytes] = {}
        try:
            for member in self._tar:
                name = _member_name(self.path, member)
                if name in ("index.json", "oci-layout"):
                    if not member.isreg():
                        raise UnsafeArchiveError(self.path, member.name, "not a regular file")
                    if name in small:
                        raise UnsafeArchiveError(self.path, member.name, "appears twice")
                    if member.size > DOCUMENT_LIMIT:
                        raise LayoutError(f"{self.path}: {name} is {member.size} bytes, over the {DOCUMENT_LIMIT}-byte "
                                          "limit", "the archive is not an OCI layout")
                    small[name] = self._tar.extractfile(member).read()  # type: ignore[union-attr]
                elif name == "blobs" or name.startswith("blobs/"):
                    if member.isdir() and name in ("blobs", f"blobs/{ALGORITHM}"):
                        continue
                    m = BLOB_NAME.fullmatch(name)
                    if m is None:
                        raise UnsafeArchiveError(self.path, member.name, "not a blob name (blobs/sha256/<64 hex>)")
                    if not member.isreg():
                        raise UnsafeArchiveError(self.path, member.name, "not a regular file")
                    blobs.setdefault(f"{ALGORITHM}:{m.group(1)}", member)
                # anything else (a README, other directories) is not read
        except tarfile.TarError as e:
            raise LayoutError(f"{self.path} is a damaged tar archive: {e}", "save or download it again") from None
        return blobs, small

    def _check(self, small: dict[str, bytes]) -> list[dict]:
        if "oci-layout" not in small:
            raise LayoutError(f"{self.path} is not an OCI image layout (no oci-layout member)",
                              "load an archive written by `mdl save` or `skopeo copy ... oci-archive:`")
        check_layout_version(small["oci-layout"], str(self.path), "oci-layout has imageLayoutVersion")
        if "index.json" not in small:
            raise LayoutError(f"{self.path} has no index.json", "the archive is incomplete")
        return parse_index(small["index.json"], f"{self.path}: index.json")

    def describe(self, digest: str) -> str:
        """Where a blob lies, for errors: the archive and the member."""
        return f"{self.path}: member blobs/{ALGORITHM}/{digest_hex(digest)}"

    def _member(self, desc: Descriptor, what: str) -> tarfile.TarInfo:
        member = self._blobs.get(desc.digest)
        if member is None or member.size != desc.size:
            raise LayoutError(f"{self.path}: {what} {desc.digest} is missing from the archive" if member is None else
                              f"{self.path}: {what} {desc.digest} is {member.size} bytes, expected {desc.size}",
                              "the archive is incomplete or damaged")
        return member

    def read_blob(self, desc: Descriptor, what: str = "blob") -> bytes:
        """A small blob (a manifest or config) read whole and checked against `desc`."""
        if desc.size > DOCUMENT_LIMIT:
            raise LayoutError(f"{self.path}: {what} {desc.digest} is {desc.size} bytes, "
                              f"over the {DOCUMENT_LIMIT}-byte limit for a document", "the archive is damaged")
        f = self._tar.extractfile(self._member(desc, what))
        assert f is not None
        with VerifyingReader(f, desc.digest, desc.size, self.describe(desc.digest)) as r:
            return r.read()

    def fetch_manifest(self, reference: str) -> Manifest:
        raise LayoutError(f"{self.path}: manifests are read through its index.json", "load the archive whole")

    def open_blob(self, desc: Descriptor, offset: int = 0) -> tuple[BinaryIO, int]:
        f = self._tar.extractfile(self._member(desc, "layer"))
        assert f is not None
        start = offset if 0 < offset <= desc.size else 0
        if start:
            f.seek(start)
        return f, start  # type: ignore[return-value]
