"""Benchmark: `mdl package --gguf` of a 1 GiB GGUF into a store on the same filesystem.

Target: wall time at most 1.15x one `hashlib.sha256` pass with 1 MiB reads over
the same file, measured in the same run (both as fresh Python processes, page cache warm),
and peak RSS under 64 MiB; on a CPU with SHA extensions, measured again with OpenSSL told to
hash without them (common.WITHOUT_SHA_EXTENSIONS), as CPUs lacking them do.

    python bench/package_gguf.py [--size-mib 1024] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (HASH_FILES, OUT, WITHOUT_SHA_EXTENSIONS, cpu_info, mdl_command, mdl_env, median,  # noqa: E402
                    mib, python_snippet, record, run_measured, write_big_gguf)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        tmp = Path(tmp)
        model = tmp / "big.gguf"
        write_big_gguf(model, args.size_mib)
        os.sync()  # an input file is on disk before anyone packages it: fsync'ing it must not write it
        size = model.stat().st_size
        run_measured(python_snippet(HASH_FILES, str(model)))  # warm the page cache

        variants = [("", {})]
        if cpu_info()[1]:  # also as a CPU without SHA extensions hashes (the issue asks for both)
            variants.append((", SHA extensions masked", WITHOUT_SHA_EXTENSIONS))
        for label, cpu_env in variants:
            hash_times, mdl_times, mdl_rss = [], [], []
            for i in range(args.runs):
                hash_times.append(run_measured(python_snippet(HASH_FILES, str(model)),
                                               env={**os.environ, **cpu_env})[0])
                home = tmp / f"store{i}"
                env = mdl_env(MDL_HOME=str(home), **cpu_env)
                wall, rss = run_measured([*mdl_command(), "package", "--gguf", str(model), "-q",
                                          f"bench/big:{i}"], env=env)
                mdl_times.append(wall)
                mdl_rss.append(rss)
                shutil.rmtree(home)

            h, m, rss = median(hash_times), median(mdl_times), max(mdl_rss)
            print(f"file: {mib(size)} GGUF, store on the same filesystem, {args.runs} runs (medians){label}")
            what = f"`mdl package --gguf`, {mib(size)}, same filesystem{label}"
            record(what, "<= 1.15x one sha256 pass (1 MiB reads, a whole Python process)",
                   f"{m / h:.2f}x ({m:.2f} s vs {h:.2f} s)", m / h <= 1.15)
            record(f"{what}: peak RSS", "< 64 MiB", mib(rss), rss < 64 << 20)


if __name__ == "__main__":
    main()
