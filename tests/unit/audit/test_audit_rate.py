"""`mdl audit --rate`: starts spaced 1/rate apart across threads, every request of a client counted."""

from __future__ import annotations

import threading

import pytest

from mdl.audit.rate import RateLimiter, throttle
from mdl.errors import UsageError
from mdl.registry.client import RegistryClient


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.slept: list[float] = []
        self.lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.slept.append(round(seconds, 6))


def test_starts_are_spaced_by_the_interval_the_first_at_once():
    c = FakeClock()
    limiter = RateLimiter(4, clock=c.clock, sleep=c.sleep)
    for _ in range(4):
        limiter.acquire()
    assert c.slept == [0.25, 0.5, 0.75]  # the clock stood still: each waits one interval more
    c.now += 10  # idle for a while: no burst is saved up beyond one start at once
    limiter.acquire()
    limiter.acquire()
    assert c.slept[3:] == [0.25]


def test_threads_share_one_schedule():
    c = FakeClock()
    limiter = RateLimiter(10, clock=c.clock, sleep=c.sleep)
    threads = [threading.Thread(target=limiter.acquire) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(c.slept) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7] and limiter.acquired == 8


@pytest.mark.parametrize("rate", [0, -1.5, float("nan")])
def test_a_rate_must_be_positive(rate):
    with pytest.raises(UsageError, match="--rate"):
        RateLimiter(rate)


class InnerAdapter:
    def __init__(self):
        self.sent = []
        self.closed = False

    def send(self, request, **kwargs):
        self.sent.append(request.url)
        return "response"

    def close(self):
        self.closed = True


def test_throttle_makes_every_request_of_the_client_take_a_start():
    client = RegistryClient("registry.example")
    inner = InnerAdapter()
    for prefix in ("https://", "http://"):
        client.session.mount(prefix, inner)
    c = FakeClock()
    limiter = RateLimiter(2, clock=c.clock, sleep=c.sleep)
    throttle(client, limiter)
    throttle(client, limiter)  # twice: still one start per request
    adapter = client.session.get_adapter("https://registry.example/v2/")
    assert adapter.send(type("R", (), {"url": "https://registry.example/v2/"})()) == "response"
    assert adapter.send(type("R", (), {"url": "http://other/"})()) == "response"
    assert limiter.acquired == 2 and c.slept == [0.5] and len(inner.sent) == 2
    client.close()
    assert inner.closed
