"""When to try again: one rule for which failures are transient, one policy for how long to wait.

`is_transient` is the rule every retry loop asks: a broken connection or stream (reset, timeout, a body
cut short) is worth another try; an HTTP status is not, since whoever mapped it to an error already
decided. `RetryPolicy` is how a loop waits: exponential backoff with full jitter (capped), a server's
`Retry-After` honoured up to a cap, and a bound on retries and on the total time of one operation.
requests and urllib3 are imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

import email.utils
import functools
import http.client
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import MdlError

_CAUSE_DEPTH = 8  # how far down a chain of `raise ... from` an error is followed


@functools.cache
def _low_level_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(errors that mean "the connection or stream broke", errors that look like them but are not)."""
    import requests.exceptions as rq
    import urllib3.exceptions as u3

    broken = (OSError, http.client.HTTPException, u3.ProtocolError, u3.ReadTimeoutError, u3.DecodeError,
              rq.ChunkedEncodingError, rq.ConnectionError, rq.ContentDecodingError)
    # requests' errors are OSErrors: these four are answers or caller mistakes, not broken connections.
    never = (rq.HTTPError, rq.InvalidURL, rq.InvalidHeader, rq.MissingSchema)
    return broken, never


def is_transient(error: BaseException | None, *, also: Callable[[BaseException], bool] | None = None) -> bool:
    """A failure worth trying again: connection reset, timeout, truncated body; not an HTTP status.

    An error counts when it says so (`transient = True`), when it is a low-level error of the kinds above,
    or when it is an mdl error raised `from` such an error (a connection lost mid-body is wrapped in
    RegistryUnreachableError `from` its cause). `also` adds what counts for one caller only: an upload
    that starts a new session retries registry answers (5xx, a lost session) a download must not retry."""
    broken, never = _low_level_errors()
    for _ in range(_CAUSE_DEPTH):
        if error is None:
            return False
        if getattr(error, "transient", False) or (also is not None and also(error)):
            return True
        if not isinstance(error, MdlError):
            return isinstance(error, broken) and not isinstance(error, never)
        error = error.__cause__
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long one operation is tried again.

    `retries`: tries after the first. The n-th retry waits a random time up to
    `min(backoff_cap, backoff_base * 2**n)` ("full jitter"), or what the server's `Retry-After` asks, at
    most `retry_after_cap`; no retry starts when it would end after `budget` seconds of the operation."""

    retries: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    retry_after_cap: float = 60.0
    budget: float = 300.0

    def backoff(self, retry: int) -> float:
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * (2 ** retry)))

    def retry_after(self, value: str | None) -> float | None:
        """The seconds a `Retry-After` value (seconds or an HTTP-date) asks for, capped; None when absent
        or unreadable."""
        if not value:
            return None
        value = value.strip()
        if value.isdigit():
            return min(float(value), self.retry_after_cap)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        return min(max(when.timestamp() - time.time(), 0.0), self.retry_after_cap)

    def start(self) -> Attempts:
        """The bookkeeping of one operation, its clock started now."""
        return Attempts(self)


class Attempts:
    """One operation under a `RetryPolicy`: how many retries it made and how long it has run."""

    def __init__(self, policy: RetryPolicy):
        self.policy = policy
        self.started = time.monotonic()
        self.retries = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def delay(self, retry_after: float | None = None) -> float:
        """The wait before the next try: the server's `retry_after` when it gave one, else the backoff."""
        return self.policy.backoff(self.retries) if retry_after is None else retry_after

    def allows(self, delay: float) -> bool:
        """Whether one more try, after waiting `delay`, stays within the retry count and the budget."""
        return self.retries < self.policy.retries and self.elapsed() + delay <= self.policy.budget

    def wait(self, delay: float, sleep: Callable[[float], None] = time.sleep) -> None:
        """Sleep `delay` before the next try, and count it."""
        sleep(delay)
        self.retries += 1
