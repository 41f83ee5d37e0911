"""`mdl audit`: the manifests of a registry's repositories, classified and checked, in parallel.

1. Repositories: the catalog (`registry/catalog.py`), narrowed to the paths given (a repository, or a
   namespace: every repository under it). Where the registry has no catalog for us, the paths given
   are taken as the repositories.
2. The tags of each repository (`RemoteRepository.tags`, paginated), each resolved once (a HEAD).
3. Each digest of each repository is audited once (`check.py`), however many tags name it; an index's
   manifests join the queue. A digest the state file holds (same settings) is not checked again.
4. A model's signature status is recorded with the digests its signature tags name (`sha256-<hex>.sig`,
   cosign's, and `sha256-<hex>`, the referrers fallback index); a model from the state file is looked up
   again only when those changed. An incremental audit of an unchanged registry sends only the listing
   and one HEAD per tag. (Signatures a registry keeps only behind its referrers API, untagged, are
   noticed by an incremental audit only when the model is checked again.)

All of it runs on at most `concurrency` threads sharing one client (and its rate cap, `rate.py`).

A registry that cannot be reached or refuses the credentials stops the audit: AuditIncompleteError
(exit 2); the state file keeps every check that ended. A repository whose tags cannot be listed, or a
manifest that cannot be read (403, 5xx after the retries), is recorded and the audit goes on; its
report then exits 2 as well.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..errors import MdlError
from ..registry.catalog import list_repositories
from ..registry.errors import RemoteNotFoundError
from ..registry.repository import RemoteRepository
from .check import CheckSettings, audit_manifest, signature_status
from .classify import subject_of
from .model import Artifact, AuditReport, RepositoryResult
from .state import AuditState

# the registry itself is out of reach: no point going on
FATAL_KINDS = frozenset({"unreachable", "tls", "auth", "credentials"})

Progress = Callable[[str, int, int], None]  # (phase, done, total)
_Key = tuple[str, str]  # (repository, digest)


class AuditIncompleteError(MdlError):
    """The audit could not go on (the registry unreachable, the credentials refused) or not begin."""

    kind = "audit-incomplete"

    def __init__(self, registry: str, problem: str, hint: str | None = None):
        self.registry = registry
        super().__init__(f"could not audit {registry}: {problem}",
                         hint or "check the registry and the credentials (`mdl login`); with --state FILE a rerun "
                                 "checks only what is left")


@dataclass
class AuditRequest:
    registry: str
    paths: list[str] = field(default_factory=list)  # repositories or namespaces; none: the whole catalog
    settings: CheckSettings = field(default_factory=CheckSettings)
    concurrency: int = 4
    page_size: int | None = None  # n of catalog and tag-list pages (None: the registry's default)


def run_audit(client, request: AuditRequest, *, state: AuditState | None = None,
              progress: Progress | None = None) -> AuditReport:
    """Audit what `request` names on the registry `client` (a RegistryClient) speaks to."""
    started = datetime.now(timezone.utc)
    t0 = time.monotonic()
    report = AuditReport(request.registry, [f"{request.registry}/{p}" if p else request.registry
                                            for p in request.paths or [""]],
                         request.settings.state_key(), started.strftime("%Y-%m-%dT%H:%M:%SZ"))
    pool = ThreadPoolExecutor(max_workers=request.concurrency, thread_name_prefix="mdl-audit")
    try:
        repositories = select_repositories(client, request.paths, request.page_size)
        _Run(client, request, state, report, pool, progress or (lambda *_: None)).all(repositories)
    except MdlError as e:
        pool.shutdown(wait=False, cancel_futures=True)
        if e.kind in FATAL_KINDS:
            raise AuditIncompleteError(request.registry, e.message, e.hint) from e
        raise
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    report.seconds = time.monotonic() - t0
    return report


def select_repositories(client, paths: list[str], page_size: int | None) -> list[str]:
    """The repositories to audit: the catalog's, those equal to or under one of `paths` if any are given.
    A path the catalog does not list (it may hide what the credentials can read) is taken as a repository."""
    try:
        catalog = list_repositories(client, page_size)
    except MdlError as e:
        if e.kind in FATAL_KINDS and not (paths and e.kind == "auth"):
            raise  # the registry is out of reach; a catalog refused to these credentials may be all there is
        if not paths:
            raise AuditIncompleteError(client.registry, f"cannot list its repositories: {e.message}",
                                       "name the repositories to audit: REGISTRY/REPOSITORY (the registry may "
                                       "not offer /v2/_catalog to these credentials)") from e
        return sorted(set(paths))
    if not paths:
        return catalog

    def under(repo: str, path: str) -> bool:
        return repo == path or repo.startswith(path + "/")

    chosen = [r for r in catalog if any(under(r, p) for p in paths)]
    return chosen + sorted({p for p in paths if not any(under(r, p) for r in catalog)})


class _Run:
    def __init__(self, client, request: AuditRequest, state: AuditState | None, report: AuditReport,
                 pool: ThreadPoolExecutor, progress: Progress):
        self.client, self.request, self.state, self.report = client, request, state, report
        self.pool, self.progress = pool, progress
        self.settings = request.settings
        self.repos: dict[str, RemoteRepository] = {}
        self.tags: dict[_Key, list[str]] = defaultdict(list)
        self.known: dict[_Key, Artifact] = {}
        self.signature_tags: dict[_Key, set[str]] = defaultdict(set)  # model -> digests its signature tags name

    def repo(self, name: str) -> RemoteRepository:
        if name not in self.repos:
            self.repos[name] = RemoteRepository(self.client, name)
        return self.repos[name]

    def all(self, repositories: list[str]) -> None:
        results = {name: RepositoryResult(name) for name in repositories}
        for repo in repositories:
            self.repo(repo)  # constructed here, in one thread
        listed = self._parallel("listing tags", lambda r: self.repo(r).tags(self.request.page_size), repositories)
        pairs = []
        for name, tags, error in listed:
            if error is not None:
                results[name].error = {"kind": error.kind, "message": error.message}
            else:
                results[name].tags = len(tags)
                pairs += [(name, t) for t in sorted(set(tags))]
        for (name, tag), desc, error in self._parallel("resolving tags", lambda p: self.repo(p[0]).resolve(p[1]),
                                                       pairs):
            if isinstance(error, RemoteNotFoundError):
                continue  # deleted since the listing
            if error is not None:
                results[name].error = results[name].error or {"kind": error.kind,
                                                              "message": f"tag {tag}: {error.message}"}
                continue
            self.tags[(name, desc.digest)].append(tag)
            subject = subject_of(None, [tag])
            if subject is not None:
                self.signature_tags[(name, subject)].add(desc.digest)
        self._check_all(list(self.tags))
        self._refresh_signatures()
        self._finish(results)

    def _parallel(self, phase: str, fn, items: list) -> list[tuple]:
        """(item, result, non-fatal error) for each item, in order; a fatal error stops everything."""
        if not items:
            return []
        futures = {self.pool.submit(fn, item): item for item in items}
        out: dict = {}
        self.progress(phase, 0, len(items))
        try:
            for fut in as_completed(futures):
                item = futures[fut]
                try:
                    out[item] = (fut.result(), None)
                except MdlError as e:
                    if e.kind in FATAL_KINDS:
                        raise
                    out[item] = (None, e)
                self.progress(phase, len(out), len(items))
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        return [(item, *out[item]) for item in items]

    # -- one check per digest ------------------------------------------------------------------------

    def _check_all(self, keys: list[_Key]) -> None:
        futures: dict[Future, _Key] = {}
        queued: set[_Key] = set()

        def enqueue(key: _Key) -> None:
            if key in queued:
                return
            queued.add(key)
            cached = self.state.get(*key) if self.state is not None else None
            if cached is not None:
                cached.from_state = True
                self._add(key, cached, enqueue)
            else:
                futures[self.pool.submit(self._check, key)] = key

        for key in keys:
            enqueue(key)
        try:
            while futures:
                finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in finished:
                    key = futures.pop(fut)
                    self._add(key, fut.result(), enqueue)
                self.progress("checking", len(self.known), len(queued))
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    def _check(self, key: _Key) -> Artifact | None:
        repo, digest = key
        try:
            art = audit_manifest(self.repo(repo), digest, self.tags.get(key, []), self.settings)
        except MdlError as e:
            if e.kind in FATAL_KINDS:
                raise
            return Artifact(repo, digest, error={"kind": e.kind, "message": e.message})
        if art is None:
            return None
        if art.signature is not None:
            art.signature["sources"] = self._signature_sources(key)
        if self.state is not None:
            self.state.put(art)  # kept as soon as it is known: a killed audit loses only the checks in flight
        return art

    def _add(self, key: _Key, art: Artifact | None, enqueue) -> None:
        if art is None:
            if key not in self.tags:  # listed by an index, not there: a dangling entry
                art = Artifact(*key, findings=[{"kind": "blob-missing", "document": "manifest", "path": "$",
                                                "message": f"manifest {key[1]} is missing from {key[0]}",
                                                "cases": []}])
            else:
                return  # its tag moved or was deleted since the listing
        self.known[key] = art
        for child in art.children:
            enqueue((key[0], child))

    # -- signatures of models checked before -------------------------------------------------------

    def _signature_sources(self, key: _Key) -> list[str]:
        """The digests the signature tags of model `key` name in this run's listing."""
        return sorted(self.signature_tags.get(key, ()))

    def _refresh_signatures(self) -> None:
        """Look up again the signature status of each model from the state file whose signature tags changed."""
        stale = [key for key, art in self.known.items() if art.from_state and art.is_model
                 and art.signature is not None and art.signature.get("sources") != self._signature_sources(key)]
        refreshed = self._parallel("checking signatures", lambda k: signature_status(self.repo(k[0]), k[1],
                                                                                     self.settings), stale)
        for key, status, error in refreshed:
            art = self.known[key]
            if error is not None:
                art.error = {"kind": error.kind, "message": f"signature lookup: {error.message}"}
                continue
            art.signature = status | {"sources": self._signature_sources(key)}
            if self.state is not None:
                self.state.put(art)

    def _finish(self, results: dict[str, RepositoryResult]) -> None:
        parents: dict[_Key, list[str]] = defaultdict(list)
        for (repo, digest), art in self.known.items():
            for child in art.children:
                parents[(repo, child)].append(digest)
        for key, art in self.known.items():
            art.tags = sorted(self.tags.get(key, []))
            art.parents = sorted(parents.get(key, []))
        self.report.repositories = list(results.values())
        self.report.artifacts = sorted(self.known.values(), key=lambda a: (a.repository, not a.tags, a.tags, a.digest))
        if self.state is not None:
            whole = {r.name for r in results.values() if r.error is None}
            self.state.compact(whole, set(self.known))
