"""Benchmark: `mdl package --gguf` of a 1 GiB GGUF into a store on the same filesystem.

Target (issue: foundation): wall time at most 1.3x one `hashlib.sha256` pass with 1 MiB reads over
the same file, measured in the same run (both as fresh Python processes, page cache warm),
and peak RSS under 64 MiB.

    python bench/package_gguf.py [--size-mib 1024] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, median, mib, python_snippet, run_measured, verdict  # noqa: E402

HASH_1MIB = """
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], 'rb', buffering=0) as f:
    while chunk := f.read(1 << 20):
        h.update(chunk)
print(h.hexdigest())
"""


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        tmp = Path(tmp)
        model = tmp / "big.gguf"
        write_big_gguf(model, args.size_mib)
        size = model.stat().st_size
        run_measured(python_snippet(HASH_1MIB, str(model)))  # warm the page cache

        hash_times, mdl_times, mdl_rss = [], [], []
        for i in range(args.runs):
            hash_times.append(run_measured(python_snippet(HASH_1MIB, str(model)))[0])
            home = tmp / f"store{i}"
            env = os.environ | {"MDL_HOME": str(home)}
            wall, rss = run_measured([sys.executable, "-m", "mdl", "package", "--gguf", str(model), "-q",
                                      f"bench/big:{i}"], env=env)
            mdl_times.append(wall)
            mdl_rss.append(rss)
            shutil.rmtree(home)

    h, m, rss = median(hash_times), median(mdl_times), max(mdl_rss)
    ratio = m / h
    print(f"file: {mib(size)} GGUF, store on the same filesystem, {args.runs} runs (medians)")
    print(f"sha256 pass, 1 MiB reads:  {h:.3f} s")
    print(f"mdl package --gguf:        {m:.3f} s   ratio {ratio:.2f}x (target <= 1.3x)  {verdict(ratio <= 1.3)}")
    print(f"mdl package peak RSS:      {mib(rss)} (target < 64 MiB)  {verdict(rss < 64 << 20)}")


if __name__ == "__main__":
    main()
