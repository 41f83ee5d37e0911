"""Signatures in cosign's key-based "simple signing" format (spec/signing.md).

A signature is a payload (JSON naming the model's manifest digest and repository) signed with ECDSA
P-256 over SHA-256 of its exact bytes. The payload is a layer of a signature manifest (an OCI image
manifest, `artifactType` cosign's, `subject` the model) tagged `sha256-<hex>.sig`; each signature is
one layer, so a second key adds a layer. The manifest is also registered as a referrer of the model:
through the referrers API where the registry has one, otherwise in the fallback tag `sha256-<hex>`
(an OCI index, read-modify-write, dead entries dropped).

Verification trusts only the payload bytes and the signature over them: the manifest that carries
them (its `subject`, its tag) is only where to look. The local store keeps signature manifests as
index entries named `<repo>:sha256-<hex>.sig`, so a verified pull can be verified again offline.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .content.descriptor import Descriptor, Manifest, canonical_json, load_json_document
from .content.digest import sha256_bytes
from .errors import DigestMismatchError, MdlError, SchemaViolationError
from .reference import Reference
from .spec import mediatypes as mt
from .spec import schemas

PAYLOAD_TYPE = "cosign container image signature"
PAYLOAD_SCHEMA = "cosign-payload"  # schemas/cosign-payload.schema.json
MAX_PAYLOAD = 1 << 20
SIG_TAG = re.compile(r"sha256-([0-9a-f]{64})\.sig")

# ---------------------------------------------------------------------------------------------
# errors: one kind (and exit code) per way a signature check fails


class SignatureError(MdlError):
    kind = "signature"
    exit_code = 10


class UnsignedError(SignatureError):
    kind = "unsigned"
    exit_code = 10

    def __init__(self, subject: str, digest: str):
        self.subject, self.digest = subject, digest
        super().__init__(f"{subject} ({digest}) has no signature",
                         "sign it with `mdl sign REF --key KEY`; if a tag was signed, check it still names "
                         "the manifest that was signed")


class BadSignatureError(SignatureError):
    kind = "bad-signature"
    exit_code = 11

    def __init__(self, subject: str, digest: str, key: str, count: int):
        self.subject, self.digest, self.key, self.count = subject, digest, key, count
        super().__init__(f"none of the {count} signature(s) of {subject} ({digest}) verifies with the key {key}",
                         "the model was signed with another key, or the signature was altered; "
                         "check you have the signer's public key")


class PayloadDigestMismatchError(DigestMismatchError):
    exit_code = 12

    def __init__(self, expected: str, actual: str):
        super().__init__("signature payload", expected, actual)


class WrongSubjectError(SignatureError):
    kind = "wrong-subject"
    exit_code = 13

    def __init__(self, subject: str, digest: str, problem: str):
        self.subject, self.digest, self.problem = subject, digest, problem
        super().__init__(f"the signature of {subject} is valid but {problem}, not {digest}",
                         "the signature belongs to another model (or the tag moved after signing); "
                         "do not trust this model until it is signed again")


class KeyFormatError(SignatureError):
    kind = "key-format"
    exit_code = 14

    def __init__(self, path: str, problem: str):
        self.path = path
        super().__init__(f"{path}: {problem}",
                         "give an ECDSA P-256 key in PEM: PKCS#8 private key or SubjectPublicKeyInfo public key "
                         "(`mdl keygen` writes both)")


class BadPassphraseError(SignatureError):
    kind = "bad-passphrase"
    exit_code = 15

    def __init__(self, path: str, problem: str = "wrong passphrase"):
        self.path = path
        super().__init__(f"{path}: cannot decrypt the private key: {problem}",
                         "set MDL_KEY_PASSWORD to the key's passphrase, or type it at the prompt")


class KeyPermissionsError(SignatureError):
    kind = "key-permissions"
    exit_code = 16

    def __init__(self, path: str, mode: int):
        self.path, self.mode = path, mode
        super().__init__(f"{path}: private key is readable by others (mode {mode:04o})",
                         f"chmod 600 {path}")


# ---------------------------------------------------------------------------------------------
# keys


def _ec():
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec


def _check_curve(key, path: str) -> None:
    ec = _ec()
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) or \
            not isinstance(key.curve, ec.SECP256R1):
        raise KeyFormatError(path, "not an ECDSA P-256 key")


def generate_keypair(password: bytes | None) -> tuple[bytes, bytes]:
    """(private PKCS#8 PEM, public SubjectPublicKeyInfo PEM) of a new P-256 key."""
    from cryptography.hazmat.primitives import serialization
    ec = _ec()
    key = ec.generate_private_key(ec.SECP256R1())
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def write_keypair(prefix: str | os.PathLike, password: bytes | None) -> tuple[Path, Path]:
    """Write PREFIX.key (mode 0600) and PREFIX.pub; refuse to overwrite either."""
    from .errors import ConflictError
    key_path, pub_path = Path(f"{os.fspath(prefix)}.key"), Path(f"{os.fspath(prefix)}.pub")
    for p in (key_path, pub_path):
        if p.exists():
            raise ConflictError(f"{p} exists", "remove it first, or choose another --output-prefix")
    private, public = generate_keypair(password)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    os.chmod(key_path, 0o600)
    fd = os.open(pub_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(public)
    return key_path, pub_path


def _read_key_file(path: str | os.PathLike) -> bytes:
    from .errors import InputPathError
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputPathError(path, "no such key file") from None
    except OSError as e:
        raise InputPathError(path, f"cannot read the key file: {e.strerror}") from None


def load_private_key(path: str | os.PathLike, password: Callable[[], bytes | None]):
    """The P-256 private key in `path`. Like ssh, refuses a file others can read; `password()` is called
    only when the key is encrypted."""
    from cryptography.hazmat.primitives import serialization
    name = os.fspath(path)
    try:
        mode = stat.S_IMODE(os.stat(name).st_mode)
    except OSError:
        mode = 0
    data = _read_key_file(name)
    if mode & 0o077:
        raise KeyPermissionsError(name, mode)
    if b"SIGSTORE PRIVATE KEY" in data:
        raise KeyFormatError(name, "a cosign-encrypted key (scrypt/secretbox), not PKCS#8 PEM")
    if b"-----BEGIN" not in data or b"PRIVATE KEY-----" not in data:
        raise KeyFormatError(name, "not a PEM private key")
    try:
        key = serialization.load_pem_private_key(data, None)
    except TypeError:  # encrypted
        pw = password()
        if not pw:
            raise BadPassphraseError(name, "the key is encrypted and no passphrase was given") from None
        try:
            key = serialization.load_pem_private_key(data, pw)
        except (ValueError, TypeError):
            raise BadPassphraseError(name) from None
    except (ValueError, Exception) as e:  # noqa: BLE001 - every parser complaint means a bad file
        raise KeyFormatError(name, f"not a valid PEM private key ({str(e).splitlines()[0][:80]})") from None
    _check_curve(key, name)
    return key


def load_public_key(path: str | os.PathLike):
    from cryptography.hazmat.primitives import serialization
    name = os.fspath(path)
    data = _read_key_file(name)
    if b"PRIVATE KEY" in data:
        raise KeyFormatError(name, "a private key; verification needs the public key (.pub)")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, Exception) as e:  # noqa: BLE001
        raise KeyFormatError(name, f"not a valid PEM public key ({str(e).splitlines()[0][:80]})") from None
    _check_curve(key, name)
    return key


# ---------------------------------------------------------------------------------------------
# payload and signature manifest


def make_payload(docker_reference: str, digest: str, annotations: dict[str, str] | None = None) -> bytes:
    doc = {"critical": {"identity": {"docker-reference": docker_reference},
                        "image": {"docker-manifest-digest": digest},
                        "type": PAYLOAD_TYPE},
           "optional": dict(sorted(annotations.items())) if annotations else None}
    return canonical_json(doc)


def sign_payload(key, payload: bytes) -> str:
    from cryptography.hazmat.primitives import hashes
    return base64.b64encode(key.sign(payload, _ec().ECDSA(hashes.SHA256()))).decode("ascii")


def signature_valid(public_key, payload: bytes, signature_b64: str) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    try:
        sig = base64.b64decode(signature_b64, validate=True)
        public_key.verify(sig, payload, _ec().ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def signature_config(layers: list[Descriptor]) -> bytes:
    """The config cosign's signature images carry: an OCI image config whose diff_ids are the payloads."""
    return canonical_json({"architecture": "", "config": {}, "os": "",
                           "rootfs": {"type": "layers", "diff_ids": [d.digest for d in layers]}})


def signature_tag(digest: str) -> str:
    return "sha256-" + digest.split(":", 1)[1] + ".sig"


def fallback_tag(digest: str) -> str:
    return "sha256-" + digest.split(":", 1)[1]


def build_signature_manifest(subject: Descriptor, layers: list[Descriptor]) -> tuple[Manifest, bytes]:
    config = signature_config(layers)
    config_desc = Descriptor(mt.OCI_IMAGE_CONFIG, sha256_bytes(config), len(config))
    manifest = Manifest.build(config_desc, layers, artifact_type=mt.COSIGN_SIGNATURE_ARTIFACT_TYPE,
                              subject=Descriptor(subject.media_type, subject.digest, subject.size))
    return manifest, config


def is_signature_manifest(manifest: Manifest) -> bool:
    return manifest.artifact_type == mt.COSIGN_SIGNATURE_ARTIFACT_TYPE or (
        bool(manifest.layers) and all(d.media_type == mt.COSIGN_SIMPLESIGNING for d in manifest.layers))


# ---------------------------------------------------------------------------------------------
# verification (shared by the registry and the local store)


@dataclass
class Verified:
    subject: str
    digest: str
    signature_manifest: str  # digest of the manifest holding the signature that verified
    payload: dict
    checked: int  # signature layers examined
    manifests: list[Manifest] = field(default_factory=list)  # every signature manifest found

    def as_dict(self) -> dict:
        return {"ok": True, "subject": self.subject, "digest": self.digest,
                "signatureManifest": self.signature_manifest, "checked": self.checked,
                "optional": self.payload.get("optional")}


def check_signatures(subject: str, repository: str, digest: str, manifests: list[Manifest],
                     read_payload: Callable[[Descriptor], bytes], public_key, key_name: str) -> Verified:
    """Pass if any signature layer verifies with `public_key` over a payload naming exactly `digest` and
    `repository`; else raise the error of the signature that came closest (wrong-subject, then
    digest-mismatch, then bad-signature), or UnsignedError when there is none."""
    checked = 0
    failures: list[tuple[int, MdlError]] = []
    for m in manifests:
        for layer in m.layers:
            if layer.media_type != mt.COSIGN_SIMPLESIGNING:
                continue
            checked += 1
            sig = (layer.annotations or {}).get(mt.ANNOTATION_COSIGN_SIGNATURE)
            try:
                payload = read_payload(layer)
            except DigestMismatchError as e:
                failures.append((2, PayloadDigestMismatchError(layer.digest, e.actual)))
                continue
            actual = sha256_bytes(payload)
            if actual != layer.digest:
                failures.append((2, PayloadDigestMismatchError(layer.digest, actual)))
                continue
            if not sig or not signature_valid(public_key, payload, sig):
                failures.append((1, BadSignatureError(subject, digest, key_name, 0)))
                continue
            try:
                doc = load_json_document(payload, "signature payload")
                if schemas.validate(doc, PAYLOAD_SCHEMA):
                    raise KeyError("critical")
                critical = doc["critical"]
                named = critical["image"]["docker-manifest-digest"]
                identity = critical["identity"]["docker-reference"]
                kind = critical["type"]
            except (SchemaViolationError, KeyError, TypeError):
                failures.append((3, WrongSubjectError(subject, digest, "its payload is not a cosign payload")))
                continue
            if kind != PAYLOAD_TYPE:
                failures.append((3, WrongSubjectError(subject, digest, f"its payload type is {kind!r}")))
            elif named != digest:
                failures.append((3, WrongSubjectError(subject, digest, f"it signs {named}")))
            elif identity != repository:
                failures.append((3, WrongSubjectError(subject, digest,
                                                      f"it signs {named} in {identity}, not in {repository}")))
            else:
                return Verified(subject, digest, m.digest, doc, checked, manifests)
    if not failures:
        raise UnsignedError(subject, digest)
    rank, error = max(failures, key=lambda f: f[0])
    if isinstance(error, BadSignatureError):
        error = BadSignatureError(subject, digest, key_name, checked)
    raise error


# ---------------------------------------------------------------------------------------------
# registry side


def _read_remote_blob(repo, desc: Descriptor) -> bytes:
    if desc.size > MAX_PAYLOAD:
        raise PayloadDigestMismatchError(desc.digest, f"(a {desc.size}-byte payload, over the limit)")
    stream, _ = repo.open_blob(desc)
    try:
        data = stream.read(MAX_PAYLOAD + 1)
    finally:
        stream.close()
    return data


def _fetch_optional(repo, reference: str) -> tuple[bytes, str, str] | None:
    from .registry.errors import RemoteNotFoundError
    try:
        return repo.fetch_manifest_bytes(reference)
    except RemoteNotFoundError:
        return None


def _manifest_exists(repo, digest: str) -> bool:
    from .registry.errors import RemoteNotFoundError
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
    got = _fetch_optional(repo, fallback_tag(digest))
    if got is None:
        return []
    try:
        doc = load_json_document(got[0], "referrers fallback index")
        entries = doc.get("manifests") if isinstance(doc, dict) else None
        return [d for d in entries or [] if isinstance(d, dict)]
    except SchemaViolationError:
        return []  # a damaged fallback index is rebuilt


def register_referrer(repo, subject_digest: str, referrer: Descriptor) -> list[str]:
    """Add `referrer` to the fallback index of `subject_digest` when the registry has no referrers API;
    drops entries whose manifests are gone (2.8.2 refuses an index listing one). Returns the pruned digests."""
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
            kept.append(d)
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


class _BytesSource:
    def __init__(self, blobs: dict[str, bytes]):
        self.blobs = blobs

    def open_blob(self, desc: Descriptor, offset: int = 0):
        import io
        return io.BytesIO(self.blobs[desc.digest]), 0


@dataclass
class SignResult:
    reference: str
    digest: str  # the model's manifest digest
    signature_manifest: str
    added: bool  # False: this key had signed this digest already
    pruned: list[str]


def sign_remote(repo, reference: str, key, annotations: dict[str, str] | None = None) -> SignResult:
    """Sign the manifest `reference` (tag or digest) names in `repo`: add a signature layer to its
    `sha256-<hex>.sig` manifest (unless this key signed it already) and register that as a referrer."""
    raw, media_type, digest = repo.fetch_manifest_bytes(reference)
    subject = Descriptor(media_type, digest, len(raw))
    public = key.public_key()
    layers: list[Descriptor] = []
    blobs: dict[str, bytes] = {}
    existing = _fetch_optional(repo, signature_tag(digest))
    if existing is not None:
        old = Manifest.parse(existing[0], existing[2])
        layers = [d for d in old.layers if d.media_type == mt.COSIGN_SIMPLESIGNING]
        for d in layers:
            sig = (d.annotations or {}).get(mt.ANNOTATION_COSIGN_SIGNATURE)
            try:
                payload = _read_remote_blob(repo, d)
            except MdlError:
                continue
            if sha256_bytes(payload) == d.digest and sig and signature_valid(public, payload, sig):
                try:
                    named = json.loads(payload)["critical"]["image"]["docker-manifest-digest"]
                except (ValueError, KeyError, TypeError):
                    continue
                if named == digest:  # this key signed this digest already: nothing to add
                    pruned = register_referrer(repo, digest, old.descriptor())
                    return SignResult(f"{repo.name}@{digest}", digest, old.digest, False, pruned)
    payload = make_payload(repo.name, digest, annotations)
    layer = Descriptor(mt.COSIGN_SIMPLESIGNING, sha256_bytes(payload), len(payload),
                       annotations={mt.ANNOTATION_COSIGN_SIGNATURE: sign_payload(key, payload)})
    layers = [*layers, layer]
    manifest, config = build_signature_manifest(subject, layers)
    blobs[layer.digest] = payload
    blobs[manifest.config.digest] = config
    source = _BytesSource(blobs)
    for d in (layer, manifest.config):
        repo.put_blob(d, source)
    repo.put_manifest_bytes(manifest.raw, mt.OCI_MANIFEST, manifest.digest, [signature_tag(digest)])
    pruned = register_referrer(repo, digest, manifest.descriptor())
    return SignResult(f"{repo.name}@{digest}", digest, manifest.digest, True, pruned)


def find_remote_signatures(repo, digest: str) -> list[Manifest]:
    """Signature manifests of `digest`: from the referrers API, else the fallback index, then the
    `.sig` tag; each fetched by digest (so verified), duplicates dropped."""
    found: dict[str, Manifest] = {}
    descs = referrers_api(repo, digest)
    if descs is None:
        descs = []
        for d in _fallback_entries(repo, digest):
            try:
                descs.append(Descriptor.from_dict(d))
            except SchemaViolationError:
                continue
    for d in descs:
        if d.artifact_type not in (None, mt.COSIGN_SIGNATURE_ARTIFACT_TYPE) or d.digest in found:
            continue
        got = _fetch_optional(repo, d.digest)
        if got is None:
            continue
        try:
            m = Manifest.parse(got[0], d.digest)
        except SchemaViolationError:
            continue
        if is_signature_manifest(m):
            found[m.digest] = m
    got = _fetch_optional(repo, signature_tag(digest))
    if got is not None:
        try:
            m = Manifest.parse(got[0], got[2])
            if m.digest not in found:
                found[m.digest] = m
        except SchemaViolationError:
            pass
    return list(found.values())


def verify_remote(repo, ref: Reference, public_key, key_name: str) -> Verified:
    reference = ref.digest or ref.tag
    raw, _media_type, digest = repo.fetch_manifest_bytes(reference)
    manifests = find_remote_signatures(repo, digest)
    return check_signatures(str(ref), repo.name, digest, manifests,
                            lambda d: _read_remote_blob(repo, d), public_key, key_name)


# ---------------------------------------------------------------------------------------------
# local store side


def store_signatures(store, repo, ref: Reference, verified: Verified) -> str | None:
    """Copy the signature manifest that verified (config, payloads, manifest) from `repo` into the local
    store and name it `<repo>:sha256-<hex>.sig`. Returns its digest."""
    manifest = next((m for m in verified.manifests if m.digest == verified.signature_manifest), None)
    if manifest is None:
        return None
    for d in manifest.blob_descriptors():
        if store.blob_size(d.digest) == d.size:
            continue
        data = _read_remote_blob(repo, d)
        store.write_blob(data, d.digest)
    store.put_manifest(manifest)
    store.add_tag(manifest.digest, Reference(ref.registry, ref.repository, signature_tag(verified.digest), None))
    return manifest.digest


def local_signature_names(store, digest: str) -> list[tuple[str, str]]:
    """(ref name, manifest digest) of the signature entries the store holds for `digest`."""
    tag = signature_tag(digest)
    return [(e.ref_name, e.digest) for e in store.entries()
            if e.ref_name is not None and e.ref_name.endswith(":" + tag)]


def verify_local(store, text: str, digest: str, public_key, key_name: str) -> Verified:
    """Verify `digest` with the signatures stored beside it (see `store_signatures`)."""
    last: MdlError | None = None
    entries = local_signature_names(store, digest)
    for name, sig_digest in entries:
        repository = name[: -len(":" + signature_tag(digest))]
        manifest = store.manifest(sig_digest)
        try:
            return check_signatures(text, repository, digest, [manifest],
                                    lambda d: store.read_blob(d.digest, d.size, MAX_PAYLOAD, what="signature payload"),
                                    public_key, key_name)
        except SignatureError as e:
            last = e
        except DigestMismatchError as e:
            last = e
    if last is not None:
        raise last
    raise UnsignedError(text, digest)
