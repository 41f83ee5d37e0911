"""Errors a registry exchange can end in, each naming the registry and what to do.

The OCI distribution spec (v1.1, "Error Codes") has registries answer failures with a JSON body
`{"errors": [{"code", "message", "detail"}]}`; `RegistryError` carries the first code and message.
No message ever contains credentials or tokens: they are built from hosts, references and codes only.
"""

from __future__ import annotations

from ..errors import MdlError


class RegistryUnreachableError(MdlError):
    """Connection refused, DNS failure or timeouts, after the retries ran out."""

    kind = "unreachable"

    def __init__(self, registry: str, problem: str):
        self.registry = registry
        self.problem = problem
        super().__init__(
            f"cannot reach registry {registry}: {problem}",
            "check the registry address and your network; for a registry served over plain HTTP "
            "pass --plain-http",
        )


class AuthenticationError(MdlError):
    """401: no credentials, or the registry refused them."""

    kind = "auth"

    def __init__(self, registry: str, problem: str | None = None):
        self.registry = registry
        self.problem = problem
        detail = f" ({problem})" if problem else ""
        super().__init__(
            f"authentication required for {registry}; run mdl login {registry}{detail}",
            f"run `mdl login {registry}`, or set MDL_REGISTRY_USERNAME and MDL_REGISTRY_PASSWORD",
        )


class PermissionDeniedError(MdlError):
    """403: the credentials are valid but do not allow this."""

    kind = "denied"

    def __init__(self, registry: str, what: str):
        self.registry = registry
        self.what = what
        super().__init__(
            f"permission denied by {registry} for {what}",
            "check that your account may access this repository (`mdl login` with another account?)",
        )


class RemoteNotFoundError(MdlError):
    """The repository, tag, manifest or blob is unknown to the registry."""

    kind = "not-found"

    def __init__(self, reference: str, code: str | None = None):
        self.reference = reference
        self.code = code
        why = f" ({code})" if code else ""
        super().__init__(
            f"{reference} not found{why}",
            "check the repository name and tag; `mdl` lists tags with the registry's tag list",
        )


class RegistryError(MdlError):
    """Any other 4xx/5xx: `status` and the registry's own error `code` and `message` (may be None)."""

    kind = "registry"

    def __init__(self, registry: str, what: str, status: int | None, code: str | None = None,
                 detail: str | None = None, hint: str | None = None):
        self.registry = registry
        self.what = what
        self.status = status
        self.code = code
        self.detail = detail
        parts = []
        if status is not None:
            parts.append(f"HTTP {status}")
        if code:
            parts.append(code)
        text = f"registry {registry} refused {what}"
        if parts:
            text += f": {' '.join(parts)}"
        if detail:
            text += f": {detail}"
        super().__init__(text, hint or _hint_for(code, status))


def _hint_for(code: str | None, status: int | None) -> str:
    if code == "NAME_INVALID":
        return "repository names are lowercase components [a-z0-9] separated by '.', '_', '__', '-' and '/'"
    if code in ("DIGEST_INVALID", "SIZE_INVALID", "BLOB_UPLOAD_INVALID"):
        return "the upload was damaged or out of order; run the command again"
    if code == "TOOMANYREQUESTS" or status == 429:
        return "the registry is rate limiting; wait and try again (logging in may raise the limit)"
    if code == "UNSUPPORTED":
        return "this registry does not support the operation"
    if status is not None and status >= 500:
        return "the registry failed; try again later"
    return "see the registry's message above; run with --debug to see the HTTP exchange"


class TLSVerificationError(MdlError):
    """The registry's certificate could not be verified."""

    kind = "tls"

    def __init__(self, registry: str, problem: str):
        self.registry = registry
        self.problem = problem
        super().__init__(
            f"TLS certificate of {registry} could not be verified: {problem}",
            "pass --ca-file with the CA that signed the registry's certificate "
            "(or --plain-http if it serves HTTP)",
        )


class ManifestTooLargeError(MdlError):
    kind = "manifest-too-large"

    def __init__(self, reference: str, size: int | None, limit: int):
        self.reference = reference
        self.size = size
        self.limit = limit
        got = f"{size} bytes" if size is not None else "more bytes"
        super().__init__(
            f"manifest {reference} is too large: {got}, over the {limit}-byte limit",
            "a model manifest is a few KiB; check that the reference names a model",
        )
