"""What a registry conformance check is and what it works with (the suite: `registry.py`).

A check is a small function (`registry_checks.py`, `registry_blobs.py`) registered with `check`: an id, a
title, whether it is required, and a link to what it tests. It gets a `Context` (the client, the run's
repositories, helpers that push, get and expect) and returns an `Outcome`, or ends early by raising `Decided`
(`Context.fail` and `Context.expect` do).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import requests

from ..content.descriptor import Descriptor, Manifest
from ..content.digest import sha256_bytes
from ..errors import MdlError
from ..registry.client import Exchange
from ..registry.repository import RemoteRepository
from ..registry.errors import RegistryError, RemoteNotFoundError, oci_error
from ..spec import mediatypes as mt

PASS, FAIL, NOT_SUPPORTED = "pass", "fail", "not-supported"
STATUSES = (PASS, FAIL, NOT_SUPPORTED)
OCI_SPEC = "https://github.com/opencontainers/distribution-spec/blob/v1.1.1/spec.md"
MIB = 1 << 20
OCTET_STREAM = "application/octet-stream"


@dataclass
class Outcome:
    """What a check function returns (or raises inside `Decided`)."""

    status: str
    reason: str
    exchanges: list[Exchange] = field(default_factory=list)
    data: dict = field(default_factory=dict)


class Decided(Exception):
    """Raised inside a check to end it with `outcome` (a failed expectation, usually)."""

    def __init__(self, outcome: Outcome):
        super().__init__(outcome.reason)
        self.outcome = outcome


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    required: bool
    link: str  # a spec/ file (with anchor) or an OCI distribution-spec section
    run: Callable[[Context], Outcome]


def check(checks: list[Check], id_: str, title: str, required: bool, link: str):
    """A decorator that appends the function it decorates to `checks`, as the check `id_`."""
    def deco(fn: Callable[[Context], Outcome]) -> Callable[[Context], Outcome]:
        checks.append(Check(id_, title, required, link, fn))
        return fn
    return deco


class Context:
    """What a check works with: the client, its repositories, the blob size, the exchanges seen so far,
    and the cleanup stack of the check that runs now."""

    def __init__(self, base: RemoteRepository, blob_size: int, exchanges: list[Exchange]):
        self.base = base
        self.client = base.client
        self.blob_size = blob_size
        self.exchanges = exchanges
        self.pushed: list[dict] = []
        self._cleanups: list[tuple[str, Callable[[], None]]] = []
        # One upload session per blob: a failed upload is a finding, not something to retry quietly.
        base.max_upload_attempts = 1
        self._repos = {base.repository: base}

    def repo(self, suffix: str = "") -> RemoteRepository:
        """The run's repository, or a sibling `<base>-<suffix>` on the same client."""
        name = f"{self.base.repository}-{suffix}" if suffix else self.base.repository
        if name not in self._repos:
            self._repos[name] = RemoteRepository(self.client, name)
            self._repos[name].max_upload_attempts = 1
        return self._repos[name]

    @property
    def repositories(self) -> list[str]:
        return list(self._repos)

    def last(self) -> list[Exchange]:
        """The latest exchange, as a list for an Outcome (empty when nothing was sent yet)."""
        return self.exchanges[-1:]

    def send(self, repo: RemoteRepository, method: str, url: str, *, action: str = "pull",
             **kwargs: Any) -> requests.Response:
        """One request whatever its status (auth, TLS and retries as usual); `url` is a path on the
        registry or an upload location; `action` the token scope (`pull`, `pull,push`, `delete`)."""
        scope = f"repository:{repo.repository}:{action}"
        extra = kwargs.pop("scopes", ())
        return self.client.request(method, url, scope=(scope, *extra), expected_status=None, **kwargs)

    def pushed_item(self, repo: RemoteRepository, kind: str, digest: str) -> None:
        """Record a pushed manifest or blob and register its delete (404 counts as deleted)."""
        item = {"repository": repo.repository, "kind": kind, "digest": digest}
        if item not in self.pushed:
            self.pushed.append(item)
        delete = repo.delete_manifest if kind == "manifest" else repo.delete_blob
        self.later(f"{kind} {digest} in {repo.repository}", lambda: delete(digest))

    def _untag(self, repo: RemoteRepository, tag: str) -> None:
        """A tag that still resolves once its manifest is deleted (2.8.2 drops it with the manifest; OCI 1.1
        lets a registry keep it) is deleted by name; RegistryError when the registry refuses."""
        path = f"/v2/{repo.repository}/manifests/{tag}"
        head = self.send(repo, "HEAD", path, headers={"Accept": ", ".join(mt.MANIFEST_ACCEPT)})
        head.close()
        if head.status_code == 404:
            return
        resp = self.send(repo, "DELETE", path, action="delete")
        body = resp.content[:4096] if resp.status_code >= 400 else b""
        resp.close()
        if resp.status_code not in (200, 202, 404):
            first = oci_error(body) or {}
            code = first.get("code") if isinstance(first.get("code"), str) else None
            raise RegistryError(self.client.registry, f"deleting tag {tag}", resp.status_code, code)

    def not_removable(self) -> list[str]:
        """What the API cannot remove, once every check cleaned up (module `not_removable`)."""
        return not_removable(self.client, self.repositories, sum(item["kind"] == "blob" for item in self.pushed))

    # -- helpers the checks share ---------------------------------------------------------------------

    def fail(self, reason: str, data: dict | None = None) -> NoReturn:
        """End the check with a failure decided by the latest exchange."""
        raise Decided(Outcome(FAIL, reason, self.last(), data or {}))

    def expect(self, resp: requests.Response, statuses: tuple[int, ...], what: str,
               body: bytes | None = None) -> None:
        """End the check with a failure unless `resp` has one of `statuses` (`body`: its body, if read)."""
        if resp.status_code not in statuses:
            wanted = " or ".join(str(s) for s in statuses)
            self.fail(f"{what}: answered {describe(resp, body)}, expected {wanted}")

    def push_blob(self, repo: RemoteRepository, data: bytes, media_type: str = OCTET_STREAM) -> Descriptor:
        """Push a small blob the way `mdl push` does (HEAD, then POST, PATCH, PUT)."""
        desc = Descriptor(media_type, sha256_bytes(data), len(data))
        repo.put_blob(desc, _BytesSource(data))
        self.pushed_item(repo, "blob", desc.digest)
        return desc

    def put_manifest(self, repo: RemoteRepository, raw: bytes, media_type: str, reference: str,
                     what: str = "PUT manifest") -> requests.Response:
        """PUT manifest or index bytes under `reference` (a tag or the digest); 201 expected."""
        resp = self.send(repo, "PUT", f"/v2/{repo.repository}/manifests/{reference}", action="pull,push",
                         headers={"Content-Type": media_type}, data=bytes(raw))
        resp.close()
        if resp.status_code in (200, 201, 202):
            if not reference.startswith("sha256:"):  # undone after the manifest's delete (undos run last first)
                self.later(f"tag {reference} in {repo.repository}", lambda: self._untag(repo, reference))
            self.pushed_item(repo, "manifest", sha256_bytes(raw))
        self.expect(resp, (201,), what)
        return resp

    def push_artifact(self, repo: RemoteRepository, artifact: Artifact, reference: str | None = None,
                      raw: bytes | None = None) -> requests.Response:
        """Push an artifact's blobs, then its manifest (`raw`: other bytes of the same document)."""
        for data, media_type in artifact.blobs:
            self.push_blob(repo, data, media_type)
        raw = artifact.manifest.raw if raw is None else raw
        return self.put_manifest(repo, raw, mt.OCI_MANIFEST, reference or sha256_bytes(raw),
                                 f"PUT manifest with config {artifact.manifest.config.media_type}")

    def get(self, repo: RemoteRepository, kind: str, reference: str,
            limit: int = 8 * MIB) -> tuple[requests.Response, bytes]:
        """GET a manifest (kind `manifests`, every manifest type accepted) or a small blob (`blobs`), and at
        most `limit` bytes of its body (of an error body, 4 KiB)."""
        h = {"Accept": ", ".join(mt.MANIFEST_ACCEPT)} if kind == "manifests" else {"Accept-Encoding": "identity"}
        resp = self.send(repo, "GET", f"/v2/{repo.repository}/{kind}/{reference}", headers=h, stream=True)
        try:
            ok = resp.status_code < 300
            body = resp.raw.read(limit + 1 if ok else 4096, decode_content=kind == "manifests" or not ok)
        except Exception:  # noqa: BLE001 - an unreadable error body only loses detail
            if ok:
                raise
            body = b""
        finally:
            resp.close()
        return resp, body

    def later(self, what: str, undo: Callable[[], None]) -> None:
        self._cleanups.append((what, undo))

    def clean_up(self) -> list[str]:
        """Run the registered undos, last first; what could not be undone, with why."""
        problems = []
        while self._cleanups:
            what, undo = self._cleanups.pop()
            try:
                undo()
            except RemoteNotFoundError:
                pass  # gone already (the check deleted it, or the registry deletes tags with their manifest)
            except RegistryError as e:
                answer = " ".join(str(x) for x in (e.status, e.code or e.detail) if x)
                problems.append(f"{what} (DELETE answered {answer})" if answer else f"{what} ({e.message})")
            except MdlError as e:
                problems.append(f"{what} ({e.message})")
        return problems


def not_removable(client, repositories: list[str], blobs: int) -> list[str]:
    """What a run that pushed `blobs` blobs to `repositories` leaves, whatever it deletes: the repositories
    (distribution has no repository delete), as /v2/_catalog shows them, and the blobs' bytes."""
    out = []
    listed, answer = _catalog(client)
    for name in repositories:
        if listed is None:
            out.append(f"repository {name}: the API has no repository delete (GET /v2/_catalog answered "
                       f"{answer}, so whether it is still listed is unknown)")
        elif name in listed:
            out.append(f"repository {name}: still listed in /v2/_catalog (the API has no repository delete)")
    if blobs:
        out.append(f"the bytes of the {blobs} blob(s) pushed: a blob DELETE unlinks a blob from its repository; "
                   "its bytes stay in the registry's storage until the registry runs garbage collection")
    return out


def _catalog(client, max_pages: int = 100) -> tuple[set[str] | None, str]:
    """Every repository /v2/_catalog lists (1000 a page, distribution's maximum, following `Link`), or
    None and the answer when the registry does not list them."""
    listed: set[str] = set()
    url: str | None = "/v2/_catalog?n=1000"
    for _ in range(max_pages):
        if url is None:
            break
        resp = client.request("GET", url, scope="registry:catalog:*", expected_status=None)
        try:
            if resp.status_code != 200:
                return None, describe(resp)
            names = resp.json().get("repositories") or []
        except (ValueError, AttributeError):
            return None, "200 with a body that is no catalog"
        finally:
            resp.close()
        listed |= {n for n in names if isinstance(n, str)}
        link = resp.links.get("next", {}).get("url")
        url = requests.compat.urljoin(resp.url, link) if link else None
    return listed, "200"


def describe(resp: requests.Response, body: bytes | None = None) -> str:
    """`405 UNSUPPORTED`, `404 (404 page not found)`: a status and what its error body says (`body`, else
    read here, bounded)."""
    text = str(resp.status_code)
    if resp.status_code < 400:
        return text
    if body is None:
        try:
            body = next(resp.iter_content(4096), b"")  # bounded, whether the body was streamed or read
        except Exception:  # noqa: BLE001 - the body only adds detail (2.8.2 sends a wrong length with a 416)
            body = b""
        finally:
            resp.close()
    first = oci_error(body)
    if first is not None and "code" in first:
        return f"{text} {first['code']}" if isinstance(first["code"], str) else text
    line = body.decode("utf-8", "replace").strip().splitlines()[0][:80] if body.strip() else ""
    return f"{text} ({line})" if line else text


class _BytesSource:
    """A blob source over bytes in memory (small blobs only)."""

    def __init__(self, data: bytes):
        self.data = data

    def open_blob(self, desc: Descriptor, offset: int = 0):
        return io.BytesIO(self.data[offset:]), offset


@dataclass(frozen=True)
class Artifact:
    """A model artifact to push: its manifest and its blobs (config first), each (bytes, media type)."""

    manifest: Manifest
    blobs: list[tuple[bytes, str]]
