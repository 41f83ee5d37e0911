"""The scheduler: loading, eviction, fairness, reaping (real llama.cpp engines on tiny models)."""

from __future__ import annotations

import threading
import time

import pytest

from mdl.errors import ModelNotFoundError
from mdl.runner import links_dir
from mdl.runner.engine import load_engine
from mdl.runner.resolve import resolve_model
from mdl.runner.scheduler import ModelTooLargeError, Scheduler

pytest.importorskip("llama_cpp")

CHAT = {"messages": [{"role": "user", "content": "hello"}], "temperature": 0, "max_tokens": 3}


class CountingLoader:
    """The real loader, counted (and optionally slowed, to widen a race window)."""

    def __init__(self, delay: float = 0.0):
        self.calls: list[str] = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, resolved, **kw):
        with self.lock:
            self.calls.append(resolved.digest)
        time.sleep(self.delay)
        return load_engine(resolved, **kw)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _sched(store, **kw) -> Scheduler:
    return Scheduler(store, links_dir(store), n_threads=1, **kw)


def _loaded(s: Scheduler) -> set[tuple[str, bool]]:
    return {(i.reference, i.embedding) for i in s.loaded()}


def test_load_once_and_reuse(runner_store):
    s = _sched(runner_store)
    try:
        with s.acquire("ai/tiny") as a:
            assert a.chat(CHAT)["usage"]["completion_tokens"] == 3
            (info,) = s.loaded()
            assert info.in_use and info.reference == "docker.io/ai/tiny:latest" and info.size == a.resolved.size
        with s.acquire("docker.io/ai/tiny:latest") as b:
            assert b is a
        assert s.stats.loads == 1 and s.stats.unloads == 0 and s.stats.load_seconds_total > 0
        assert not s.loaded()[0].in_use
    finally:
        s.close()
    assert s.loaded() == [] and s.stats.unloads == 1


def test_lru_eviction(runner_store):
    s = _sched(runner_store, max_models=1)
    try:
        with s.acquire("ai/tiny"):
            pass
        with s.acquire("ai/tiny-cncf"):
            pass
        assert _loaded(s) == {("docker.io/ai/tiny-cncf:latest", False)}
        assert (s.stats.loads, s.stats.unloads) == (2, 1)
    finally:
        s.close()
    s = _sched(runner_store, max_models=2)
    try:
        for ref in ("ai/tiny", "ai/tiny-cncf", "ai/tiny"):  # tiny-cncf is now the least recently used
            with s.acquire(ref):
                pass
        with s.acquire("ai/tiny-sharded"):
            pass
        assert _loaded(s) == {("docker.io/ai/tiny:latest", False), ("docker.io/ai/tiny-sharded:latest", False)}
    finally:
        s.close()


def test_embedding_mode_is_a_separate_instance(runner_store):
    s = _sched(runner_store, max_models=2)
    try:
        with s.acquire("ai/tiny") as chat, s.acquire("ai/tiny", embedding=True) as emb:
            assert chat is not emb and emb.embedding and not chat.embedding
            assert len(emb.embed({"input": "hello"})["data"][0]["embedding"]) == 64
        assert _loaded(s) == {("docker.io/ai/tiny:latest", False), ("docker.io/ai/tiny:latest", True)}
    finally:
        s.close()


def test_requests_to_one_model_are_served_in_arrival_order(runner_store):
    s = _sched(runner_store)
    order: list[int] = []
    active = []
    overlap = []

    def worker(i: int) -> None:
        with s.acquire("ai/tiny") as engine:
            active.append(i)
            overlap.append(len(active))
            order.append(i)
            engine.chat(CHAT)
            active.remove(i)

    try:
        threads = []
        with s.acquire("ai/tiny"):  # hold the model so the workers queue up, one by one, in order
            for i in range(4):
                t = threading.Thread(target=worker, args=(i,))
                t.start()
                threads.append(t)
                deadline = time.monotonic() + 10
                while s.loaded()[0].waiting != i + 1:
                    assert time.monotonic() < deadline, "worker did not queue"
                    time.sleep(0.002)
        for t in threads:
            t.join(10)
        assert order == [0, 1, 2, 3]
        assert max(overlap) == 1  # one at a time
        assert s.stats.loads == 1
    finally:
        s.close()


def test_concurrent_first_requests_load_once(runner_store):
    loader = CountingLoader(delay=0.2)
    s = _sched(runner_store, loader=loader)
    results = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        with s.acquire("ai/tiny") as engine:
            results.append(engine.chat(CHAT)["choices"][0]["message"]["content"])

    try:
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert len(results) == 4 and len(set(results)) == 1
        assert len(loader.calls) == 1
    finally:
        s.close()


def test_different_models_run_concurrently(runner_store):
    s = _sched(runner_store, max_models=2)
    both = threading.Barrier(2, timeout=10)

    def worker(ref: str, out: list) -> None:
        with s.acquire(ref) as engine:
            both.wait()  # both requests hold their engines at the same time
            out.append(engine.chat(CHAT)["usage"]["completion_tokens"])

    try:
        out: list = []
        threads = [threading.Thread(target=worker, args=(r, out)) for r in ("ai/tiny", "ai/tiny-cncf")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert out == [3, 3]
    finally:
        s.close()


def test_waits_for_a_busy_model_instead_of_failing(runner_store):
    s = _sched(runner_store, max_models=1)
    got = threading.Event()

    def other() -> None:
        with s.acquire("ai/tiny-cncf") as engine:
            engine.chat(CHAT)
            got.set()

    try:
        with s.acquire("ai/tiny"):
            t = threading.Thread(target=other)
            t.start()
            time.sleep(0.3)
            assert not got.is_set()  # no room: it waits while ai/tiny is in use
            assert _loaded(s) == {("docker.io/ai/tiny:latest", False)}
        t.join(20)
        assert got.is_set()
        assert _loaded(s) == {("docker.io/ai/tiny-cncf:latest", False)}
    finally:
        s.close()


def test_memory_budget(runner_store):
    sizes = {}
    for ref in ("ai/tiny", "ai/tiny-cncf", "ai/tiny-embed"):
        sizes[ref] = resolve_model(runner_store, ref, links_dir(runner_store)).size
    budget = sizes["ai/tiny"] + sizes["ai/tiny-cncf"]  # room for two of them, not three
    s = _sched(runner_store, max_models=3, memory_budget=budget)
    try:
        for ref in ("ai/tiny", "ai/tiny-cncf"):
            with s.acquire(ref):
                pass
        assert len(s.loaded()) == 2
        with s.acquire("ai/tiny-embed"):
            pass
        assert _loaded(s) == {("docker.io/ai/tiny-cncf:latest", False), ("docker.io/ai/tiny-embed:latest", False)}
        assert sum(i.size for i in s.loaded()) <= budget
    finally:
        s.close()
    s = _sched(runner_store, memory_budget=1000)
    with pytest.raises(ModelTooLargeError):
        with s.acquire("ai/tiny"):
            pass
    assert s.loaded() == []


def test_idle_reaping(runner_store):
    clock = FakeClock()
    s = _sched(runner_store, max_models=2, idle_timeout=60, clock=clock)
    try:
        with s.acquire("ai/tiny"):
            pass
        clock.now += 30
        with s.acquire("ai/tiny-cncf") as busy:
            assert s.reap_idle() == []
            clock.now += 31  # ai/tiny idle for 61 s; ai/tiny-cncf in use
            digest = s.loaded()[0].digest if s.loaded()[0].reference.endswith("tiny:latest") else None
            reaped = s.reap_idle()
            assert len(reaped) == 1 and (digest is None or reaped == [digest])
            assert _loaded(s) == {("docker.io/ai/tiny-cncf:latest", False)}
            clock.now += 1000
            assert s.reap_idle() == []  # in use: never reaped
            busy.chat(CHAT)
        clock.now += 61
        assert s.reap_idle() == [busy.resolved.digest]
        assert s.loaded() == [] and s.stats.unloads == 2
    finally:
        s.close()


def test_unload(runner_store):
    s = _sched(runner_store)
    try:
        with s.acquire("ai/tiny") as engine:
            digest = engine.resolved.digest
        assert s.unload(digest) is True
        assert s.loaded() == []
        assert s.unload(digest) is False
        with s.acquire("ai/tiny") as engine:  # in use: it goes when the request ends
            assert s.unload(digest) is True
            assert s.loaded()
        assert s.loaded() == []
    finally:
        s.close()


def test_errors_propagate_and_leave_the_scheduler_usable(runner_store):
    calls = []

    def flaky(resolved, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return load_engine(resolved, **kw)

    s = _sched(runner_store, loader=flaky)
    try:
        with pytest.raises(ModelNotFoundError):
            with s.acquire("ai/nope"):
                pass
        with pytest.raises(RuntimeError):
            with s.acquire("ai/tiny"):
                pass
        assert s.loaded() == [] and s.stats.load_failures == 1
        with s.acquire("ai/tiny") as engine:
            assert engine.chat(CHAT)["usage"]["completion_tokens"] == 3
    finally:
        s.close()
