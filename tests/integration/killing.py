"""Helpers of the kill tests (`test_kill.py`, `test_kill_push.py`): real `mdl` processes started, killed
with SIGKILL at a chosen point, and run again.

Kill points: a kill delay is drawn from the measured length of the *write phase* of an unkilled run,
from the moment the command starts writing (the store's ingest/ appears for a pull, the repository
appears in the registry's storage for a push) to its exit; interpreter start-up, which dominates a run
of a small model, is left out, so the kills land while blobs move and the manifest and the index are
written. `KILL_SEED=<n>` reruns with another seed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.fixtures.models import write_random_file

SEED = int(os.environ.get("KILL_SEED", "1234"))
RUNS = 20
NEXT_RUN_TIMEOUT = 60  # a stale lock would make the next command wait forever


def mdl_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "mdl", *args]


def with_home(base: dict, home: Path) -> dict:
    return base | {"MDL_HOME": str(home)}


def start(argv: list[str], env: dict, stderr=subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=stderr, stdin=subprocess.DEVNULL)


def wait_for(proc: subprocess.Popen, started: Path) -> float | None:
    """Wait until `started` exists (the command began writing); the time, or None if it exited first."""
    while not started.exists():
        if proc.poll() is not None:
            return None
        time.sleep(0.002)
    return time.monotonic()


def write_phase(argv: list[str], env: dict, started: Path) -> float:
    """Seconds from the moment `started` appears to the exit of an unkilled run."""
    proc = start(argv, env, stderr=subprocess.PIPE)
    t0 = wait_for(proc, started)
    _, err = proc.communicate(timeout=NEXT_RUN_TIMEOUT)
    assert proc.returncode == 0 and t0 is not None, err
    return time.monotonic() - t0


def run_killed(argv: list[str], env: dict, started: Path, delay: float) -> bool:
    """Start the command and SIGKILL it `delay` seconds after `started` appears; False if it finished first."""
    proc = start(argv, env)
    try:
        if wait_for(proc, started) is not None:
            proc.wait(delay)
        proc.wait(NEXT_RUN_TIMEOUT)
        return False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def next_run(argv: list[str], env: dict, where: str) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=NEXT_RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{where}: `{' '.join(argv[2:])}` did not finish in {NEXT_RUN_TIMEOUT} s (a stale lock?)")
    assert proc.returncode == 0, f"{where}: {proc.stderr}"
    return proc


def summary(proc) -> dict:
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return next(e for e in lines if e.get("event") == "summary")


def phase(home: Path) -> str:
    """Where a kill landed, from what it left: nothing, a partial download, blobs without the tag, the model."""
    index = home / "index.json"
    if index.exists() and json.loads(index.read_bytes())["manifests"]:
        return "tagged"
    blobs = list((home / "blobs" / "sha256").glob("*")) if (home / "blobs").exists() else []
    partial = [p for p in (home / "ingest").glob("*") if p.stat().st_size] if (home / "ingest").exists() else []
    if partial:
        return "mid-blob"  # a download cut (and maybe some blobs published)
    if blobs:
        return "between-blobs"  # some blobs published, no partial file: between blobs or before the tag
    return "nothing" if not home.exists() else "empty-store"


def kept_bytes(home: Path, digests: list[str]) -> int:
    """Bytes of these blobs a killed pull left for the next one: published blobs, else partial downloads."""
    total = 0
    for digest in digests:
        hexpart = digest.split(":", 1)[1]
        for p in (home / "blobs" / "sha256" / hexpart, home / "ingest" / f"sha256-{hexpart}.part"):
            if p.exists():
                total += p.stat().st_size
                break
    return total


def leftovers(home: Path) -> list[str]:
    """Files a finished command must not leave: anything in ingest/, temp files beside index.json."""
    out = [f"ingest/{p.name}" for p in (home / "ingest").iterdir()] if (home / "ingest").exists() else []
    out += [p.name for p in home.glob(".*.tmp")]
    return out


def write_model_inputs(tmp: Path) -> list[str]:
    """`mdl package` arguments for a 40 MiB model of four layers: a 24 MiB DDUF and two 8 MiB licenses."""
    payload = write_random_file(tmp / "payload.bin", 24 << 20, seed=71)
    dduf = tmp / "big.dduf"
    with zipfile.ZipFile(dduf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("model_index.json", '{"_class_name": "Pipeline"}')
        zf.write(payload, "unet/diffusion_pytorch_model.safetensors")
    payload.unlink()
    a = write_random_file(tmp / "LICENSE-A", 8 << 20, seed=72)
    b = write_random_file(tmp / "LICENSE-B", 8 << 20, seed=73)
    return ["--dduf", str(dduf), "--license", str(a), "--license", str(b)]


def median_write_phase(argv, env_for, started_for, n: int = 3) -> float:
    """The median write phase of `n` unkilled runs (`argv(i)`, `env_for(i)`, `started_for(i)`)."""
    times = sorted(write_phase(argv(i), env_for(i), started_for(i)) for i in range(n))
    return times[n // 2]


def push_model(registry, tmp: Path) -> tuple[dict, Path, str, str, str]:
    """A 40 MiB model packaged into a store of its own (`home`) as `local` and pushed once to `target`:
    (base env, home, local, target, digest)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MDL_DEBUG", "MDL_REGISTRY_USERNAME",
                                                            "MDL_REGISTRY_PASSWORD")}
    env["DOCKER_CONFIG"] = str(tmp / "docker-config")
    home = tmp / "home"
    local = "ai/kill:v1"
    target = f"{registry.host}/test/kill-{os.getpid()}:v1"
    proc = subprocess.run(mdl_argv("package", *write_model_inputs(tmp), "-q", local), env=with_home(env, home),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    digest = proc.stdout.strip().rsplit("@", 1)[-1]
    proc = subprocess.run(mdl_argv("push", "-q", local, target), env=with_home(env, home), capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    return env, home, local, target, digest
