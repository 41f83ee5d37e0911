"""cosign's encrypted private key (`cosign generate-key-pair`), read so `mdl sign --key cosign.key` works.

The PEM block `ENCRYPTED SIGSTORE PRIVATE KEY` (older cosign: `ENCRYPTED COSIGN PRIVATE KEY`) holds
JSON (go-securesystemslib `encrypted`): `kdf` scrypt (`N`, `r`, `p`, base64 `salt`) derives a 32-byte
key from the passphrase; `cipher` `nacl/secretbox` (XSalsa20-Poly1305, base64 24-byte `nonce`) seals
the PKCS#8 DER private key as `ciphertext` (base64: the 16-byte Poly1305 tag, then the encrypted bytes).

`cryptography` has scrypt and Poly1305 but not XSalsa20; the stream cipher is a few lines of Salsa20
(D. J. Bernstein, "The Salsa20 family of stream ciphers"; XSalsa20: "Extending the Salsa20 nonce"),
fast enough for a key of a few hundred bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct

PEM_LABELS = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
# The scrypt strengths go-securesystemslib writes (legacy, standard, OWASP); anything else is refused
# rather than run (a hostile file could ask for any amount of memory).
_SCRYPT_PARAMS = {(32768, 8, 1), (65536, 8, 1), (131072, 8, 1)}
_SIGMA = struct.unpack("<4I", b"expand 32-byte k")
_MASK = 0xFFFFFFFF


class CosignKeyError(ValueError):
    """The file is not a cosign encrypted key this module reads (the message says why)."""


class WrongPassphrase(ValueError):
    """The Poly1305 tag does not match: wrong passphrase (or a damaged file)."""


def is_cosign_key(pem: bytes) -> bool:
    return any(f"-----BEGIN {label}-----".encode() in pem for label in PEM_LABELS)


def _rotl(v: int, c: int) -> int:
    return ((v << c) & _MASK) | (v >> (32 - c))


def _rounds(x: list[int]) -> list[int]:
    """The 20 Salsa20 rounds (10 double rounds) over the 16-word state, in place."""
    def qr(a: int, b: int, c: int, d: int) -> None:
        x[b] ^= _rotl((x[a] + x[d]) & _MASK, 7)
        x[c] ^= _rotl((x[b] + x[a]) & _MASK, 9)
        x[d] ^= _rotl((x[c] + x[b]) & _MASK, 13)
        x[a] ^= _rotl((x[d] + x[c]) & _MASK, 18)
    for _ in range(10):
        qr(0, 4, 8, 12), qr(5, 9, 13, 1), qr(10, 14, 2, 6), qr(15, 3, 7, 11)  # columns
        qr(0, 1, 2, 3), qr(5, 6, 7, 4), qr(10, 11, 8, 9), qr(15, 12, 13, 14)  # rows
    return x


def _state(key: bytes, sixteen: bytes) -> list[int]:
    k = struct.unpack("<8I", key)
    n = struct.unpack("<4I", sixteen)
    return [_SIGMA[0], *k[:4], _SIGMA[1], *n, _SIGMA[2], *k[4:], _SIGMA[3]]


def _hsalsa20(key: bytes, nonce16: bytes) -> bytes:
    x = _rounds(_state(key, nonce16))
    return struct.pack("<8I", *(x[i] for i in (0, 5, 10, 15, 6, 7, 8, 9)))


def _salsa20_stream(key: bytes, nonce8: bytes, length: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < length:
        init = _state(key, nonce8 + struct.pack("<Q", counter))
        x = _rounds(list(init))
        out += struct.pack("<16I", *(((a + b) & _MASK) for a, b in zip(x, init)))
        counter += 1
    return bytes(out[:length])


def secretbox_open(box: bytes, nonce: bytes, key: bytes) -> bytes:
    """NaCl `crypto_secretbox_open`: the plaintext of `box` (tag || ciphertext), or WrongPassphrase."""
    from cryptography.hazmat.primitives.poly1305 import Poly1305  # loaded only to read a key (keys.py says why)
    if len(key) != 32 or len(nonce) != 24 or len(box) < 16:
        raise CosignKeyError("a secretbox needs a 32-byte key, a 24-byte nonce and a 16-byte tag")
    subkey = _hsalsa20(key, nonce[:16])
    stream = _salsa20_stream(subkey, nonce[16:], 32 + len(box) - 16)
    tag, ciphertext = box[:16], box[16:]
    expected = Poly1305.generate_tag(stream[:32], ciphertext)
    if not hmac.compare_digest(expected, tag):
        raise WrongPassphrase("the key does not open the box")
    return bytes(c ^ s for c, s in zip(ciphertext, stream[32:]))


def _pem_body(pem: bytes) -> bytes:
    text = pem.decode("ascii", "replace")
    for label in PEM_LABELS:
        begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
        if begin in text and end in text:
            body = text.split(begin, 1)[1].split(end, 1)[0]
            try:
                return base64.b64decode("".join(body.split()), validate=True)
            except ValueError:
                raise CosignKeyError("the PEM body is not base64") from None
    raise CosignKeyError("no ENCRYPTED SIGSTORE PRIVATE KEY block")


def decrypt(pem: bytes, passphrase: bytes) -> bytes:
    """The PKCS#8 DER private key sealed in a cosign key file. An empty passphrase is a passphrase
    (`cosign generate-key-pair` with COSIGN_PASSWORD="")."""
    try:
        doc = json.loads(_pem_body(pem))
        kdf, cipher = doc["kdf"], doc["cipher"]
        params = (int(kdf["params"]["N"]), int(kdf["params"]["r"]), int(kdf["params"]["p"]))
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(cipher["nonce"], validate=True)
        box = base64.b64decode(doc["ciphertext"], validate=True)
    except (ValueError, KeyError, TypeError) as e:
        raise CosignKeyError(f"not cosign's encrypted key JSON ({e.__class__.__name__}: {e})") from None
    if kdf.get("name") != "scrypt" or cipher.get("name") != "nacl/secretbox":
        raise CosignKeyError(f"kdf {kdf.get('name')!r} / cipher {cipher.get('name')!r}, not scrypt / nacl/secretbox")
    if params not in _SCRYPT_PARAMS:
        raise CosignKeyError(f"unsupported scrypt parameters N={params[0]} r={params[1]} p={params[2]}")
    n, r, p = params
    key = hashlib.scrypt(passphrase, salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + (1 << 20), dklen=32)
    return secretbox_open(box, nonce, key)
