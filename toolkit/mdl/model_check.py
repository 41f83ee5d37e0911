"""Check one model against every rule of the spec, changing nothing: in the local store
(`check_model_in_store`, every blob hashed) or where it lies, a registry or an OCI layout
(`check_model_in_source`).

Each problem is a `Finding` with a stable `kind` and the JSON path it concerns, so scripts (and the
conformance suite) can tell one failure from another. Blobs are streamed, so memory stays flat.

A model stored partially on purpose (`mdl pull --include`) is checked for what it holds: its absent
layers are listed in `Report.absent`, not reported as findings, so `verify --all` and `--repair` never
take them for damage. `refuse_partial` is the runtime's side: a partial model without the layers it
needs to run is refused, saying so.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from .artifact_check import Finding, config_findings, effective_filepath, manifest_findings
from .content.copy import read_small_blob
from .content.descriptor import Manifest
from .content.digest import hash_stream, hash_workers, spare_core
from .errors import DigestMismatchError, MdlError
from .placement import RUNTIME_ROLES, layer_role
from .spec import mediatypes as mt
from .store import LayoutStore

_READ_CHUNK = 1 << 20


@dataclass
class Report:
    digest: str
    tags: list[str]
    findings: list[Finding] = field(default_factory=list)
    blobs_checked: int = 0
    bytes_checked: int = 0
    layers_hashed: bool = True  # False when layers were only checked for presence and size (a registry HEAD)
    config_media_type: str | None = None  # the manifest's, once it could be read
    partial: bool = False  # stored partially on purpose (`mdl pull --include`)
    absent: list[dict] = field(default_factory=list)  # a partial model's layers not in the store

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, kind: str, path: str, message: str, document: str = "manifest") -> None:
        self.findings.append(Finding(kind, path, message, document))

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


class PartialModelError(MdlError):
    """A model stored partially (`mdl pull --include`) lacks layers the command needs."""

    kind = "partial-model"

    def __init__(self, reference: str, missing: list[str], needed: str = "to run", hint: str | None = None):
        self.reference, self.missing = reference, missing
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        super().__init__(f"model {reference} was pulled partially (--include) and lacks what it needs {needed}: "
                         f"{shown}", hint or f"pull the whole model: `mdl pull {reference}`")


def refuse_partial(store: LayoutStore, reference: str, digest: str, manifest, needed: str = "to run",
                   roles: frozenset[str] | None = RUNTIME_ROLES) -> None:
    """PartialModelError when the model `digest` is stored partially and lacks a layer of one of
    `roles` (the weights, projector and chat template by default; None: any layer)."""
    if not store.is_partial(digest):
        return
    missing = [d for d in manifest.layers
               if not store.has_blob(d.digest) and (roles is None or layer_role(d) in roles)]
    if missing:
        raise PartialModelError(reference, [_layer_name(manifest, d) for d in missing], needed)


def _layer_name(manifest, desc) -> str:
    path = effective_filepath(desc.annotations or {})
    return path if isinstance(path, str) else f"layer {manifest.layers.index(desc)} ({desc.media_type})"


class HashCache:
    """The outcome of hashing each blob once, shared by the checks of many models (`mdl verify --all`):
    a layer several models share is read once. Keyed by (digest, declared size); `hashed` is every digest
    whose file was read whole, so a store-wide pass can skip it."""

    def __init__(self) -> None:
        self.results: dict[tuple[str, int | None], tuple[str, str] | None] = {}
        self.hashed: set[str] = set()
        self.corrupt: set[str] = set()  # digests whose file's content does not match the name
        self.manifests: dict[str, Manifest] = {}  # manifests already read and verified, by digest


def check_model_in_store(store: LayoutStore, digest: str, *, cache: HashCache | None = None) -> Report:
    report = Report(digest, store.tags_of(digest), partial=store.is_partial(digest))
    manifest = _read_manifest(store, digest, report, cache)
    if manifest is None:
        return report
    with _layer_hashes(store, manifest.layers, cache) as hashed:  # this thread checks the spec meanwhile
        doc = manifest.as_dict()
        report.config_media_type = manifest.config.media_type if manifest.config else None
        config = _read_config(store, manifest, report, cache)
        report.findings += manifest_findings(doc, config)
        if config is not None and manifest.config.media_type in mt.MODEL_CONFIGS:
            report.findings += config_findings(config, manifest.config.media_type, manifest=doc)
        known = hashed()
    _check_layers(store, manifest, report, cache, known)
    return report


def hash_layers(store: LayoutStore, manifests: list, cache: HashCache) -> None:
    """Hash the layers of all `manifests` not in `cache` yet, all at once, into `cache`: checking many
    models then keeps every core busy, not only while one model has several layers left."""
    with _layer_hashes(store, [d for m in manifests for d in m.layers], cache) as hashed:
        for (digest, size), (outcome, corrupt, read_whole) in hashed().items():
            _record(cache, digest, size, outcome, corrupt=corrupt, hashed=read_whole)


@contextmanager
def _layer_hashes(store: LayoutStore, layers: list, cache: HashCache | None) -> Iterator[Callable[[], dict]]:
    """Start hashing the stored `layers` not in `cache`, one per core (hashlib and file reads release the
    GIL), while the caller goes on; the function given waits for their `_hash_layer` outcomes, keyed by
    (digest, size)."""
    todo = {(d.digest, d.size): d for d in layers
            if store.has_blob(d.digest) and (cache is None or (d.digest, d.size) not in cache.results)}
    workers = hash_workers(len(todo))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mdl-verify") as pool:
        futures = {key: pool.submit(_hash_layer, store, d, spare_core(workers)) for key, d in todo.items()}
        try:
            yield lambda: {key: future.result() for key, future in futures.items()}
        except BaseException:  # e.g. Ctrl-C: drop the layers not started (a running hash still finishes)
            for future in futures.values():
                future.cancel()
            raise


def _read_manifest(store: LayoutStore, digest: str, report: Report, cache: HashCache | None = None):
    manifest = cache.manifests.get(digest) if cache is not None else None
    if manifest is None:
        manifest = _read_manifest_blob(store, digest, report, cache)
        if manifest is None:
            return None
    _record(cache, digest, None, None)
    report.blobs_checked += 1
    report.bytes_checked += len(manifest.raw)
    return manifest


def _read_manifest_blob(store: LayoutStore, digest: str, report: Report, cache: HashCache | None):
    if not store.has_blob(digest):
        report.add("blob-missing", "$", f"manifest blob {digest} is missing from the store")
        return None
    try:
        return store.manifest(digest)
    except DigestMismatchError as e:
        report.add("digest-mismatch", "$", e.message)
        _record(cache, digest, None, ("digest-mismatch", e.message), corrupt=True)
    except MdlError as e:
        report.add("manifest-invalid", "$", e.message)
        _record(cache, digest, None, None, hashed=False)
    return None


def _record(cache: HashCache | None, digest: str, size: int | None, outcome: tuple[str, str] | None, *,
            corrupt: bool = False, hashed: bool = True) -> None:
    if cache is None:
        return
    cache.results[(digest, size)] = outcome
    if hashed:
        cache.hashed.add(digest)
    if corrupt:
        cache.corrupt.add(digest)


def _corrupt(store: LayoutStore, digest: str, e: DigestMismatchError) -> bool:
    """Whether the blob file's content does not match its name (not merely its declared size)."""
    if e.actual.startswith("sha256:"):
        return True
    return not blob_matches_name(store, digest)


def blob_matches_name(store: LayoutStore, digest: str) -> bool:
    """Whether the blob file hashes to its name; True when it is gone or unreadable (not known corrupt)."""
    try:
        with store.open_blob(digest) as f:
            f.drain()
    except DigestMismatchError:
        return False
    except MdlError:
        return True  # gone or unreadable: not known to be corrupt
    return True


def _read_config(store: LayoutStore, manifest, report: Report, cache: HashCache | None = None):
    desc = manifest.config
    raw = _read_small_blob(store, desc.digest, desc.size, "$.config", "config", report, cache)
    if raw is None:
        return None
    try:
        config = json.loads(raw)
    except ValueError as e:
        report.add("config-invalid", "$.config", f"config blob is not JSON: {e}")
        return None
    return config


def _read_small_blob(store: LayoutStore, digest: str, size: int, path: str, what: str, report: Report,
                     cache: HashCache | None = None):
    if not store.has_blob(digest):
        report.add("blob-missing", path, f"{what} blob {digest} is missing from the store")
        return None
    try:
        data = store.read_blob(digest, size)
    except DigestMismatchError as e:
        report.add("digest-mismatch", path, e.message)
        _record(cache, digest, size, ("digest-mismatch", e.message), corrupt=_corrupt(store, digest, e))
        return None
    except MdlError as e:
        report.add("blob-unreadable", path, e.message)
        _record(cache, digest, size, ("blob-unreadable", e.message), hashed=False)
        return None
    _record(cache, digest, size, None)
    report.blobs_checked += 1
    report.bytes_checked += len(data)
    return data


def _check_layers(store: LayoutStore, manifest, report: Report, cache: HashCache | None,
                  known: dict[tuple[str, int], tuple[tuple[str, str] | None, bool, bool]]) -> None:
    """Each layer present and matching its digest, reported in manifest order; `known` holds the outcomes
    of the layers hashed now (`_hash_layer`), the others are in `cache`."""
    for i, layer in enumerate(manifest.layers):
        path = f"$.layers[{i}]"
        key = (layer.digest, layer.size)
        if not store.has_blob(layer.digest):
            if report.partial:  # left out on purpose: reported, not a finding
                report.absent.append({"path": path, "digest": layer.digest, "size": layer.size,
                                      "file": _layer_name(manifest, layer)})
            else:
                report.add("blob-missing", path, f"layer blob {layer.digest} is missing from the store")
            continue
        if key in known:
            outcome, corrupt, hashed = known[key]
            _record(cache, layer.digest, layer.size, outcome, corrupt=corrupt, hashed=hashed)
        else:
            outcome = cache.results[key] if cache is not None else None
        if outcome is not None:
            report.add(outcome[0], path, outcome[1])
            continue
        report.blobs_checked += 1
        report.bytes_checked += layer.size


def _hash_layer(store: LayoutStore, layer, ahead: bool) -> tuple[tuple[str, str] | None, bool, bool]:
    """(finding or None, whether the file's content does not match its name, whether it was read whole)."""
    try:
        with store.open_blob(layer.digest, layer.size) as f:
            f.drain(ahead=ahead)
    except DigestMismatchError as e:
        return ("digest-mismatch", e.message), _corrupt(store, layer.digest, e), True
    except (OSError, MdlError) as e:
        return ("blob-unreadable", f"layer blob {layer.digest}: {getattr(e, 'strerror', None) or e}"), False, False
    return None, False, True


# ---------------------------------------------------------------------------------------------
# a model where it lies (a registry, an OCI layout), without storing it


def check_model_in_source(source, reference: str, *, deep: bool = False) -> Report:
    """Check the model `reference` names in `source` (a `RemoteRepository` or a `LayoutDir`) in place:
    the manifest (verified as fetched) and config against every rule, and each layer present at its
    declared size; `deep` also streams and hashes every layer, keeping nothing (memory stays flat).
    Errors reaching the source itself (unreachable, denied, not found) are raised, not reported."""
    manifest = source.fetch_manifest(reference)
    report = Report(manifest.digest, [reference], layers_hashed=deep,
                    config_media_type=manifest.config.media_type if manifest.config else None)
    report.blobs_checked += 1
    report.bytes_checked += len(manifest.raw)
    doc = manifest.as_dict()
    config = None
    if manifest.config is not None:
        try:
            config = json.loads(read_small_blob(source, manifest.config))
            report.blobs_checked += 1
            report.bytes_checked += manifest.config.size
        except DigestMismatchError as e:
            report.add("digest-mismatch", "$.config", e.message)
        except ValueError as e:
            report.add("config-invalid", "$.config", f"config blob is not JSON: {e}")
        except MdlError as e:
            report.add("blob-missing" if e.kind in ("not-found", "blob-missing", "layout") else "blob-unreadable",
                       "$.config", f"config blob {manifest.config.digest}: {e.message}")
    report.findings += manifest_findings(doc, config)
    if isinstance(config, dict) and manifest.config.media_type in mt.MODEL_CONFIGS:
        report.findings += config_findings(config, manifest.config.media_type, manifest=doc)
    for i, layer in enumerate(manifest.layers):
        _check_source_layer(source, layer, f"$.layers[{i}]", report, deep)
    return report


def _check_source_layer(source, layer, path: str, report: Report, deep: bool) -> None:
    size = source.blob_size(layer.digest)
    if size is None:
        report.add("blob-missing", path, f"layer blob {layer.digest} is missing")
        return
    if size not in (layer.size, -1):
        report.add("size-mismatch", path, f"layer blob {layer.digest} is {size} bytes, the manifest says {layer.size}")
        return
    if deep:
        try:
            stream, _ = source.open_blob(layer, 0)
            try:
                actual, actual_size = hash_stream(stream, _READ_CHUNK)
            finally:
                stream.close()
        except (OSError, MdlError) as e:
            report.add("blob-unreadable", path, f"layer blob {layer.digest}: {getattr(e, 'message', None) or e}")
            return
        if (actual, actual_size) != (layer.digest, layer.size):
            report.add("digest-mismatch", path,
                       DigestMismatchError("layer blob", layer.digest, actual, layer.size, actual_size).message)
            return
        report.bytes_checked += layer.size
    report.blobs_checked += 1
