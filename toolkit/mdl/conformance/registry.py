"""Registry conformance: what a registry must do to hold model artifacts (conformance/registry/README.md).

The generic OCI distribution conformance suite (opencontainers/distribution-spec `conformance/`) tests the
protocol; these checks test what model artifacts add to it: model config media types and `artifactType`,
manifests returned byte for byte with their layer annotations, large uncompressed blobs pushed each way a
client pushes them, `Range` reads, mounts, referrers, manifests at the 4 MiB limit, tags and deletes.

A check is a small function (`registry_checks.py`, `registry_blobs.py`; what a check is: `registry_framework.py`)
with an id, a title, whether it is required, and a link to what it tests. It returns an `Outcome`: `pass`,
`fail` or `not-supported`, a one-line reason, the HTTP exchange(s) that decided it (redacted by the registry
client) and data (chunk limits, timings). This module runs them and builds the report. Checks run one after
the other in repositories of their own run (`<namespace>/mdl-conformance-<id>`); each registers the deletes
that undo what it pushed, and they run after the check whatever its outcome; a delete that fails is reported
as something left behind, never as the check's failure.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .. import __version__
from ..errors import MdlError, UsageError
from ..reference import parse_reference
from ..registry.client import Exchange
from ..registry.open import open_repository
from . import registry_blobs, registry_checks
from .registry_framework import FAIL, MIB, NOT_SUPPORTED, PASS, STATUSES, Check, Context, Decided, Outcome

# The report's statuses and MIB are part of this module's interface (report.py, the CLI).
__all__ = [
    "FAIL", "FULL_BLOB_SIZE", "MIB", "NOT_SUPPORTED", "PASS", "QUICK_BLOB_SIZE", "CheckResult",
    "RegistryNonconformantError", "Report", "all_checks", "exchange_dict", "run_registry_conformance", "split_target",
]

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
    not_removable: list[str] = field(default_factory=list)  # what the API cannot remove (Context.not_removable)

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
            "not_removable": self.not_removable,
        }


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
        try:
            remains = ctx.not_removable() if blocked is None else []
        except MdlError as e:  # the run's results stand; only this note is lost
            remains = [f"what stays could not be asked: {e.message}"]
    return Report(registry, namespace, ctx.repositories, "quick" if quick else "full", blob_size, started_at,
                  time.monotonic() - started, results, ctx.pushed, remains)
