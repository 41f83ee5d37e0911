"""Run every benchmark and rewrite the README's table with what they measured, so it is never stale.

Each script prints ratios against baselines measured in the same run (machines are shared and noisy,
and CPUs of one kind differ: some hash with SHA extensions, some without), and reports its results
through `common.record`. The table goes between the `bench:start` and `bench:end` markers of
README.md, under a line naming the machine: CPU model, SHA extensions or not, cores.

    python bench/all.py [--quick] [--only NAME ...] [--no-readme]

`--quick` runs each benchmark at a reduced size (for checking the scripts, not for figures).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, cpu_info  # noqa: E402

# name -> (script, arguments, arguments with --quick)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "cli_startup": ("cli_startup.py", [], ["--runs", "3"]),
    "package_gguf": ("package_gguf.py", [], ["--size-mib", "128", "--runs", "1"]),
    "package_parallel": ("package_parallel.py", [], ["--file-mib", "32", "--runs", "1"]),
    "transfer": ("transfer.py", [], ["--size-mib", "128", "--layer-mib", "32", "--runs", "1"]),
    "runner": ("runner.py", [], []),
    "gguf_metadata": ("gguf_metadata.py", [], []),
}
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def machine() -> str:
    model, sha = cpu_info()
    return f"{model}, {'with' if sha else 'without'} SHA extensions, {os.cpu_count()} cores"


def table(rows: list[dict]) -> str:
    lines = ["| benchmark | target | measured | verdict |", "|---|---|---|---|"]
    for r in rows:
        verdict = "" if r["ok"] is None else ("met" if r["ok"] else "**not met**")
        lines.append(f"| {r['benchmark']} | {r['target']} | {r['measured']} | {verdict} |")
    return "\n".join(lines)


def rewrite_readme(rows: list[dict], quick: bool) -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} section to rewrite")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    note = " (--quick: reduced sizes, not figures to quote)" if quick else ""
    body = f"\nMeasured by `python bench/all.py` on: {machine()}{note}.\n\n{table(rows)}\n"
    readme.write_text(head + START + body + END + tail)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS))
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args()
    rows: list[dict] = []
    failed = []
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as results:
        env = {**os.environ, "MDL_BENCH_RESULTS": results.name}
        for name in args.only or BENCHMARKS:
            script, full, quick = BENCHMARKS[name]
            print(f"== {name}", flush=True)
            proc = subprocess.run([sys.executable, str(REPO / "bench" / script), *(quick if args.quick else full)],
                                  cwd=REPO, env=env)
            if proc.returncode != 0:
                failed.append(name)
        rows = [json.loads(line) for line in Path(results.name).read_text().splitlines() if line.strip()]
    if not args.no_readme:
        rewrite_readme(rows, args.quick)
    print(f"{len(rows)} results" + (f"; scripts that exited non-zero: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
