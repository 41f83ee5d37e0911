"""`mdl pull` killed with SIGKILL at seeded random points, 20 runs, against the real registry: the next
run completes, fetching exactly what the killed one had not kept, `mdl verify --all` passes, no stale
lock blocks it, and nothing is left in the store's ingest area or beside index.json. Kill points are
explained in `killing.py`; a failure names the seed, the run, the delay and where the kill landed.
(`mdl push` killed: test_kill_push.py.)"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter

import pytest

from tests.integration.killing import (
    RUNS,
    SEED,
    kept_bytes,
    leftovers,
    mdl_argv,
    median_write_phase,
    next_run,
    phase,
    push_model,
    run_killed,
    summary,
    with_home,
)


@pytest.fixture(scope="module")
def model(registry, tmp_path_factory):
    return push_model(registry, tmp_path_factory.mktemp("kill"))


def test_pull_killed_at_random_points_then_completes(model, tmp_path):
    env, src_home, _, target, digest = model
    rng = random.Random(SEED)
    pull = mdl_argv("pull", "--json", target)
    verify = mdl_argv("verify", "--all")
    # From the store's creation (the manifest is fetched and checked by then) to the end of the command:
    # config and layers move, the manifest and the index are written.
    t_write = median_write_phase(lambda i: pull, lambda i: with_home(env, tmp_path / f"measure{i}"),
                                  lambda i: tmp_path / f"measure{i}" / "ingest")
    manifest = json.loads((src_home / "blobs" / "sha256" / digest.split(":")[1]).read_bytes())
    blobs = [manifest["config"]["digest"], *(d["digest"] for d in manifest["layers"])]
    phases: Counter = Counter()
    for run in range(RUNS):
        home = tmp_path / f"run{run}"
        delay = rng.uniform(0, t_write)
        where = f"seed {SEED}, run {run}, killed {delay:.3f} s into the write phase (unkilled: {t_write:.3f} s)"
        killed = run_killed(pull, with_home(env, home), home / "ingest", delay)
        landed = phase(home) if killed else "finished"
        phases[landed] += 1
        kept = kept_bytes(home, blobs)
        where += f", kill landed in phase {landed!r} with {kept} bytes kept"

        res = summary(next_run(pull, with_home(env, home), where))
        assert res["digest"] == digest, where
        # Resumed: nothing the killed run kept moved again, except a partial config, which is small
        # and read whole (only layers resume).
        refetched = res["fetched"] - (res["size"] - kept)
        assert 0 <= refetched <= manifest["config"]["size"], where + f", {refetched} kept bytes fetched again"
        next_run(verify, with_home(env, home), where)
        assert leftovers(home) == [], where
        shutil.rmtree(home)
    print(f"seed {SEED}: write phase {t_write:.3f} s, kills landed in {dict(phases)}")
    # the test is about interrupted transfers: enough kills must land while data moved
    assert phases["mid-blob"] + phases["between-blobs"] >= RUNS // 4, f"seed {SEED}: kills landed in {dict(phases)}"


def test_what_a_kill_at_the_narrowest_instants_leaves_is_cleaned_by_the_next_pull(model, tmp_path):
    """Some kill points are microseconds wide and random delays rarely hit them: after a resumable download
    is published but before its ingest name is unlinked, inside a one-shot ingest file (the manifest), inside
    an atomic rewrite of index.json or oci-layout. The store such a kill leaves is built here by hand (from a
    completed pull), together with a download cut mid-blob; the next pull resumes and cleans all of it."""
    env, _, _, target, digest = model
    home = tmp_path / "home"
    pull = mdl_argv("pull", "--json", target)
    next_run(pull, with_home(env, home), "first pull")
    blobs = home / "blobs" / "sha256"
    ingest = home / "ingest"
    manifest = json.loads((blobs / digest.split(":")[1]).read_bytes())
    layers = sorted(manifest["layers"], key=lambda d: -d["size"])
    big, lic = (d["digest"].split(":")[1] for d in layers[:2])

    (home / "index.json").write_text('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",'
                                     '"manifests":[]}')  # killed before the tag was written
    raw = (blobs / digest.split(":")[1]).read_bytes()
    (blobs / digest.split(":")[1]).unlink()
    (ingest / ("ab" * 16 + ".part")).write_bytes(raw[:100])  # killed while writing the manifest
    half = (blobs / big).read_bytes()[:(12 << 20)]
    (blobs / big).unlink()
    (ingest / f"sha256-{big}.part").write_bytes(half)  # killed mid-download: resumed
    shutil.copyfile(blobs / lic, ingest / f"sha256-{lic}.part")  # killed between publishing and unlinking
    (home / ".index.json.0123456789ab.tmp").write_text("{")  # killed inside index.json's atomic rewrite
    (home / ".oci-layout.0123456789ab.tmp").write_text("{")  # killed inside oci-layout's atomic write

    res = summary(next_run(pull, with_home(env, home), "pull after the simulated kill"))
    assert res["digest"] == digest
    assert res["fetched"] == layers[0]["size"] - len(half)  # only the rest of the cut download moved
    next_run(mdl_argv("verify", "--all"), with_home(env, home), "verify after the simulated kill")
    assert leftovers(home) == []
