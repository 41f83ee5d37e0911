"""OpenSSF model signing (`model-signing` on PyPI, sigstore/model-transparency), key-based, over a
model's files as `mdl extract` writes them (spec/signing.md §11).

The statement lists every file (`resources`: its relative path, `sha256`, the hex digest of its bytes,
which for a model artifact is the layer digest: layers are files, never compressed) and has one
subject, the model's name with the sha256 over the listed digests' bytes, concatenated in the order
listed. The serialization is `files`, sha256, no symlinks, ignoring `model.sig`, so `model_signing
verify key DIR --signature DIR/model.sig --public_key KEY.pub` hashes exactly the files extracted.
The bundle names its key by model signing's own hint: the hex SHA-256 of the public key's PEM.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePosixPath

from ..content.descriptor import Manifest, canonical_json
from ..errors import SchemaViolationError, UsageError
from ..placement import place
from .bundle import MODEL_SIGNING_PREDICATE, STATEMENT_TYPE, Bundle, sign_bundle
from .keys import public_key_pem

SIGNATURE_FILE = "model.sig"


def model_signing_hint(public_key) -> str:
    """model signing's key id: hex SHA-256 of the PEM SubjectPublicKeyInfo (its verifier compares it)."""
    return hashlib.sha256(public_key_pem(public_key)).hexdigest()


def resources(manifest: Manifest, where: str) -> list[tuple[str, str]]:
    """(path, sha256 hex) of every file of the model, in model signing's order (by path components).
    Refuses a model with an archive layer (its files are not the layers) or a file named model.sig."""
    out = []
    for p in place(manifest, where):
        if p.archive:
            raise UsageError(f"{where}: {p.describe()} is an archive; model signing lists files, one per layer",
                             "sign this model with the cosign forms only (drop --model-signing)")
        if p.path == SIGNATURE_FILE:
            raise UsageError(f"{where}: {p.describe()} is named {SIGNATURE_FILE}, the signature's own name",
                             "repackage the model with another name for that file")
        out.append((p.path, p.desc.digest.split(":", 1)[1]))
    return sorted(out, key=lambda r: PurePosixPath(r[0]).parts)


def model_statement(name: str, files: list[tuple[str, str]]) -> bytes:
    root = hashlib.sha256(b"".join(bytes.fromhex(d) for _, d in files)).hexdigest()
    return canonical_json({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": root}}],
        "predicateType": MODEL_SIGNING_PREDICATE,
        "predicate": {
            "serialization": {"method": "files", "hash_type": "sha256", "allow_symlinks": False,
                              "ignore_paths": [SIGNATURE_FILE]},
            "resources": [{"name": n, "algorithm": "sha256", "digest": d} for n, d in files],
        },
    })


def sign_model_files(key, name: str, files: list[tuple[str, str]]) -> bytes:
    """The model-signing bundle (`model.sig`'s bytes) over `files`, signed with `key`."""
    return sign_bundle(key, model_statement(name, files), model_signing_hint(key.public_key()))


def signs_files(bundle: Bundle, public_key, files: list[tuple[str, str]]) -> bool:
    """Whether `bundle` is a model signature by `public_key` over exactly `files` (so signing again
    would add nothing)."""
    if bundle.keyless or not bundle.verifies_with(public_key):
        return False
    try:
        statement = bundle.statement()
        listed = statement["predicate"]["resources"]
        return statement.get("predicateType") == MODEL_SIGNING_PREDICATE and \
            sorted((r["name"], r["digest"]) for r in listed) == sorted(files)
    except (KeyError, TypeError, ValueError, SchemaViolationError):
        return False
