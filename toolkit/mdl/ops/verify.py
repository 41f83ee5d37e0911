"""Verify: models against the spec and their digests, and with a key, their signatures (spec/signing.md).

A target is an OCI layout directory (every model in it), else a model of the local store, else the
model in its registry, checked in place (nothing pulled). `verify_store` checks the whole store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import ModelNotFoundError
from ..model_check import Report, check_model_in_source, check_model_in_store
from ..reference import Reference, parse_reference
from ..store import LayoutStore, RemovalResult
from ..store_check import StoreReport, check_store, repair as repair_store

if TYPE_CHECKING:
    from ..registry.repository import RemoteRepository
    from ..signing.policy import Verified

OpenRepository = Callable[[Reference], "RemoteRepository"]  # a type alias is evaluated: keep it quoted


@dataclass
class Verification:
    reports: list[Report] = field(default_factory=list)  # one per model checked against the spec
    signature: Verified | None = None  # the signature that verified, when a key was given

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports)


@dataclass
class StoreVerification:
    report: StoreReport
    removed: RemovalResult | None = None  # what the repair removed; None when none was asked or needed

    @property
    def ok(self) -> bool:
        """No failure left: none found, or the repair removed every one."""
        return self.report.ok or (self.removed is not None and not self._unrepaired())

    def _unrepaired(self) -> bool:
        """Failures the repair did not remove (e.g. a schema finding in an intact model)."""
        gone = set(self.removed.removed_models)
        return (any(not r.ok and r.digest not in gone for r in self.report.models)
                or any(f.severity == "error" and f.kind not in ("blob-corrupt", "index-entry-missing")
                       for f in self.report.findings))


def is_layout_dir(path: str | None) -> bool:
    return bool(path) and (Path(path) / "oci-layout").is_file()


def verify(store: LayoutStore, target: str, *, open_repository: OpenRepository,
           key: str | os.PathLike | None = None, remote: bool = False, deep: bool = False) -> Verification:
    """Check the model(s) `target` names against the spec: an OCI layout directory's models, else the
    model in `store` (unless `remote`), else the model in its registry, in place (`deep` hashes its
    layers; otherwise their presence and size are checked).

    With `key` (a public key PEM file) the signature is checked first and decides where to look: the
    signatures stored beside the model in `store` (offline), else the registry's; the model is then
    checked against the spec only if `store` holds the manifest that verified."""
    if key is not None:
        return _verify_signed(store, target, key, open_repository)
    if is_layout_dir(target):
        layout = LayoutStore(Path(target))
        digests = [m.digest for m in layout.models()]
        return Verification([check_model_in_store(layout, d) for d in digests])
    digest = None if remote else _local_digest(store, target)
    if digest is None:
        return Verification([_check_in_registry(target, open_repository, deep)])
    return Verification([check_model_in_store(store, digest)])


def verify_store(store: LayoutStore, *, repair: bool = False) -> StoreVerification:
    """Check every model and blob of `store`; with `repair`, remove what is corrupt and the models that
    need it (`store_check.repair`)."""
    report = check_store(store)
    removed = repair_store(store, report)[1] if repair and not report.ok else None
    return StoreVerification(report, removed)


def _local_digest(store: LayoutStore, target: str) -> str | None:
    """The model `target` names in the local store, or None when it is not there."""
    try:
        return store.resolve(target)
    except ModelNotFoundError:
        return None


def _check_in_registry(target: str, open_repository: OpenRepository, deep: bool) -> Report:
    """The model `target` names, checked in its registry without pulling it."""
    ref = parse_reference(target)
    report = check_model_in_source(open_repository(ref), ref.digest or ref.tag, deep=deep)
    report.tags = [str(ref)]
    return report


def _verify_signed(store: LayoutStore, target: str, key: str | os.PathLike,
                   open_repository: OpenRepository) -> Verification:
    # The signing modules (and the registry client they use) load only when a key is given.
    from ..signing.cosign import local_signature_names
    from ..signing.keys import load_public_key
    from .signatures import verify_signature_in_registry, verify_signature_in_store

    key_name = os.fspath(key)
    public_key = load_public_key(key)
    digest = _local_digest(store, target)
    if digest is not None and local_signature_names(store, digest):
        verified = verify_signature_in_store(store, target, digest, public_key, key_name)  # offline
    else:  # not local, or local without its signatures: ask the registry
        ref = parse_reference(target)
        verified = verify_signature_in_registry(open_repository(ref), ref, public_key, key_name)
        if digest is not None and verified.digest != digest:
            digest = None  # the local copy is another manifest: only the registry's was verified
    reports = [check_model_in_store(store, digest)] if digest is not None else []
    return Verification(reports, verified)
