"""Audit one manifest of a repository, in place (nothing pulled, nothing stored).

Every manifest is fetched (verified against its digest) and classified (`classify.py`). A model is
then checked exactly as `mdl conformance check` checks a registry artifact: `check_model_in_source`
(the reader profile; `deep` hashes every layer in constant memory), `written_findings` for the
written profile, and `conformance.artifacts.classify` to assign each finding to the cases it breaks.
Its signatures are looked up as `mdl verify` looks them up (`ops.signatures`), and with a key checked
by the one policy (`signing.policy.check_signatures`). Registry errors other than a manifest that is
gone or bad are raised: the run decides what they mean.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from ..artifact_check import Finding
from ..conformance.artifacts import Case, CaseVerdict, classify as assign_cases, written_findings
from ..content.descriptor import Index, Manifest, parse_node
from ..errors import DigestMismatchError, MdlError, SchemaViolationError
from ..model_check import check_model_in_source
from ..ops.signatures import find_registry_signatures, read_signature_blob
from ..registry.errors import RemoteNotFoundError
from ..signing.errors import SignatureError, UnsignedError
from ..signing.policy import check_signatures
from ..spec import mediatypes as mt
from .classify import INDEX, UNKNOWN, classify, subject_of
from .model import INVALID, SIGNED, UNSIGNED, VERIFIED, Artifact

# a manifest the registry serves but that is wrong itself: a finding about the artifact, not a failure to audit
BAD_MANIFEST_KINDS = frozenset({"digest-mismatch", "digest", "schema", "manifest-too-large"})
_CONFIG_LIMIT = 1 << 20  # configs kept in memory for a second reading


@dataclass
class CheckSettings:
    """How each artifact is checked; `state_key()` is what a state file's entries must match to be reused."""

    cases: list[Case] = field(default_factory=list)
    written: bool = False
    deep: bool = False
    public_key: object = None
    key_name: str | None = None
    key_id: str | None = None  # a fingerprint of the public key

    def state_key(self) -> dict:
        return {"profile": "written" if self.written else "reader", "deep": self.deep, "key": self.key_id}


def audit_manifest(repo, digest: str, tags: list[str], settings: CheckSettings) -> Artifact | None:
    """The audit of manifest `digest` in `repo` (a RemoteRepository); None when the registry no longer
    has it (its tag moved or was deleted after the listing)."""
    art = Artifact(repo.repository, digest)  # of kind unknown until it is read
    try:
        raw, media_type, _ = repo.fetch_manifest_bytes(digest)
    except RemoteNotFoundError:
        return None
    except MdlError as e:
        if e.kind not in BAD_MANIFEST_KINDS:
            raise
        art.findings = [finding_dict(Finding(e.kind, "$", e.message))]
        return art
    art.media_type, art.size = media_type, len(raw)
    try:
        node = parse_node(raw, digest, media_type)
    except (SchemaViolationError, DigestMismatchError) as e:
        art.kind = INDEX if media_type in (mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST) else UNKNOWN
        art.findings = [finding_dict(Finding(e.kind, "$", e.message))]
        return art
    art.kind, art.format = classify(node)
    art.artifact_type = node.artifact_type
    art.subject = subject_of(node, tags)
    if isinstance(node, Index):
        art.children = [d.digest for d in node.manifests]
        return art
    art.config_media_type = node.config.media_type
    art.size += sum(d.size for d in node.blob_descriptors())
    if art.is_model:
        check_model(repo, node, art, settings)
        art.signature = signature_status(repo, digest, settings)
    return art


def check_model(repo, manifest: Manifest, art: Artifact, settings: CheckSettings) -> None:
    """What `mdl conformance check` finds on the model `manifest`, each finding with the cases it breaks."""
    source = _Fetched(repo, manifest)
    report = check_model_in_source(source, manifest.digest, deep=settings.deep)
    written = written_findings(source, manifest.digest, report.findings) if settings.written else None
    verdicts, _unmatched = assign_cases(report.findings, report.config_media_type, settings.cases, written)
    art.checked, art.cases = True, len(verdicts)
    art.layers_hashed, art.blobs_checked = report.layers_hashed, report.blobs_checked
    art.findings = [finding_dict(f, verdicts) for f in report.findings + (written or [])]


def finding_dict(f: Finding, verdicts: list[CaseVerdict] = ()) -> dict:
    """A finding as reports show it, with the cases it breaks (none: an integrity finding no case names)."""
    cases = [{"id": v.case.id, "spec": v.case.link, "profile": v.case.profile}
             for v in verdicts if any(x is f for x in v.findings)]
    return {"kind": f.kind, "document": f.document, "path": f.path, "message": f.message, "cases": cases}


def signature_status(repo, digest: str, settings: CheckSettings) -> dict:
    """Whether the registry holds signatures of `digest` (its referrers, its `.sig` tag), and with a key,
    whether one verifies: `verified`, else `invalid` (signatures, none by this key) or `unsigned`."""
    manifests = find_registry_signatures(repo, digest)
    out = {"status": SIGNED if manifests else UNSIGNED, "keyed": settings.public_key is not None,
           "signatures": sorted(m.digest for m in manifests), "error": None}
    if settings.public_key is None:
        return out
    try:
        verified = check_signatures(repo.name, repo.name, digest, manifests,
                                    lambda d: read_signature_blob(repo, d), settings.public_key, settings.key_name)
    except (SignatureError, DigestMismatchError) as e:
        out.update(status=UNSIGNED if isinstance(e, UnsignedError) else INVALID,
                   error={"kind": e.kind, "message": e.message})
    else:
        out.update(status=VERIFIED, verifiedBy=verified.signature_manifest)
    return out


class _Fetched:
    """`repo` with `manifest` already fetched and its config kept once read: the reader and the written
    profile both read them, the registry is asked once. Everything else goes to `repo`."""

    def __init__(self, repo, manifest: Manifest):
        self.repo, self.manifest = repo, manifest
        self._config: bytes | None = None

    def fetch_manifest(self, reference: str) -> Manifest:
        return self.manifest if reference == self.manifest.digest else self.repo.fetch_manifest(reference)

    def open_blob(self, desc, offset: int = 0):
        config = self.manifest.config
        if offset or desc.digest != config.digest or desc.size > _CONFIG_LIMIT:
            return self.repo.open_blob(desc, offset)
        if self._config is None:
            stream, _ = self.repo.open_blob(desc, 0)
            try:
                chunks, got = [], 0
                while got <= desc.size:  # one byte past the size tells a blob that is too long
                    chunk = stream.read(desc.size + 1 - got)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    got += len(chunk)
            finally:
                stream.close()
            self._config = b"".join(chunks)
        return io.BytesIO(self._config), 0

    def __getattr__(self, name: str):
        return getattr(self.repo, name)
