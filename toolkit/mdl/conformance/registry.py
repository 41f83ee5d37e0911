"""Registry conformance: what a registry must do to hold model artifacts (conformance/registry/README.md).

The generic OCI distribution conformance suite (opencontainers/distribution-spec `conformance/`) tests the
protocol; these checks test what model artifacts add to it: model config media types and `artifactType`,
manifests returned byte for byte with their layer annotations, large uncompressed blobs pushed each way a
client pushes them, `Range` reads, mounts, referrers, manifests at the 4 MiB limit, tags and deletes.

A check is a small function (`registry_checks.py`, `registry_blobs.py`) with an id, a title, whether it is
required, and a link to what it tests. It returns an `Outcome`: `pass`, `fail` or `not-supported`, a one-line
reason, the HTTP exchange(s) that decided it (redacted by the registry client) and data (chunk limits,
timings). Checks run one after the other in repositories of their own run (`<namespace>/mdl-conformance-<id>`);
each registers the deletes that undo what it pushed, and they run after the check whatever its outcome; a
delete that fails is reported as something left behind, never as the check's failure.
"""

from __future__ import annotations

import io
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NoReturn

import requests

from .. import __version__
from ..content.descriptor import Descriptor, Manifest
from ..content.digest import sha256_bytes
from ..errors import MdlError, UsageError
from ..reference import parse_reference
from ..registry import Exchange, RemoteRepository, open_repository
from ..registry.errors import RegistryError, RemoteNotFoundError
from ..spec import mediatypes as mt

PASS, FAIL, NOT_SUPPORTED = "pass", "fail", "not-supported"
STATUSES = (PASS, FAIL, NOT_SUPPORTED)
OCI_SPEC = "https://github.com/opencontainers/distribution-spec/blob/v1.1.1/spec.md"
MIB = 1 << 20
OCTET_STREAM = "application/octet-stream"
FULL_BLOB_SIZE = 1 << 30
QUICK_BLOB_SIZE = 64 * MIB
# Headers worth keeping in a report: what the checks decide on; everything else is noise.
_RELEVANT = frozenset({
    "accept", "accept-ranges", "authorization", "content-encoding", "content-length", "content-range",
    "content-type", "docker-content-digest", "docker-upload-uuid", "link", "location", "oci-chunk-min-length",
    "oci-subject", "range", "transfer-encoding", "www-authenticate",
})


class RegistryNonconformantError(MdlError):
    """A required check failed; the reports say which and why."""

    kind = "registry-nonconformant"

    def __init__(self, registry: str, failed: list[str]):
        self.registry = registry
        self.failed = failed
        super().__init__(f"registry {registry} failed {len(failed)} required check(s): {', '.join(failed)}",
                         "read each check's reason and HTTP exchange in the summary or the JSON report "
                         "(--report-dir); conformance/registry/README.md says what each check needs")


def exchange_dict(ex: Exchange) -> dict:
    """An exchange as the reports show it: method, URL, status and the headers that matter (redacted)."""
    out: dict[str, Any] = {"method": ex.method, "url": ex.url, "status": ex.status}
    for key, headers in (("request_headers", ex.request_headers), ("response_headers", ex.response_headers)):
        kept = {k: v for k, v in headers.items() if k.lower() in _RELEVANT}
        if kept:
            out[key] = kept
    if ex.error:
        out["error"] = ex.error
    return out


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


@dataclass
class CheckResult:
    id: str
    title: str
    required: bool
    link: str
    status: str
    reason: str
    seconds: float
    exchanges: list[dict] = field(default_factory=list)
    data: dict = field(default_factory=dict)
    left_behind: list[str] = field(default_factory=list)  # what the check's cleanup could not delete

    def to_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "required": self.required, "link": self.link,
                "status": self.status, "reason": self.reason, "seconds": round(self.seconds, 3),
                "exchanges": self.exchanges, "data": self.data, "left_behind": self.left_behind}


@dataclass
class Report:
    registry: str
    namespace: str
    repositories: list[str]
    mode: str  # quick | full
    blob_size: int
    started: str
    seconds: float
    results: list[CheckResult]
    pushed: list[dict]  # {"repository", "kind": manifest|blob, "digest"} of everything pushed

    @property
    def failed_required(self) -> list[str]:
        return [r.id for r in self.results if r.required and r.status == FAIL]

    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.results) for s in STATUSES}

    def to_dict(self) -> dict:
        return {
            "tool": f"mdl {__version__}", "suite": "registry", "registry": self.registry,
            "namespace": self.namespace, "repositories": self.repositories, "mode": self.mode,
            "blob_size": self.blob_size, "started": self.started, "seconds": round(self.seconds, 3),
            "summary": {**self.counts(), "required_failed": self.failed_required},
            "checks": [r.to_dict() for r in self.results],
            "pushed": self.pushed,
            "left_behind": [x for r in self.results for x in r.left_behind],
        }


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
    try:
        code = json.loads(body)["errors"][0]["code"]
        return f"{text} {code}" if isinstance(code, str) else text
    except (ValueError, KeyError, IndexError, TypeError):
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


def _run_one(ctx: Context, item: Check) -> CheckResult:
    started = time.monotonic()
    first = len(ctx.exchanges)
    try:
        outcome = item.run(ctx)
    except Decided as d:
        outcome = d.outcome
    except MdlError as e:
        outcome = Outcome(FAIL, e.message, ctx.exchanges[first:][-1:])
    except Exception as e:  # noqa: BLE001 - a bug in one check must not stop the others
        outcome = Outcome(FAIL, f"internal error in the check: {type(e).__name__}: {e}", ctx.exchanges[first:][-1:])
    left = ctx.clean_up()
    return CheckResult(item.id, item.title, item.required, item.link, outcome.status, outcome.reason,
                       time.monotonic() - started, [exchange_dict(x) for x in outcome.exchanges], outcome.data, left)


def split_target(target: str) -> tuple[str, str]:
    """`REGISTRY[/NAMESPACE]` -> (registry, namespace); the registry is always the first component."""
    registry, _, namespace = (target or "").strip().strip("/").partition("/")
    if not registry or not ("." in registry or ":" in registry or registry.lower() == "localhost"):
        raise UsageError(f"invalid registry {target!r}: the first component must be a registry host "
                         "(with a dot or a port, or localhost)", "for example: 127.0.0.1:5000/test or ghcr.io/org")
    return registry.lower(), namespace.lower()


def all_checks() -> list[Check]:
    from . import registry_blobs, registry_checks

    return registry_checks.CHECKS_BEFORE_BLOBS + registry_blobs.CHECKS + registry_checks.CHECKS_AFTER_BLOBS


def run_registry_conformance(target: str, *, blob_size: int, quick: bool, plain_http: bool | None = None,
                             ca_file: str | None = None, env: Mapping[str, str] | None = None,
                             debug_log: Callable[[Exchange], None] | None = None,
                             only: list[str] | None = None,
                             on_result: Callable[[CheckResult], None] | None = None) -> Report:
    """Run every check (or those whose id starts with one of `only`) against `REGISTRY[/NAMESPACE]`."""
    registry, namespace = split_target(target)
    selected = [c for c in all_checks() if not only or any(c.id.startswith(o) for o in only)]
    if not selected:
        raise UsageError(f"no check id starts with {', '.join(only or [])}",
                         "conformance/registry/README.md lists the check ids")
    run_id = secrets.token_hex(4)
    leaf = f"mdl-conformance-{run_id}"
    ref = parse_reference(f"{registry}/{namespace}/{leaf}:probe" if namespace else f"{registry}/{leaf}:probe")
    exchanges: list[Exchange] = []

    def record(ex: Exchange) -> None:
        exchanges.append(ex)
        if debug_log is not None:
            debug_log(ex)

    base = open_repository(ref, plain_http=plain_http, ca_file=ca_file, env=env, debug_log=record, concurrency=1)
    ctx = Context(base, blob_size, exchanges)
    started_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    started = time.monotonic()
    results = []
    with base.client:
        blocked = None  # the API root failed: nothing else can work
        for item in selected:
            if blocked is None:
                result = _run_one(ctx, item)
            else:
                result = CheckResult(item.id, item.title, item.required, item.link, FAIL, blocked, 0.0)
            if item.id == "api-root" and result.status == FAIL:
                blocked = f"not run: api-root failed ({result.reason})"
            results.append(result)
            if on_result is not None:
                on_result(result)
    return Report(registry, namespace, ctx.repositories, "quick" if quick else "full", blob_size, started_at,
                  time.monotonic() - started, results, ctx.pushed)
