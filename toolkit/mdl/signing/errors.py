"""The errors of signing and verifying: one kind per way a key or a signature check fails."""

from __future__ import annotations

from ..errors import DigestMismatchError, MdlError


class SignatureError(MdlError):
    kind = "signature"


class UnsignedError(SignatureError):
    kind = "unsigned"

    def __init__(self, subject: str, digest: str, what: str = "signature", hint: str | None = None):
        self.subject, self.digest = subject, digest
        super().__init__(f"{subject} ({digest}) has no {what}",
                         hint or "sign it with `mdl sign REF --key KEY`; if a tag was signed, check it still names "
                                 "the manifest that was signed")


class BadSignatureError(SignatureError):
    kind = "bad-signature"

    def __init__(self, subject: str, digest: str, key: str, count: int):
        self.subject, self.digest, self.key, self.count = subject, digest, key, count
        super().__init__(f"none of the {count} signature(s) of {subject} ({digest}) verifies with the key {key}",
                         "the model was signed with another key, or the signature was altered; "
                         "check you have the signer's public key")


class PayloadDigestMismatchError(DigestMismatchError):
    outcome_kind = "payload-digest-mismatch"

    def __init__(self, expected: str, actual: str):
        super().__init__("signature payload", expected, actual)


class WrongSubjectError(SignatureError):
    kind = "wrong-subject"

    def __init__(self, subject: str, digest: str, problem: str, expected: str | None = None):
        """`problem` says what the signature names; `expected` what it should (the digest by default)."""
        self.subject, self.digest, self.problem = subject, digest, problem
        super().__init__(f"the signature of {subject} is valid but {problem}, not {expected or digest}",
                         "the signature belongs to another model (or the tag moved after signing); "
                         "do not trust this model until it is signed again")


class KeylessSignatureError(SignatureError):
    kind = "keyless-unsupported"

    def __init__(self, subject: str, digest: str):
        self.subject, self.digest = subject, digest
        super().__init__(f"{subject} ({digest}) is signed keyless (a certificate, not a key, in its bundle): "
                         "not supported: key-based only",
                         "verify it with `cosign verify --certificate-identity ... --certificate-oidc-issuer ...`, "
                         "or have it signed with a key (`mdl sign --key`, `cosign sign --key`)")


class KeyFormatError(SignatureError):
    kind = "key-format"

    def __init__(self, path: str, problem: str):
        self.path = path
        super().__init__(f"{path}: {problem}",
                         "give an ECDSA P-256 key in PEM: PKCS#8 private key or SubjectPublicKeyInfo public key "
                         "(`mdl keygen` writes both)")


class BadPassphraseError(SignatureError):
    kind = "bad-passphrase"

    def __init__(self, path: str, problem: str = "wrong passphrase"):
        self.path = path
        super().__init__(f"{path}: cannot decrypt the private key: {problem}",
                         "set MDL_KEY_PASSWORD to the key's passphrase, or type it at the prompt")


class KeyPermissionsError(SignatureError):
    kind = "key-permissions"

    def __init__(self, path: str, mode: int):
        self.path, self.mode = path, mode
        super().__init__(f"{path}: private key is readable by others (mode {mode:04o})",
                         f"chmod 600 {path}")
