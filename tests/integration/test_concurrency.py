"""`mdl` processes racing on one store, against the real registry: four pulls of one model, `package` and
`rm` on shared blobs, `prune` while a pull runs. Every command succeeds or fails cleanly, `mdl verify --all`
passes afterwards, and no blob a model needs is deleted. Start offsets are seeded (`RACE_SEED`); a
failure names the seed and the round."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import assert_clean_error
from tests.fixtures.models import write_large_dduf, write_random_file, write_tiny_gguf

SEED = int(os.environ.get("RACE_SEED", "4321"))
TIMEOUT = 120


class Runner:
    """Real `mdl` processes on one store (MDL_HOME)."""

    def __init__(self, home: Path, tmp: Path):
        self.home = home
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("MDL_DEBUG", "MDL_REGISTRY_USERNAME", "MDL_REGISTRY_PASSWORD")}
        self.env |= {"MDL_HOME": str(home), "DOCKER_CONFIG": str(tmp / "docker-config")}

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "mdl", *args], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mdl", *args], env=self.env, capture_output=True, text=True,
                              timeout=TIMEOUT)

    def ok(self, *args: str) -> str:
        proc = self.run(*args)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def verified(self, where: str) -> list:
        """`mdl verify --all` passes; the models in the store (`mdl list --json`)."""
        proc = self.run("verify", "--all")
        assert proc.returncode == 0, f"{where}: {proc.stdout}{proc.stderr}"
        return json.loads(self.ok("list", "--json"))

    def ingest(self) -> list[str]:
        d = self.home / "ingest"
        return sorted(p.name for p in d.iterdir()) if d.exists() else []


def finish(proc: subprocess.Popen, where: str) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"{where}: `{' '.join(proc.args[2:])}` hung for {TIMEOUT} s")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def summary(proc) -> dict:
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return next(e for e in lines if e.get("event") == "summary")


@pytest.fixture(scope="module")
def big_model(registry, tmp_path_factory) -> tuple[str, str, int]:
    """A 32 MiB model of three layers pushed once: (registry reference, digest, size of its blobs)."""
    tmp = tmp_path_factory.mktemp("race-model")
    dduf = write_large_dduf(tmp / "race.dduf", 24 << 20, seed=81)
    lic = write_random_file(tmp / "LICENSE", 8 << 20, seed=82)
    r = Runner(tmp / "home", tmp)
    target = f"{registry.host}/test/race-{os.getpid()}:v1"
    out = r.ok("package", "--dduf", str(dduf), "--license", str(lic), "--push", "-q", target)
    digest = out.strip().rsplit("@", 1)[-1]
    manifest = json.loads(r.ok("inspect", "--manifest", target))
    size = manifest["config"]["size"] + sum(d["size"] for d in manifest["layers"])
    return target, digest, size


def test_four_pulls_of_one_model_at_once(big_model, tmp_path):
    target, digest, size = big_model
    rng = random.Random(SEED)
    for rnd in range(2):
        r = Runner(tmp_path / f"home{rnd}", tmp_path)
        where = f"seed {SEED}, round {rnd}"
        procs = []
        for _ in range(4):
            procs.append(r.start("pull", "--json", target))
            time.sleep(rng.uniform(0, 0.05))
        results = [finish(p, where) for p in procs]
        for res in results:
            assert res.returncode == 0, f"{where}: {res.stderr}"
        summaries = [summary(res) for res in results]
        assert {s["digest"] for s in summaries} == {digest}, where
        # each blob crossed the network once: the others waited on its ingest lock, then found it published
        assert sum(s["fetched"] for s in summaries) == size, f"{where}: {[s['fetched'] for s in summaries]}"
        models = r.verified(where)
        assert [(m["id"], m["tags"]) for m in models] == [(digest, [target])], where
        assert r.ingest() == [], where


def _package_inputs(tmp: Path) -> dict[str, Path]:
    return {"dduf": write_large_dduf(tmp / "shared.dduf", 16 << 20, seed=91),
            "lic_a": write_random_file(tmp / "LICENSE-A", 1 << 20, seed=92),
            "lic_b": write_random_file(tmp / "LICENSE-B", 1 << 20, seed=93)}


@pytest.mark.parametrize("source", ["files", "from"])
def test_package_and_rm_racing_on_shared_blobs(tmp_path, source):
    """`mdl package` of B (its weights are A's: the same file, or `--from A`) while `mdl rm A` runs.
    Each round: rm succeeds; the package succeeds (or, with `--from`, fails cleanly when A is gone
    first); B, when made, has every blob; what only A needed goes, now or at the next prune."""
    from mdl.store import LayoutStore
    from mdl.ops.package import PackageRequest, package
    from mdl.reference import parse_reference

    rng = random.Random(f"{SEED}-{source}")
    files = _package_inputs(tmp_path)
    r = Runner(tmp_path / "home", tmp_path)
    store = LayoutStore(r.home)
    package_b = (["--dduf", str(files["dduf"])] if source == "files" else ["--from", "ai/a:v1"])
    outcomes = []
    for rnd in range(5):
        where = f"seed {SEED}, {source}, round {rnd}"
        package(store, PackageRequest(dduf=str(files["dduf"]), licenses=[str(files["lic_a"])]),
                parse_reference("ai/a:v1"))
        # > 0: rm starts later. Wide enough that either may win although `mdl rm` starts faster than
        # `mdl package` (commands load only what they use): the seeded draws include both orders.
        offset = rng.uniform(-0.6, 0.6)
        first, second = (("pkg", "rm") if offset > 0 else ("rm", "pkg"))
        cmds = {"pkg": ("package", *package_b, "--license", str(files["lic_b"]), "ai/b:v1"),
                "rm": ("rm", "ai/a:v1")}
        p1 = r.start(*cmds[first])
        time.sleep(abs(offset))
        p2 = r.start(*cmds[second])
        res = dict(zip((first, second), (finish(p1, where), finish(p2, where))))
        where += f" (rm {offset:+.3f} s after package)"
        assert res["rm"].returncode == 0, f"{where}: {res['rm'].stderr}"
        made = res["pkg"].returncode == 0
        if not made:  # only `--from` may lose the race: A is gone before its layers were read
            assert source == "from", f"{where}: {res['pkg'].stderr}"
            assert_clean_error(res["pkg"], 1, "model ai/a:v1 not found")
        outcomes.append(("made" if made else "refused") + (", gc deferred" if "prune" in res["rm"].stdout else ""))
        r.verified(where)  # every blob of every remaining model is there and whole
        assert [m.tags for m in store.models()] == ([["docker.io/ai/b:v1"]] if made else []), where
        if made:
            store.remove("ai/b:v1")
        store.prune()
        assert list((r.home / "blobs" / "sha256").iterdir()) == [], where
    print(f"seed {SEED}, {source}: {outcomes}")
    assert any(o.startswith("made") for o in outcomes), f"seed {SEED}, {source}: {outcomes}"


def test_rm_right_after_package_from_read_the_model(tmp_path, monkeypatch):
    """The narrow end of the race above, made deterministic: `mdl rm A` runs (a real process) at the instant
    `package --from A` has read A's manifest and before it refers to A's layers. The layers stay (their
    collection is left to prune) and B is whole."""
    import mdl.ops.package as pkg
    from mdl.store import LayoutStore
    from mdl.reference import parse_reference

    files = _package_inputs(tmp_path)
    r = Runner(tmp_path / "home", tmp_path)
    store = LayoutStore(r.home)
    pkg.package(store, pkg.PackageRequest(dduf=str(files["dduf"]), licenses=[str(files["lic_a"])]),
                parse_reference("ai/a:v1"))
    removed = []
    real_plan = pkg._plan

    def plan_then_rm(*args, **kwargs):
        plan = real_plan(*args, **kwargs)
        removed.append(r.run("rm", "ai/a:v1"))
        return plan

    monkeypatch.setattr(pkg, "_plan", plan_then_rm)
    result = pkg.package(store, pkg.PackageRequest(from_ref="ai/a:v1", licenses=[str(files["lic_b"])]),
                         parse_reference("ai/b:v1"))
    assert removed[0].returncode == 0, removed[0].stderr
    assert "run `mdl prune` later" in removed[0].stdout  # the package held the store: nothing collected
    assert [m.tags for m in store.models()] == [["docker.io/ai/b:v1"]]
    assert store.resolve("ai/b:v1") == result.digest
    r.verified("after rm raced package --from")


def test_prune_while_a_pull_runs(big_model, tmp_path):
    """`mdl prune` started at seeded points of a pull: the pull completes, prune deletes only what no model
    needs (an orphan blob, never the pull's blobs or partial files, nor another model's blobs)."""
    from mdl.store import LayoutStore

    target, digest, _ = big_model
    rng = random.Random(SEED + 7)
    other = write_tiny_gguf(tmp_path / "other.gguf", seed=5)[0]
    for rnd in range(4):
        home = tmp_path / f"home{rnd}"
        r = Runner(home, tmp_path)
        where = f"seed {SEED + 7}, round {rnd}"
        r.ok("package", "--gguf", str(other), "ai/other:v1")
        orphan, _ = LayoutStore(home).write_blob(f"orphan {rnd}".encode())
        pull = r.start("pull", "--json", target)
        delay = rng.uniform(0, 0.5)  # both start up in ~0.6 s; the pull then writes for ~0.3 s
        time.sleep(delay)
        where += f", prune {delay:.3f} s after the pull started"
        prune = r.start("prune", "--json")
        pulled, pruned = finish(pull, where), finish(prune, where)
        assert pulled.returncode == 0, f"{where}: {pulled.stderr}"
        assert pruned.returncode == 0, f"{where}: {pruned.stderr}"
        assert summary(pulled)["digest"] == digest, where
        deleted = json.loads(pruned.stdout)["deleted_blobs"]
        assert deleted == [orphan], where
        models = r.verified(where)
        assert sorted(t for m in models for t in m["tags"]) == sorted(["docker.io/ai/other:v1", target]), where
        assert r.ingest() == [], where
