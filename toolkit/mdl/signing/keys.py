"""ECDSA P-256 keys: generate a pair, load one (refusing a private key others can read; PKCS#8 PEM as
`mdl keygen` writes it, or cosign's encrypted key from `cosign generate-key-pair`), and sign or check
bytes with it (SHA-256, signatures base64 as cosign writes them). `public_key_hint` is the key id a
Sigstore bundle names its key by.

`cryptography` is imported inside the functions: every `mdl` command imports this module (the CLI
registers `keygen`), and only the signing ones should pay for loading it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path
from typing import Callable

from ..errors import ConflictError, InputPathError
from . import cosign_key
from .errors import BadPassphraseError, KeyFormatError, KeyPermissionsError


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
    if cosign_key.is_cosign_key(data):
        key = _load_cosign_key(name, data, password)
        _check_curve(key, name)
        return key
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


def _load_cosign_key(name: str, data: bytes, password: Callable[[], bytes | None]):
    """A key `cosign generate-key-pair` wrote; its passphrase may be empty, as cosign allows."""
    from cryptography.hazmat.primitives import serialization
    pw = password()
    if pw is None:
        raise BadPassphraseError(name, "the key is encrypted and no passphrase was given")
    try:
        der = cosign_key.decrypt(data, pw)
    except cosign_key.WrongPassphrase:
        raise BadPassphraseError(name) from None
    except cosign_key.CosignKeyError as e:
        raise KeyFormatError(name, f"not a cosign encrypted key this tool reads: {e}") from None
    try:
        return serialization.load_der_private_key(der, None)
    except (ValueError, TypeError) as e:
        raise KeyFormatError(name, f"the decrypted cosign key is not PKCS#8 ({str(e).splitlines()[0][:80]})") from None


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


def public_key_der(public_key) -> bytes:
    """The DER SubjectPublicKeyInfo of `public_key`."""
    from cryptography.hazmat.primitives import serialization
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_pem(public_key) -> bytes:
    """The PEM SubjectPublicKeyInfo of `public_key`, as `mdl keygen` (and cryptography) writes it."""
    from cryptography.hazmat.primitives import serialization
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_hint(public_key) -> str:
    """cosign's key id in a bundle (`verificationMaterial.publicKey.hint`, as sigstore-go writes it):
    base64 of the SHA-256 of the DER SubjectPublicKeyInfo."""
    return base64.b64encode(hashlib.sha256(public_key_der(public_key)).digest()).decode("ascii")


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
