"""`mdl push` killed with SIGKILL at seeded random points, 20 runs, against the real registry: the next
push completes and the registry then serves the whole model (pulled back, every byte verified); the local
store, only read, still passes `mdl verify --all` with nothing left in ingest. Kill points are explained
in `killing.py`; a failure names the seed, the run and the delay."""

from __future__ import annotations

import os
import random
import shutil
from collections import Counter

import pytest

from tests.integration.killing import (
    RUNS,
    SEED,
    leftovers,
    mdl_argv,
    median_write_phase,
    next_run,
    push_model,
    run_killed,
    summary,
    with_home,
)


@pytest.fixture(scope="module")
def model(registry, tmp_path_factory):
    return push_model(registry, tmp_path_factory.mktemp("killpush"))


def test_push_killed_at_random_points_then_completes(model, registry, tmp_path):
    from mdl.store import LayoutStore
    from mdl.ops.pull import pull
    from mdl.reference import parse_reference
    from mdl.registry.open import open_repository

    env, home, local, _, digest = model
    rng = random.Random(SEED + 1)
    name = f"test/killpush-{os.getpid()}"
    repos = registry.root / "docker" / "registry" / "v2" / "repositories"

    def push(repo: str) -> list[str]:
        return mdl_argv("push", "--json", local, f"{registry.host}/{name}-{repo}:v1")

    # From the first upload (the repository appears in the registry's storage) to the end of the command.
    t_write = median_write_phase(lambda i: push(f"m{i}"), lambda i: with_home(env, home),
                                  lambda i: repos / f"{name}-m{i}")
    outcomes: Counter = Counter()
    for run in range(RUNS):
        delay = rng.uniform(0, t_write)
        where = f"seed {SEED + 1}, run {run}, killed {delay:.3f} s into the uploads (unkilled: {t_write:.3f} s)"
        killed = run_killed(push(str(run)), with_home(env, home), repos / f"{name}-{run}", delay)
        res = summary(next_run(push(str(run)), with_home(env, home), where))
        assert res["digest"] == digest, where
        kinds = set(res["blobs"].values())
        outcomes["finished" if not killed else "resumed" if "exists" in kinds else "restarted"] += 1
        # the registry serves the whole model (pulled here, every byte verified on the way in)
        ref = parse_reference(f"{registry.host}/{name}-{run}:v1")
        repo = open_repository(ref)
        try:
            got = pull(LayoutStore(tmp_path / f"check{run}"), repo, ref)
        finally:
            repo.client.close()
        assert got.digest == digest and got.fetched == got.size, where
        shutil.rmtree(tmp_path / f"check{run}")
    print(f"seed {SEED + 1}: upload phase {t_write:.3f} s, push outcomes {dict(outcomes)}")
    assert outcomes["resumed"] + outcomes["restarted"] >= RUNS // 2, f"seed {SEED + 1}: {dict(outcomes)}"
    # the local store was only read: still whole, nothing left in ingest
    next_run(mdl_argv("verify", "--all"), with_home(env, home), f"seed {SEED + 1}, after {RUNS} runs")
    assert leftovers(home) == []
