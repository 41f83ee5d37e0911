"""What an audit finds: one `Artifact` per manifest (repository and digest), and the `AuditReport`.

An artifact's record (`record()`, what the state file keeps) holds what its check found and nothing
that can change without its digest changing, except its signature status, which is checked again when
the signatures tagged beside it change. The tags, the parents (indexes listing it) and `from_state`
belong to one run and are filled in by the run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .classify import KINDS, MODEL_KINDS, UNKNOWN

# signature status of a model
SIGNED = "signed"  # signatures present, no key given to verify them
UNSIGNED = "unsigned"
VERIFIED = "verified"  # one verifies with the key given
INVALID = "invalid"  # signatures present, none verifies with the key given

# exit codes of an audit
SOUND, FINDINGS, INCOMPLETE = 0, 1, 2


@dataclass
class Artifact:
    repository: str
    digest: str
    media_type: str | None = None
    kind: str = UNKNOWN
    format: str | None = None  # "docker" or "modelpack" for a model
    size: int = 0  # the manifest and every blob it names
    artifact_type: str | None = None
    config_media_type: str | None = None
    subject: str | None = None  # the digest a signature or referrers index is about
    children: list[str] = field(default_factory=list)  # an index's manifests
    checked: bool = False  # the conformance cases were applied (models)
    cases: int = 0  # cases that apply
    findings: list[dict] = field(default_factory=list)  # kind, document, path, message, cases [{id, spec, profile}]
    layers_hashed: bool = False
    blobs_checked: int = 0
    signature: dict | None = None  # models: status, keyed, signatures, verifiedBy, sources (see run.py), error
    error: dict | None = None  # could not be audited: kind, message
    # of one run
    tags: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    from_state: bool = False

    @property
    def is_model(self) -> bool:
        return self.kind in MODEL_KINDS

    @property
    def failed_cases(self) -> list[str]:
        return sorted({c["id"] for f in self.findings for c in f["cases"]})

    @property
    def signature_failed(self) -> bool:
        """A key was given and no signature verified with it."""
        return self.signature is not None and bool(self.signature.get("keyed")) and \
            self.signature.get("status") != VERIFIED

    @property
    def ok(self) -> bool:
        return not self.findings and self.error is None and not self.signature_failed

    @property
    def name(self) -> str:
        """How to show it: `repo:tag` (the first tag) or `repo@digest`."""
        return f"{self.repository}:{self.tags[0]}" if self.tags else f"{self.repository}@{self.digest}"

    def record(self) -> dict:
        """What the state file keeps (nothing of one run)."""
        return {k: v for k, v in self.as_dict().items() if k not in ("tags", "parents", "from_state", "ok")}

    def as_dict(self) -> dict:
        return {
            "repository": self.repository, "digest": self.digest, "tags": self.tags, "mediaType": self.media_type,
            "kind": self.kind, "format": self.format, "size": self.size, "artifactType": self.artifact_type,
            "configMediaType": self.config_media_type, "subject": self.subject, "children": self.children,
            "parents": self.parents, "checked": self.checked, "cases": self.cases, "findings": self.findings,
            "layersHashed": self.layers_hashed, "blobsChecked": self.blobs_checked, "signature": self.signature,
            "error": self.error, "fromState": self.from_state, "ok": self.ok,
        }

    @classmethod
    def from_record(cls, d: dict) -> Artifact:
        return cls(repository=d["repository"], digest=d["digest"], media_type=d.get("mediaType"),
                   kind=d.get("kind", UNKNOWN), format=d.get("format"), size=d.get("size", 0),
                   artifact_type=d.get("artifactType"), config_media_type=d.get("configMediaType"),
                   subject=d.get("subject"), children=list(d.get("children") or []), checked=d.get("checked", False),
                   cases=d.get("cases", 0), findings=list(d.get("findings") or []),
                   layers_hashed=d.get("layersHashed", False), blobs_checked=d.get("blobsChecked", 0),
                   signature=d.get("signature"), error=d.get("error"))


@dataclass
class RepositoryResult:
    name: str
    tags: int = 0
    error: dict | None = None  # the tags could not be listed: kind, message

    def as_dict(self) -> dict:
        return {"name": self.name, "tags": self.tags, "error": self.error}


@dataclass
class AuditReport:
    registry: str
    targets: list[str]
    settings: dict  # profile, deep, key
    started: str  # RFC 3339
    seconds: float = 0.0
    repositories: list[RepositoryResult] = field(default_factory=list)
    artifacts: list[Artifact] = field(default_factory=list)

    @property
    def models(self) -> list[Artifact]:
        return [a for a in self.artifacts if a.is_model]

    @property
    def failing(self) -> list[Artifact]:
        return [a for a in self.artifacts if a.error is None and not a.ok]

    @property
    def errors(self) -> list[str]:
        """What could not be audited, one line each."""
        return [f"repository {r.name}: {r.error['message']}" for r in self.repositories if r.error] + \
            [f"{a.name}: {a.error['message']}" for a in self.artifacts if a.error]

    @property
    def exit_code(self) -> int:
        return INCOMPLETE if self.errors else FINDINGS if self.failing else SOUND

    def counts(self) -> dict:
        kinds = Counter(a.kind for a in self.artifacts)
        formats = Counter(a.format for a in self.artifacts if a.format)
        sig = Counter(a.signature["status"] for a in self.models if a.signature)
        return {
            "repositories": len(self.repositories), "artifacts": len(self.artifacts),
            "tags": sum(len(a.tags) for a in self.artifacts),
            "kinds": {k: kinds[k] for k in KINDS if kinds[k]}, "formats": dict(sorted(formats.items())),
            "models": len(self.models), "failing": len(self.failing), "errors": len(self.errors),
            "signatures": dict(sorted(sig.items())),
            "checkedNow": sum(not a.from_state for a in self.artifacts),
            "fromState": sum(a.from_state for a in self.artifacts),
        }

    def failures_by_rule(self) -> list[tuple[str, str | None, int]]:
        """(case id, or `[kind]` for a finding no case names; its spec link; artifacts failing it), most first."""
        hits: Counter = Counter()
        links: dict[str, str | None] = {}
        for a in self.artifacts:
            rules: set[str] = set()
            for f in a.findings:
                if f["cases"]:
                    for c in f["cases"]:
                        rules.add(c["id"])
                        links[c["id"]] = c["spec"]
                else:
                    rules.add(f"[{f['kind']}]")
                    links.setdefault(f"[{f['kind']}]", None)
            if a.signature_failed:
                rules.add(f"[signature: {a.signature['status']}]")
                links.setdefault(f"[signature: {a.signature['status']}]", None)
            hits.update(rules)
        return [(rule, links[rule], n) for rule, n in sorted(hits.items(), key=lambda x: (-x[1], x[0]))]

    def as_dict(self) -> dict:
        return {
            "registry": self.registry, "targets": self.targets, "settings": self.settings, "started": self.started,
            "seconds": round(self.seconds, 3), "ok": self.exit_code == SOUND, "exitCode": self.exit_code,
            "counts": self.counts(), "errors": self.errors,
            "failuresByRule": [{"rule": r, "spec": link, "artifacts": n} for r, link, n in self.failures_by_rule()],
            "repositories": [r.as_dict() for r in self.repositories],
            "artifacts": [a.as_dict() for a in self.artifacts],
        }
