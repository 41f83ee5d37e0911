"""Benchmark: everyday commands against starting Python itself.

Target: `mdl list`, `mdl inspect`, `mdl tag`, `mdl rm` and `mdl --version` each at most 100 ms over
`python -c pass` (the same interpreter), median of 9 runs, on a store holding one tiny model. The
baseline is measured in the same run, interleaved with the commands, so a busy machine slows both.

    python bench/cli_startup.py [--runs 9]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, mdl_command, mdl_env, median, record, run_measured  # noqa: E402

TARGET_MS = 100.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mdl-bench-cli-") as tmp:
        env = mdl_env(MDL_HOME=str(Path(tmp) / "store"))
        mdl = mdl_command()
        gguf = Path(tmp) / "tiny.gguf"
        subprocess.run([sys.executable, "-m", "tests.fixtures.models", "gguf", str(gguf)], cwd=REPO, check=True,
                       env=env, stdout=subprocess.DEVNULL)
        subprocess.run([*mdl, "package", "--gguf", str(gguf), "ai/tiny:latest"], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        commands = {
            "--version": ["--version"],
            "list": ["list"],
            "inspect": ["inspect", "ai/tiny"],
            "tag": ["tag", "ai/tiny", "ai/tiny:other"],
            "rm": ["rm", "ai/tiny:other"],  # removes the tag the line above added: each run is alike
        }
        base: list[float] = []
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            base.append(run_measured([sys.executable, "-c", "pass"], env=env)[0])
            for name, argv in commands.items():
                times[name].append(run_measured([*mdl, *argv], env=env)[0])
    b = median(base)
    print(f"python -c pass: {b * 1000:.1f} ms (median of {args.runs})")
    for name, values in times.items():
        over = (median(values) - b) * 1000
        record(f"`mdl {name}` start-up, small store", f"<= +{TARGET_MS:.0f} ms over `python -c pass`",
               f"+{over:.0f} ms ({median(values) * 1000:.0f} ms vs {b * 1000:.0f} ms)", over <= TARGET_MS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
