"""Benchmark: read the metadata of a real large-vocabulary GGUF (FACTS §6).

Input: the largest `vendor/llama.cpp/models/ggml-vocab-*.gguf` (by token count) in the
llama-cpp-python 0.3.36 source distribution; these are real files written by llama.cpp's converters.
Measured in the same run, each in its own fresh Python process:

- ours: `mdl.formats.gguf_docker.describe_gguf` (median of 5), its peak RSS and tracemalloc peak;
- baseline: `gguf.GGUFReader` on the same file, touching every field (median of 3), its peak RSS.

Target: ours under 0.2 s. FACTS measured GGUFReader at 5.5 s / 520 MB on this kind of file.

    python bench/gguf_metadata.py [--sdist PATH] [--runs 5] [--baseline-runs 3]

Without --sdist the sdist is fetched once with `pip download --no-deps --no-binary :all:` into
bench/out/gguf_metadata/ and only the vocabulary files are extracted from it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import record  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "bench" / "out" / "gguf_metadata"
SDIST_NAME = "llama_cpp_python-0.3.36.tar.gz"
TARGET_S = 0.2

CHILD = r"""
import json, resource, sys, time, tracemalloc
which, path, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
if which == "ours":
    from mdl.formats.gguf_docker import describe_gguf
    def work():
        info = describe_gguf(path)
        return {"parameters": info.parameters, "keys": len(info.metadata),
                "architecture": info.architecture, "quantization": info.quantization}
else:
    import gguf
    def work():
        r = gguf.GGUFReader(path)
        # touch every field the way a metadata consumer would
        n = sum(1 for k, f in r.fields.items() if not k.startswith("GGUF.") and f.contents() is not None)
        return {"parameters": sum(int(t.n_elements) for t in r.tensors), "fields": n}
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times = []
for _ in range(runs):
    t0 = time.perf_counter()
    result = work()
    times.append(time.perf_counter() - t0)
rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
traced = None
if which == "ours":
    tracemalloc.start()
    work()
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
print(json.dumps({"times": times, "rss_before_kib": rss_before, "rss_peak_kib": rss_after,
                  "tracemalloc_peak": traced, "result": result}))
"""


def find_sdist(arg: str | None) -> Path:
    if arg:
        p = Path(arg)
        if not p.is_file():
            raise SystemExit(f"--sdist {p}: no such file")
        return p
    cached = CACHE / SDIST_NAME
    if cached.is_file():
        return cached
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    "llama-cpp-python==0.3.36", "-d", str(CACHE)], check=True)
    if not cached.is_file():
        raise SystemExit(f"pip download did not produce {cached}")
    return cached


def extract_vocabs(sdist: Path) -> list[Path]:
    """Extract only `vendor/llama.cpp/models/ggml-vocab-*.gguf` (flat, by basename) into the cache."""
    dest = CACHE / "vocab"
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    with tarfile.open(sdist, "r:gz") as tf:
        for m in tf:
            parts = m.name.split("/")
            if (m.isfile() and len(parts) >= 2 and parts[-2] == "models"
                    and "/vendor/llama.cpp/models/" in "/" + m.name
                    and parts[-1].startswith("ggml-vocab-") and parts[-1].endswith(".gguf")):
                target = dest / parts[-1]
                if not target.is_file() or target.stat().st_size != m.size:
                    src = tf.extractfile(m)
                    tmp = target.with_suffix(".part")
                    with open(tmp, "wb") as f:
                        while chunk := src.read(1 << 20):
                            f.write(chunk)
                    os.replace(tmp, target)
                out.append(target)
    if not out:
        raise SystemExit(f"no ggml-vocab-*.gguf in {sdist}")
    return sorted(out)


def token_count(path: Path) -> int:
    from mdl.formats.gguf import GGUFArray, read_header

    tokens = read_header(path, keep_arrays_up_to=0).get("tokenizer.ggml.tokens")
    return tokens.length if isinstance(tokens, GGUFArray) else len(tokens or [])


def run_child(which: str, path: Path, runs: int) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "toolkit"), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", CHILD, which, str(path), str(runs)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{which} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sdist", help=f"path to {SDIST_NAME} (else pip download into {CACHE})")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--baseline-runs", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "toolkit"))

    vocabs = extract_vocabs(find_sdist(args.sdist))
    counts = {p: token_count(p) for p in vocabs}
    path = max(vocabs, key=lambda p: (counts[p], p.name))

    ours = run_child("ours", path, args.runs)
    base = run_child("gguf", path, args.baseline_runs)
    if ours["result"]["parameters"] != base["result"]["parameters"]:
        raise SystemExit(f"parameter counts differ: {ours['result']} vs {base['result']}")

    t_ours = statistics.median(ours["times"])
    t_base = statistics.median(base["times"])
    mib = 1 << 20
    print(f"file:                {path.name} ({path.stat().st_size / mib:.1f} MiB)")
    print(f"tokens:              {counts[path]}")
    print(f"config['gguf'] keys: {ours['result']['keys']}  (architecture {ours['result']['architecture']}, "
          f"quantization {ours['result']['quantization']})")
    print(f"describe_gguf:       {t_ours:.4f} s median of {args.runs}  "
          f"(runs: {', '.join(f'{t:.4f}' for t in ours['times'])})")
    print(f"gguf.GGUFReader:     {t_base:.4f} s median of {args.baseline_runs}  "
          f"(runs: {', '.join(f'{t:.3f}' for t in base['times'])})")
    print(f"ratio:               ours is {t_base / t_ours:.1f}x faster ({t_ours / t_base:.4f} of GGUFReader)")
    record(f"GGUF metadata of {path.name} ({counts[path]} tokens)", f"< {TARGET_S} s, against gguf.GGUFReader",
           f"{t_ours:.3f} s vs {t_base:.2f} s; {ours['rss_peak_kib'] / 1024:.1f} MiB RSS vs "
           f"{base['rss_peak_kib'] / 1024:.0f} MiB", t_ours < TARGET_S)
    print(f"peak RSS ours:       {ours['rss_peak_kib'] / 1024:.1f} MiB "
          f"(after imports {ours['rss_before_kib'] / 1024:.1f} MiB); "
          f"tracemalloc peak {ours['tracemalloc_peak'] / mib:.2f} MiB")
    print(f"peak RSS GGUFReader: {base['rss_peak_kib'] / 1024:.1f} MiB "
          f"(after imports {base['rss_before_kib'] / 1024:.1f} MiB)")
    others = ", ".join(f"{p.name.removeprefix('ggml-vocab-').removesuffix('.gguf')}={counts[p]}"
                       for p in sorted(vocabs, key=lambda p: -counts[p]))
    print(f"all vocab files:     {others}")


if __name__ == "__main__":
    main()
