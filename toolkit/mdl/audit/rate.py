"""A cap on the requests per second one client sends, shared by every thread that uses it.

`RateLimiter.acquire()` hands out start times `1/rate` seconds apart (the first at once) and sleeps
until the caller's; `throttle(client, limiter)` makes every HTTP request of a `RegistryClient` take one,
retries, redirects and token requests included, by wrapping the transport adapters of its session.
A 429 and its `Retry-After` stay the client's to honour (`mdl.retry.RetryPolicy`); the cap only spaces
what is sent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from requests.adapters import BaseAdapter

from ..errors import UsageError


class RateLimiter:
    """At most `rate` starts per second, for all threads together; `clock` and `sleep` for tests."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if not rate > 0:
            raise UsageError(f"--rate {rate!r} is not a positive number of requests per second",
                             "e.g. --rate 20, or leave it out for no cap")
        self.interval = 1.0 / rate
        self._clock, self._sleep = clock, sleep
        self._next: float | None = None
        self._lock = threading.Lock()
        self.acquired = 0

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            start = now if self._next is None else max(now, self._next)
            self._next = start + self.interval
            self.acquired += 1
        if start > now:
            self._sleep(start - now)


class _LimitedAdapter(BaseAdapter):
    """A transport adapter that takes a start from `limiter` before each request it sends."""

    def __init__(self, inner: BaseAdapter, limiter: RateLimiter):
        super().__init__()
        self.inner, self.limiter = inner, limiter

    def send(self, request, **kwargs):
        self.limiter.acquire()
        return self.inner.send(request, **kwargs)

    def close(self) -> None:
        self.inner.close()


def throttle(client, limiter: RateLimiter) -> None:
    """Make every request `client` (a RegistryClient) sends wait for `limiter`."""
    session = client.session
    for prefix in ("https://", "http://"):
        adapter = session.get_adapter(prefix)
        if not isinstance(adapter, _LimitedAdapter):
            session.mount(prefix, _LimitedAdapter(adapter, limiter))
