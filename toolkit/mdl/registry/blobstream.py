"""A pulled blob's body as a stream (`RemoteRepository.open_blob`).

It reads straight from the HTTP response, without decoding and without a copy per read; a connection
lost mid-body becomes RegistryUnreachableError `from` its cause, which `mdl.retry.is_transient` counts,
so the reader may reopen the blob at the offset it reached.
"""

from __future__ import annotations

import io
from typing import Any

import requests

from ..errors import MdlError
from .errors import RegistryUnreachableError


class BlobStream(io.RawIOBase):
    """A pulled blob's body: `readinto` straight from the HTTP response (no decoding), `close` closes
    the connection. A connection lost mid-body raises RegistryUnreachableError; the caller may reopen
    at the offset it reached (`open_blob(desc, offset)`)."""

    def __init__(self, response: requests.Response, registry: str, what: str):
        super().__init__()
        self._response = response
        raw = response.raw
        # urllib3's HTTPResponse wraps http.client's; reading the inner one skips a copy per read.
        # Safe here: the body is not content-encoded (Accept-Encoding: identity) and nothing was read yet.
        inner = getattr(raw, "_fp", None)
        self._reader = inner if inner is not None and hasattr(inner, "readinto") else raw
        self._registry = registry
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        try:
            return self._reader.readinto(b) or 0
        except MdlError:
            raise
        except Exception as e:  # OSError, http.client.IncompleteRead, urllib3 errors
            raise RegistryUnreachableError(self._registry, f"connection lost while reading {self._what}") from e

    def close(self) -> None:
        if not self.closed:
            # The connection is closed, never reused: bytes a registry (or a proxy) sent past the declared
            # length may still be on their way, and a reused connection would take them for the answer to
            # the next request. One connection per blob costs little next to the blob.
            self._response.close()
        super().close()
