"""Helpers shared by the benchmark scripts: timing child processes and their peak memory.

Absolute times mean little on shared machines, so every script measures its baseline in the same
run and prints ratios.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"

# The hashing baseline: sha256 of each file named, one after another, 1 MiB reads, in one process.
HASH_FILES = """
import hashlib, sys
for path in sys.argv[1:]:
    h = hashlib.sha256()
    with open(path, 'rb', buffering=0) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    print(h.hexdigest())
"""


def run_measured(argv: list[str], env: dict | None = None, cwd: Path | None = None) -> tuple[float, int]:
    """Run a command; return (wall seconds, peak RSS in bytes) of that one child."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(argv)}\n{err}")
    return wall, usage.ru_maxrss * 1024


# OpenSSL's capability mask (OPENSSL_ia32cap, documented in OpenSSL's manual): "~" clears bits of the
# second word, CPUID leaf 7 EBX, whose bit 29 is the SHA extensions. hashlib, which hashes through
# OpenSSL, then runs the code a CPU without them runs (~3.5x slower here).
WITHOUT_SHA_EXTENSIONS = {"OPENSSL_ia32cap": ":~0x20000000"}


def cpu_info() -> tuple[str, bool]:
    """(CPU model name, whether it has the SHA extensions) from /proc/cpuinfo."""
    model, flags = "unknown CPU", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = value
    except OSError:
        pass
    return model, "sha_ni" in flags.split()


def python_snippet(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def median(values: list[float]) -> float:
    return statistics.median(values)


def mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def mdl_env(**extra: str) -> dict:
    """The environment to run `python -m mdl` in, as an installed mdl runs: from compiled bytecode.
    (An editable checkout under PYTHONDONTWRITEBYTECODE would recompile every module on every start.)"""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "toolkit" / "mdl")], check=True)
    env = {**os.environ, **extra}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def mdl_command() -> list[str]:
    """How to run mdl as a user does: the `mdl` script installed beside this interpreter (the README's
    set-up installs it), else `python -m mdl`, which costs runpy's few milliseconds more."""
    script = Path(sys.executable).with_name("mdl")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mdl"]


def record(benchmark: str, target: str, measured: str, ok: bool | None) -> None:
    """Print one result line and, when `bench/all.py` runs this script (MDL_BENCH_RESULTS names a file),
    append it there as JSON, for the README's table."""
    print(f"{benchmark}: {measured} (target {target})" + ("" if ok is None else f"  {verdict(ok)}"), flush=True)
    path = os.environ.get("MDL_BENCH_RESULTS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"benchmark": benchmark, "target": target, "measured": measured, "ok": ok}) + "\n")


# Model files for the benchmarks, written in 1 MiB steps from a fixed seed (memory stays flat).


def write_big_gguf(path: Path, size_mib: int) -> None:
    """A valid GGUF whose single F32 tensor holds `size_mib` MiB of seeded random data, streamed."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFWriter

    n = size_mib * (1 << 20) // 4
    w = GGUFWriter(str(path), "llama")
    w.add_context_length(4096)
    w.add_tensor_info("token_embd.weight", (n,), np.dtype(np.float32), n * 4, raw_dtype=GGMLQuantizationType.F32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    with open(path, "ab") as f:
        pad = (-f.tell()) % 32  # GGUF default alignment
        f.write(b"\0" * pad)
        rng = np.random.default_rng(0)
        for _ in range(size_mib):
            f.write(rng.integers(0, 256, 1 << 20, dtype=np.uint8).tobytes())


def write_big_safetensors(path: Path, size: int, seed: int) -> None:
    """A valid safetensors file holding one U8 tensor of `size` seeded random bytes, streamed."""
    import struct

    import numpy as np

    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        for _ in range(size >> 20):
            f.write(rng.integers(0, 256, 1 << 20, dtype=np.uint8).tobytes())
