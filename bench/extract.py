"""Benchmark: `mdl extract` of a 1 GiB single-layer model, against baselines measured in the same run.

Targets (issue #16), each measured once (the machine has 2 shared cores; one 1 GiB pass per case):
- from a loopback registry (distribution 2.8.2) into a directory, nothing stored: <= 1.15x a verified
  `mdl pull` of the same model into an empty store (both hash every byte on the way and fsync);
- from the local store into a directory on the same file system: hard links, < 0.1 s for the extract
  call itself (in-process, after imports; the whole command's time is printed beside it);
- the same with `--verify` (one hash pass over the linked file): <= 1.15x one `hashlib.sha256` pass
  with 1 MiB reads, both whole Python processes.

    python bench/extract.py [--size-mib 1024] [--workdir bench/out]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))
from common import (HASH_FILES, OUT, mdl_command, mdl_env, mib, python_snippet, record, run_measured,  # noqa: E402
                    write_big_gguf)

from tests.integration.registry import start_registry  # noqa: E402

# The extract call alone, timed in the process after its imports: what hard links cost.
IN_PROCESS = r"""
import sys, time
from mdl.cli.remote import RemoteOptions
from mdl.ops.extract import extract
from mdl.store import LayoutStore
import os
store = LayoutStore(LayoutStore.default_root(os.environ))
start = time.perf_counter()
result = extract(store, sys.argv[1], sys.argv[2], open_repository=RemoteOptions().open)
elapsed = time.perf_counter() - start
assert result.source == "store" and all(f.how == "linked" for f in result.files), result
print(elapsed)
"""


def mdl(*args: str) -> list[str]:
    return [*mdl_command(), *args]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--workdir", type=Path, default=OUT,
                    help="where the registry, the stores and the directories live (one file system)")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        reg = start_registry(tmp / "registry")
        try:
            run(tmp, reg, args)
        finally:
            reg.stop()


def run(tmp: Path, reg, args) -> None:
    model = tmp / "big.gguf"
    write_big_gguf(model, args.size_mib)
    size = model.stat().st_size
    env = mdl_env(MDL_HOME=str(tmp / "origin"))
    ref = f"{reg.host}/bench/extract:v1"
    run_measured(mdl("package", "--gguf", str(model), "-q", "--push", ref), env=env)

    pulled = tmp / "pulled"
    pull_wall, pull_rss = run_measured(mdl("pull", "-q", ref), env=env | {"MDL_HOME": str(pulled)})
    extract_wall, extract_rss = run_measured(mdl("extract", "-q", ref, str(tmp / "from-registry")),
                                             env=env | {"MDL_HOME": str(tmp / "empty")})
    assert not (tmp / "empty").exists(), "extract from the registry stored something"
    print(f"model: one {mib(size)} layer; loopback registry; files under {args.workdir}; each case run once")
    ratio = extract_wall / pull_wall
    record(f"extract from the registry ({mib(size)})", "<= 1.15x a verified pull into an empty store",
           f"{ratio:.2f}x ({extract_wall:.2f} s vs {pull_wall:.2f} s); peak RSS {mib(extract_rss)} "
           f"(pull {mib(pull_rss)})", ratio <= 1.15)

    store_env = env | {"MDL_HOME": str(pulled)}
    done = subprocess.run(python_snippet(IN_PROCESS, ref, str(tmp / "linked-in-process")), env=store_env,
                          capture_output=True, text=True, check=True)
    call = float(done.stdout.strip())
    command_wall, _ = run_measured(mdl("extract", "-q", ref, str(tmp / "linked")), env=store_env)
    record("extract from the store, same file system (hard links)", "< 0.1 s for the extract call",
           f"{call * 1000:.1f} ms in process; the whole command {command_wall:.2f} s", call < 0.1)

    run_measured(python_snippet(HASH_FILES, str(model)))  # the page cache as warm as for the runs below
    hash_wall, _ = run_measured(python_snippet(HASH_FILES, str(model)))
    verify_wall, verify_rss = run_measured(mdl("extract", "-q", "--verify", ref, str(tmp / "verified")),
                                           env=store_env)
    ratio = verify_wall / hash_wall
    record("extract from the store with --verify", "<= 1.15x one sha256 pass (a whole Python process)",
           f"{ratio:.2f}x ({verify_wall:.2f} s vs {hash_wall:.2f} s); peak RSS {mib(verify_rss)}", ratio <= 1.15)
    print(json.dumps({"pull_s": pull_wall, "extract_registry_s": extract_wall, "link_call_s": call,
                      "link_command_s": command_wall, "hash_s": hash_wall, "verify_s": verify_wall}))


if __name__ == "__main__":
    main()
