"""One repository on a registry as a copy source and target (`content/transfer.py`).

Endpoints (OCI distribution-spec v1.1, "Endpoints"): manifests `/v2/<name>/manifests/<reference>`,
blobs `/v2/<name>/blobs/<digest>`, uploads `/v2/<name>/blobs/uploads/`, tags `/v2/<name>/tags/list`.

Pushing a blob (`put_blob`): HEAD (EXISTS), else a cross-repository mount from `mount_from`
(MOUNTED, "Mounting a blob from another repository"), else an upload:

- monolithic (default): POST opens a session, ONE streamed PATCH sends the source through a reused
  buffer while hashing and counting ("Pushing a blob in chunks" with a single chunk of unknown
  length), then `PUT <location>?digest=` with an empty body publishes it. If the bytes sent do not
  match the descriptor the session is DELETEd before anything is published: DigestMismatchError.
- chunked (`chunk_size` set; the registry's `OCI-Chunk-Min-Length` raises it): sequential PATCHes
  with `Content-Range`, following each new `Location`. After a failed PATCH the session is asked its
  offset (GET -> `Range: 0-<last>`); the chunk in hand is resent from there. If the session lost
  more than that chunk, or is gone, the blob restarts cleanly in a new session (bounded attempts).

Pulling (`open_blob`) returns the response stream itself (`blobstream.py`: no decoding, `readinto` straight
from the socket) and the offset it starts at: `offset` only for a 206 whose Content-Range starts there.
Nothing here verifies pulled blob bytes: the target store hashes what it writes.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
from typing import Any, BinaryIO

import requests
import urllib3

from ..content.descriptor import MAX_MANIFEST_SIZE, Descriptor, Manifest
from ..content.readahead import read_ahead, readinto
from ..content.transfer import EXISTS, MOUNTED, SENT, BlobSource, NoProgress, Progress
from ..errors import DigestMismatchError, MdlError, ReferenceFormatError
from ..reference import NAME_MAX
from ..retry import is_transient
from ..spec import mediatypes as mt
from .blobstream import BlobStream
from .client import RegistryClient, add_query
from .errors import (
    ManifestTooLargeError,
    PermissionDeniedError,
    RegistryError,
    RegistryUnreachableError,
    RemoteNotFoundError,
    upload_may_retry,
)

_NAME = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UPLOAD_RANGE = re.compile(r"(?:bytes=)?0-(\d+)")
OCTET_STREAM = "application/octet-stream"
DEFAULT_BUFFER = 1 << 20  # read size of uploads; three are in flight (content/readahead.py)
MAX_TAG_PAGES = 10_000
_MANIFEST_READ_ATTEMPTS = 3  # GETs of a manifest whose body was cut short


class _BodyCut(Exception):
    """A manifest body lost mid-read (the GET is worth repeating); carries the error to raise."""

    def __init__(self, error: RegistryUnreachableError):
        super().__init__(str(error))
        self.error = error


class _Restart(Exception):
    """The upload session cannot continue; start the blob again in a new session."""

    transient = True


class _SourceFailed(Exception):
    """Reading the blob's source failed; a new session reads it again unless `error` is final."""

    transient = True

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


def _retryable(e: BaseException) -> bool:
    """Whether an upload goes on (resumed or in a new session) after `e`: the shared transient rule, plus
    the registry answers only an upload retries (`upload_may_retry`)."""
    return is_transient(e, also=upload_may_retry)


def _what(desc: Descriptor) -> str:
    if desc.media_type in mt.MANIFEST_ACCEPT:
        return "manifest"
    if desc.media_type in mt.MODEL_CONFIGS or desc.media_type == mt.OCI_EMPTY:
        return "config"
    return "layer"


class _Reporter:
    """Progress that never counts a byte twice when an upload restarts."""

    def __init__(self, desc: Descriptor, progress: Progress):
        self.desc, self.progress, self.reported = desc, progress, 0

    def at(self, position: int) -> None:
        if position > self.reported:
            self.progress.advance(self.desc, position - self.reported)
            self.reported = position


class _Hasher:
    def __init__(self) -> None:
        self.h = hashlib.sha256()
        self.count = 0  # bytes hashed
        self.sent = 0  # bytes handed to the connection (streamed uploads)

    def update(self, data: Any) -> None:
        self.h.update(data)
        self.count += len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self.h.hexdigest()


def _close(stream: Any) -> None:
    try:
        stream.close()
    except Exception:  # noqa: BLE001 - closing a source after a failure is best effort
        pass


class RemoteRepository:
    """`ModelSource` and `BlobTarget` for `<registry>/<repository>`.

    Settable attributes: `mount_from` (repositories on the same registry to try mounting blobs from),
    `chunk_size` (None: one streamed PATCH; else chunked upload), `buffer_size` (read size of the
    streamed upload), `max_upload_attempts` (sessions per blob), `max_resumes` (PATCH recoveries per session).
    """

    def __init__(self, client: RegistryClient, repository: str):
        if not _NAME.fullmatch(repository or ""):
            raise ReferenceFormatError(repository, "invalid repository name: lowercase components [a-z0-9] "
                                                   "separated by '.', '_', '__', '-' and '/'")
        if len(f"{client.registry}/{repository}") > NAME_MAX:
            raise ReferenceFormatError(repository, f"the name is over the limit of {NAME_MAX} characters "
                                                   "(registry and repository together)")
        self.client = client
        self.repository = repository
        self.mount_from: list[str] = []
        self.chunk_size: int | None = None
        self.buffer_size = DEFAULT_BUFFER
        self.max_upload_attempts = 3
        self.max_resumes = 5
        self._pull = f"repository:{repository}:pull"
        self._push = f"repository:{repository}:pull,push"

    @property
    def name(self) -> str:
        return f"{self.client.registry}/{self.repository}"

    def __repr__(self) -> str:
        return f"RemoteRepository({self.name})"

    def _ref(self, reference: str) -> str:
        sep = "@" if _DIGEST.fullmatch(reference) else ":"
        return f"{self.name}{sep}{reference}"

    def _path(self, kind: str, ref: str = "") -> str:
        return f"/v2/{self.repository}/{kind}/{ref}"

    # -- manifests -----------------------------------------------------------------------------------

    def resolve(self, reference: str) -> Descriptor:
        """The descriptor of the manifest `reference` (tag or digest) names, from a HEAD."""
        resp = self.client.request("HEAD", self._path("manifests", reference), scope=self._pull,
                                   headers={"Accept": ", ".join(mt.MANIFEST_ACCEPT)},
                                   what=f"resolving {self._ref(reference)}", not_found=self._ref(reference))
        resp.close()
        digest = resp.headers.get("Docker-Content-Digest")
        length = resp.headers.get("Content-Length")
        media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        if digest is None or length is None or not length.isdigit() or not media_type:
            raw, media_type, digest = self.fetch_manifest_bytes(reference)
            return Descriptor(media_type, digest, len(raw))
        if _DIGEST.fullmatch(reference) and digest != reference:
            raise DigestMismatchError(f"manifest {self._ref(reference)}:", reference, digest)
        return Descriptor(media_type, digest, int(length))

    def fetch_manifest_bytes(self, reference: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of the manifest or index `reference` names, size-capped and
        verified against the digest asked for, else against `Docker-Content-Digest`."""
        ref = self._ref(reference)
        for attempt in range(_MANIFEST_READ_ATTEMPTS):
            try:
                resp, chunks = self._read_manifest(reference, ref)
                break
            except _BodyCut as cut:
                if attempt + 1 >= _MANIFEST_READ_ATTEMPTS:
                    raise cut.error from cut.error.__cause__
        raw = b"".join(chunks)
        actual = "sha256:" + hashlib.sha256(raw).hexdigest()
        expected = reference if _DIGEST.fullmatch(reference) else resp.headers.get("Docker-Content-Digest")
        # Without a digest in the reference or the header, the bytes are only as trustworthy as the
        # connection: their own hash is all there is to name them by.
        if expected is not None and actual != expected:
            raise DigestMismatchError(f"manifest {ref}:", expected, actual)
        media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        if not media_type or media_type not in mt.MANIFEST_ACCEPT:
            try:
                declared = json.loads(raw).get("mediaType")
            except (ValueError, AttributeError):
                declared = None
            media_type = declared if isinstance(declared, str) and declared else (media_type or mt.OCI_MANIFEST)
        return raw, media_type, actual

    def _read_manifest(self, reference: str, ref: str) -> tuple[requests.Response, list[bytes]]:
        resp = self.client.request("GET", self._path("manifests", reference), scope=self._pull,
                                   headers={"Accept": ", ".join(mt.MANIFEST_ACCEPT)}, stream=True,
                                   what=f"fetching manifest {ref}", not_found=ref)
        chunks: list[bytes] = []
        try:
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > MAX_MANIFEST_SIZE:
                raise ManifestTooLargeError(ref, int(length), MAX_MANIFEST_SIZE)
            chunks, total = [], 0
            while total <= MAX_MANIFEST_SIZE:
                chunk = resp.raw.read(min(1 << 20, MAX_MANIFEST_SIZE + 1 - total), decode_content=True)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
            if total > MAX_MANIFEST_SIZE:
                raise ManifestTooLargeError(ref, None, MAX_MANIFEST_SIZE)
        except (OSError, requests.exceptions.RequestException, urllib3.exceptions.HTTPError,
                http.client.HTTPException) as e:
            # a body cut short (urllib3's ProtocolError is none of the first two): the GET is retried
            error = RegistryUnreachableError(self.client.registry, f"connection lost while reading manifest {ref}")
            error.__cause__ = e
            raise _BodyCut(error) from e
        finally:
            resp.close()
        return resp, chunks

    def fetch_manifest(self, reference: str) -> Manifest:
        raw, _media_type, digest = self.fetch_manifest_bytes(reference)
        return Manifest.parse(raw, digest)

    def put_manifest_bytes(self, raw: bytes, media_type: str, digest: str, tags: list[str]) -> None:
        """PUT manifest or index bytes under each tag, or under its digest when `tags` is empty."""
        for ref in tags or [digest]:
            resp = self.client.request("PUT", self._path("manifests", ref), scope=self._push,
                                       headers={"Content-Type": media_type}, data=bytes(raw),
                                       expected_status=(201,), what=f"manifest {self._ref(ref)}")
            returned = resp.headers.get("Docker-Content-Digest")
            resp.close()
            if returned is not None and returned != digest:
                raise DigestMismatchError(f"manifest {self._ref(ref)} as stored by the registry:", digest, returned)

    def put_manifest(self, manifest: Manifest, tags: list[str]) -> None:
        self.put_manifest_bytes(manifest.raw, manifest.media_type or mt.OCI_MANIFEST, manifest.digest, tags)

    def delete_manifest(self, digest: str) -> None:
        self.client.request("DELETE", self._path("manifests", digest), scope=f"repository:{self.repository}:delete",
                            expected_status=(200, 202), what=f"deleting {self._ref(digest)}",
                            not_found=self._ref(digest)).close()

    def tags(self, page_size: int | None = None) -> list[str]:
        """Every tag, following `Link: <...>; rel="next"` pagination (unsorted, as the registry sends them).
        `page_size` asks for `n` per page (distribution 2.8.2 ignores it and sends one page)."""
        out: list[str] = []
        url: str | None = self._path("tags", "list") + (f"?n={page_size}" if page_size else "")
        for _ in range(MAX_TAG_PAGES):
            if url is None:
                return out
            resp = self.client.request("GET", url, scope=self._pull, what=f"listing tags of {self.name}",
                                       not_found=self.name)
            try:
                doc = resp.json()
                page = doc.get("tags") or []
            except (ValueError, AttributeError):
                raise RegistryError(self.client.registry, f"listing tags of {self.name}", resp.status_code, None,
                                    "the tag list is not JSON") from None
            out += [t for t in page if isinstance(t, str)]
            url = _next_link(resp.headers.get("Link"))
            if url is not None:
                url = requests.compat.urljoin(resp.url, url)
        return out

    # -- blobs ---------------------------------------------------------------------------------------

    def has_blob(self, desc: Descriptor) -> bool:
        size = self.blob_size(desc.digest)
        return size is not None and size in (desc.size, -1)

    def blob_size(self, digest: str) -> int | None:
        """The size a HEAD of the blob reports: None when absent, -1 when present without a Content-Length."""
        resp = self.client.request("HEAD", self._path("blobs", digest), scope=self._pull,
                                   expected_status=(200, 404), what=f"checking blob {digest} in {self.name}")
        resp.close()
        if resp.status_code == 404:
            return None
        length = resp.headers.get("Content-Length")
        return int(length) if length and length.isdigit() else -1

    def mount_blob(self, desc: Descriptor, from_repository: str) -> bool:
        """Ask the registry to link `desc` from `from_repository`; False when it opened an upload instead."""
        resp = self.client.request(
            "POST", self._path("blobs", "uploads/"), params={"mount": desc.digest, "from": from_repository},
            scope=(self._push, f"repository:{from_repository}:pull"), expected_status=(201, 202),
            headers={"Content-Length": "0"}, data=b"",
            what=f"mounting blob {desc.digest} into {self.name}")
        resp.close()
        if resp.status_code == 201:
            return True
        location = resp.headers.get("Location")
        if location:
            self._cancel(location)
        return False

    def delete_blob(self, digest: str) -> None:
        self.client.request("DELETE", self._path("blobs", digest), scope=f"repository:{self.repository}:delete",
                            expected_status=(202, 200), what=f"deleting blob {digest} from {self.name}",
                            not_found=f"blob {digest} in {self.name}").close()

    def open_blob(self, desc: Descriptor, offset: int = 0) -> tuple[BinaryIO, int]:
        what = f"blob {desc.digest} in {self.name}"
        headers = {"Accept-Encoding": "identity"}
        if offset > 0:
            headers["Range"] = f"bytes={offset}-"
        resp = self.client.request("GET", self._path("blobs", desc.digest), scope=self._pull, headers=headers,
                                   stream=True, expected_status=(200, 206, 416), what=f"fetching {what}",
                                   not_found=what)
        if offset > 0:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range") or "")
            if resp.status_code == 206 and m and int(m.group(1)) == offset:
                return BlobStream(resp, self.client.registry, what), offset
            if resp.status_code != 200:  # 416, or a range we did not ask for: start over
                resp.close()
                return self.open_blob(desc, 0)
            return BlobStream(resp, self.client.registry, what), 0
        if resp.status_code != 200:
            raise self.client.error_for(resp, f"fetching {what}", what)
        return BlobStream(resp, self.client.registry, what), 0

    def put_blob(self, desc: Descriptor, source: BlobSource, progress: Progress | None = None) -> str:
        progress = progress or NoProgress()
        progress.start(desc, _what(desc))
        if self.has_blob(desc):
            progress.done(desc, EXISTS)
            return EXISTS
        for repo in self.mount_from:
            try:
                mounted = repo != self.repository and self.mount_blob(desc, repo)
            except (PermissionDeniedError, RemoteNotFoundError):
                mounted = False  # not readable from there: upload instead
            if mounted:
                progress.done(desc, MOUNTED)
                return MOUNTED
        self._upload(desc, source, _Reporter(desc, progress))
        progress.done(desc, SENT)
        return SENT

    # -- upload --------------------------------------------------------------------------------------

    def _start_upload(self) -> tuple[str, int]:
        resp = self.client.request("POST", self._path("blobs", "uploads/"), scope=self._push, data=b"",
                                   headers={"Content-Length": "0"}, expected_status=(202,),
                                   what=f"starting an upload to {self.name}")
        resp.close()
        location = resp.headers.get("Location")
        if not location:
            raise RegistryError(self.client.registry, f"starting an upload to {self.name}", resp.status_code,
                                None, "the registry gave no upload location")
        min_chunk = resp.headers.get("OCI-Chunk-Min-Length", "")
        return self.client.url(requests.compat.urljoin(resp.url, location)), \
            int(min_chunk) if min_chunk.isdigit() else 0

    def _cancel(self, location: str) -> None:
        """DELETE an upload session so nothing of it is kept (best effort)."""
        try:
            self.client.request("DELETE", location, scope=self._push, expected_status=None, retry=False,
                                what=f"cancelling an upload to {self.name}").close()
        except MdlError:
            pass

    def _upload(self, desc: Descriptor, source: BlobSource, reporter: _Reporter) -> None:
        last: BaseException | None = None
        for _attempt in range(self.max_upload_attempts):
            location, min_chunk = self._start_upload()
            session = [location]  # the session's latest URL, kept current by the senders
            try:
                if self.chunk_size:
                    self._send_chunked(desc, source, session, max(self.chunk_size, min_chunk), reporter)
                else:
                    self._send_streamed(desc, source, session, reporter)
                self._commit(desc, session[0])
                return
            except DigestMismatchError:
                self._cancel(session[0])
                raise
            except (MdlError, _Restart, _SourceFailed) as e:
                self._cancel(session[0])
                if isinstance(e, _SourceFailed) and isinstance(e.error, MdlError) and not _retryable(e.error):
                    raise e.error from None
                if not _retryable(e):
                    raise
                last = e.error if isinstance(e, _SourceFailed) else e
        if isinstance(last, MdlError):
            raise last
        raise RegistryError(self.client.registry, f"uploading blob {desc.digest} to {self.name}", None, None,
                            f"gave up after {self.max_upload_attempts} attempts ({type(last).__name__})")

    def _open_source(self, source: BlobSource, desc: Descriptor, offset: int) -> BinaryIO:
        try:
            stream, start = source.open_blob(desc, offset)
        except MdlError as e:
            raise _SourceFailed(e) from e
        if start != offset:
            _close(stream)
            raise _Restart()
        return stream

    def _mismatch(self, desc: Descriptor, hasher: _Hasher) -> DigestMismatchError | None:
        if hasher.count == desc.size and hasher.digest == desc.digest:
            return None
        return DigestMismatchError("blob", desc.digest, hasher.digest, desc.size, hasher.count)

    def _send_streamed(self, desc: Descriptor, source: BlobSource, session: list[str], reporter: _Reporter) -> None:
        hasher = _Hasher()
        stream = self._open_source(source, desc, 0)
        failure: list[BaseException] = []
        limit = desc.size + 1  # one byte past the size is enough to know the source is wrong
        bufsize = max(1 << 20, min(self.buffer_size, max(desc.size, 1) + 1))

        def body():
            try:
                for chunk in read_ahead(stream, limit, bufsize=bufsize, on_read=hasher.update):
                    yield chunk
                    hasher.sent += len(chunk)
                    reporter.at(hasher.sent)
            except GeneratorExit:
                raise  # the connection closed the body: not a source failure
            except BaseException as e:
                failure.append(e)  # reading the source failed
                raise

        try:
            resp = self.client.request("PATCH", session[0], scope=self._push, data=body(),
                                       headers={"Content-Type": OCTET_STREAM}, expected_status=(202,), retry=False,
                                       what=f"uploading blob {desc.digest} to {self.name}")
        except BaseException as e:
            if failure:
                raise _SourceFailed(failure[0]) from e
            raise
        finally:
            _close(stream)
        resp.close()
        session[0] = self._next_location(resp, session[0])
        mismatch = self._mismatch(desc, hasher)
        if mismatch is not None:
            raise mismatch

    def _next_location(self, resp: requests.Response, current: str) -> str:
        new = resp.headers.get("Location")
        return self.client.url(requests.compat.urljoin(resp.url, new)) if new else current

    def _read_chunk(self, stream: BinaryIO, size: int) -> bytes:
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        while got < size:
            try:
                n = readinto(stream, view[got:])
            except BaseException as e:
                raise _SourceFailed(e) from e
            if not n:
                break
            got += n
        return bytes(view[:got])

    def _session_offset(self, location: str) -> tuple[int, str]:
        """How many bytes the upload session holds, and its current location."""
        resp = self.client.request("GET", location, scope=self._push, expected_status=(204, 200),
                                   what=f"checking an upload to {self.name}")
        resp.close()
        m = _UPLOAD_RANGE.fullmatch((resp.headers.get("Range") or "").strip())
        # distribution writes "0-0" both for no bytes and for one byte; treat it as none (a resent
        # byte would fail the digest check at commit, which restarts the blob).
        committed = int(m.group(1)) + 1 if m and int(m.group(1)) > 0 else 0
        return committed, self._next_location(resp, location)

    def _send_chunked(self, desc: Descriptor, source: BlobSource, session: list[str], chunk_size: int,
                      reporter: _Reporter) -> None:
        hasher = _Hasher()
        stream = self._open_source(source, desc, 0)
        sent = 0  # bytes the session holds
        resumes = 0
        try:
            while True:
                try:
                    data = self._read_chunk(stream, min(chunk_size, desc.size + 1 - hasher.count))
                except _SourceFailed as e:
                    if isinstance(e.error, MdlError) and not _retryable(e.error) or resumes >= self.max_resumes:
                        raise
                    resumes += 1
                    _close(stream)
                    stream = self._open_source(source, desc, hasher.count)
                    continue
                if not data:
                    break
                hasher.update(data)
                start = sent
                while data:
                    end = start + len(data) - 1
                    try:
                        resp = self.client.request(
                            "PATCH", session[0], scope=self._push, data=data, retry=False, expected_status=(202,),
                            headers={"Content-Type": OCTET_STREAM, "Content-Range": f"{start}-{end}",
                                     "Content-Length": str(len(data))},
                            what=f"uploading blob {desc.digest} to {self.name}")
                    except MdlError as e:
                        if not _retryable(e) or resumes >= self.max_resumes:
                            raise
                        resumes += 1
                        try:
                            committed, session[0] = self._session_offset(session[0])
                        except MdlError as status_error:
                            raise _Restart() from status_error
                        if not start <= committed <= end + 1:
                            raise _Restart() from e
                        data = data[committed - start:]
                        start = committed
                        continue
                    resp.close()
                    session[0] = self._next_location(resp, session[0])
                    start += len(data)
                    data = b""
                sent = start
                reporter.at(sent)
                if hasher.count > desc.size:
                    break
        finally:
            _close(stream)
        mismatch = self._mismatch(desc, hasher)
        if mismatch is not None:
            raise mismatch

    def _commit(self, desc: Descriptor, location: str) -> None:
        resp = self.client.request("PUT", add_query(location, digest=desc.digest), scope=self._push, data=b"",
                                   headers={"Content-Length": "0", "Content-Type": OCTET_STREAM},
                                   expected_status=(201,), retry=False,
                                   what=f"completing the upload of blob {desc.digest} to {self.name}")
        resp.close()
        returned = resp.headers.get("Docker-Content-Digest")
        if returned is not None and returned != desc.digest:
            raise RegistryError(self.client.registry, f"completing the upload of blob {desc.digest}", 201,
                                "DIGEST_INVALID", f"the registry stored it as {returned}")


def _next_link(header: str | None) -> str | None:
    """The `rel="next"` target of a Link header (RFC 8288), as distribution sends for tag lists."""
    if not header:
        return None
    for part in header.split(","):
        m = re.match(r'\s*<([^>]*)>\s*;(.*)', part)
        if m and re.search(r'rel\s*=\s*"?next"?', m.group(2)):
            return m.group(1)
    return None
