"""Errors a registry exchange can end in, each naming the registry and what to do.

The OCI distribution spec (v1.1, "Error Codes") has registries answer failures with a JSON body
`{"errors": [{"code", "message", "detail"}]}`; `RegistryError` carries the first code and message.
No message ever contains credentials or tokens: they are built from hosts, references and codes only.

`error_for_response` is the one mapping from an unexpected answer (its status and OCI error code) to
these errors; `oci_error` reads an error body for it and for the conformance checks' reasons;
`upload_may_retry` says which of these errors a new upload session may get past.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import MdlError

ERROR_BODY_LIMIT = 64 << 10  # bytes of an error body read: enough for any OCI error document
# The problem of the AuthenticationError for a 401 to a body that cannot be sent again: the header is learnt,
# so a new upload session passes (`upload_may_retry`).
CREDENTIALS_MID_UPLOAD = "the registry asked for credentials mid-upload"


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


def oci_error(body: bytes) -> dict | None:
    """The first entry of an OCI error body (distribution-spec "Error Codes": `{"errors": [{"code", "message",
    "detail"}]}`), None when the body is not one."""
    try:
        first = json.loads(body)["errors"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return first if isinstance(first, dict) else None


def _read_error(resp: Any) -> tuple[str | None, str | None]:
    """The code and message of `resp`'s OCI error body, from a bounded read (which closes `resp`)."""
    try:
        if resp.raw is not None and not resp._content_consumed:
            raw = resp.raw.read(ERROR_BODY_LIMIT, decode_content=True)
        else:
            raw = resp.content[:ERROR_BODY_LIMIT] if resp.content else b""
    except Exception:  # noqa: BLE001 - the body is best effort; the status is what counts
        raw = b""
    finally:
        resp.close()
    first = oci_error(raw)
    if first is None:
        return None, None
    code, message = first.get("code"), first.get("message")
    return code if isinstance(code, str) else None, message if isinstance(message, str) else None


def error_for_response(resp: Any, registry: str, what: str, not_found: str | None = None, *,
                       other_host: str | None = None) -> MdlError:
    """The error for an unexpected answer of `registry` (a requests Response; its body is read, bounded,
    and it is closed). `what` names the operation, `not_found` the thing a 404 means is missing;
    `other_host` is the host that answered when it is not the registry (a redirect or upload target)."""
    code, message = _read_error(resp)
    status = resp.status_code
    if status == 401 and other_host is not None:
        # Credentials go only to the registry's origin, so `mdl login` cannot help: name the host that asked.
        return RegistryError(registry, what, status, code,
                             f"the registry sent it on to {other_host}, which asks for credentials; "
                             f"mdl sends credentials only to {registry}",
                             "a registry may send requests only to hosts that need none of its credentials "
                             "(signed storage URLs); report it to the registry's operator")
    if status == 401:
        return AuthenticationError(registry)
    if status == 403:
        return PermissionDeniedError(registry, what)
    if status == 404 and code != "BLOB_UPLOAD_UNKNOWN":
        return RemoteNotFoundError(not_found or f"{what} on {registry}", code)
    return RegistryError(registry, what, status, code, message)


def upload_may_retry(error: BaseException) -> bool:
    """Whether a new upload session may succeed where this error ended one: the registry was unreachable,
    failed (408, 429, any 5xx), lost or refused the session's bytes, or asked for credentials mid-upload.
    Uploads send their bodies once (`retry=False`), so these answers reach the uploader unretried."""
    if isinstance(error, RegistryUnreachableError):
        return True
    if isinstance(error, AuthenticationError):
        return error.problem == CREDENTIALS_MID_UPLOAD
    if isinstance(error, RegistryError):
        return error.status is None or error.status >= 500 or error.status in (408, 429) or \
            error.code in ("BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID", "DIGEST_INVALID")
    return False
