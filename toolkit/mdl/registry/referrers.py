"""The referrers of a manifest (distribution-spec v1.1 "Listing Referrers"): through the registry's
referrers API where it has one, otherwise in the fallback tag `sha256-<hex>` (an OCI index kept by
read-modify-write, dead entries dropped), which registries without the API (distribution 2.8.2) need.

Every entry of the fallback index carries the referrer's real `artifactType` (its manifest's
`artifactType`, else its config's media type). cosign 3 lists its bundles as
the empty config's type `oci-empty` (go-containerregistry takes the config's type), which policy
engines filtering by type (Kyverno) then skip: an update corrects such entries it finds."""

from __future__ import annotations

from ..content.descriptor import Descriptor, canonical_json, load_json_document
from ..content.digest import sha256_bytes
from ..errors import SchemaViolationError
from ..spec import mediatypes as mt
from .errors import RemoteNotFoundError


def fallback_tag(digest: str) -> str:
    return "sha256-" + digest.split(":", 1)[1]


def fetch_manifest_if_present(repo, reference: str) -> tuple[bytes, str, str] | None:
    """`repo.fetch_manifest_bytes(reference)`, or None when the registry has no such manifest."""
    try:
        return repo.fetch_manifest_bytes(reference)
    except RemoteNotFoundError:
        return None


def _manifest_exists(repo, digest: str) -> bool:
    try:
        repo.resolve(digest)
        return True
    except RemoteNotFoundError:
        return False


def referrers_api(repo, digest: str) -> list[Descriptor] | None:
    """The referrers of `digest` from the registry's referrers API, or None when it has none (a 404:
    distribution 2.8.2 answers a plain-text 404)."""
    resp = repo.client.request("GET", f"/v2/{repo.repository}/referrers/{digest}",
                               scope=f"repository:{repo.repository}:pull", headers={"Accept": mt.OCI_INDEX},
                               expected_status=None, what=f"listing referrers of {repo.name}@{digest}")
    try:
        ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        if resp.status_code != 200 or ctype != mt.OCI_INDEX:
            return None
        body = resp.content
    finally:
        resp.close()
    try:
        doc = load_json_document(body, "referrers index")
        return [Descriptor.from_dict(d) for d in doc.get("manifests") or []]
    except (SchemaViolationError, AttributeError):
        return None


def _fallback_entries(repo, digest: str) -> list[dict]:
    got = fetch_manifest_if_present(repo, fallback_tag(digest))
    if got is None:
        return []
    try:
        doc = load_json_document(got[0], "referrers fallback index")
        entries = doc.get("manifests") if isinstance(doc, dict) else None
        return [d for d in entries or [] if isinstance(d, dict)]
    except SchemaViolationError:
        return []  # a damaged fallback index is rebuilt


def list_referrers(repo, digest: str) -> list[Descriptor]:
    """The referrers of `digest`: from the referrers API, else the fallback index (entries that are not
    descriptors skipped)."""
    descs = referrers_api(repo, digest)
    if descs is not None:
        return descs
    descs = []
    for d in _fallback_entries(repo, digest):
        try:
            descs.append(Descriptor.from_dict(d))
        except SchemaViolationError:
            continue
    return descs


def _real_artifact_type(repo, digest: str) -> str | None:
    """The type a referrers list gives the manifest `digest`: its `artifactType`, else its config's
    media type (distribution-spec v1.1); None when it cannot be read as an image manifest."""
    got = fetch_manifest_if_present(repo, digest)
    if got is None:
        return None
    try:
        doc = load_json_document(got[0], f"manifest {digest}")
        config = doc.get("config") if isinstance(doc, dict) else None
        found = doc.get("artifactType") or (config.get("mediaType") if isinstance(config, dict) else None)
    except SchemaViolationError:
        return None
    return found if isinstance(found, str) and found != mt.OCI_EMPTY else None


def _entry(repo, d: dict, referrer: Descriptor) -> dict:
    """Entry `d` of the fallback index with its real artifactType (the new referrer's is known)."""
    if d.get("digest") == referrer.digest and referrer.artifact_type:
        return d | {"artifactType": referrer.artifact_type} if d.get("artifactType") != referrer.artifact_type \
            else d
    if d.get("artifactType") not in (None, "", mt.OCI_EMPTY):
        return d
    real = _real_artifact_type(repo, d["digest"])
    return d | {"artifactType": real} if real else d


def register_referrer(repo, subject_digest: str, referrer: Descriptor) -> list[str]:
    """Add `referrer` to the fallback index of `subject_digest` when the registry has no referrers API;
    drops entries whose manifests are gone (2.8.2 refuses an index listing one) and gives every entry
    its real artifactType. Returns the pruned digests."""
    if referrers_api(repo, subject_digest) is not None:
        return []  # the registry indexes `subject` itself
    entries = _fallback_entries(repo, subject_digest)
    kept: list[dict] = []
    pruned: list[str] = []
    seen: set[str] = set()
    for d in entries:
        dg = d.get("digest")
        if not isinstance(dg, str) or dg in seen:
            continue
        if dg == referrer.digest or _manifest_exists(repo, dg):
            kept.append(_entry(repo, d, referrer))
            seen.add(dg)
        else:
            pruned.append(dg)
    if referrer.digest not in seen:
        kept.append(referrer.to_dict())
    if kept == entries:
        return pruned
    raw = canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": kept})
    repo.put_manifest_bytes(raw, mt.OCI_INDEX, sha256_bytes(raw), [fallback_tag(subject_digest)])
    return pruned
