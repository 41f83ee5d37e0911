"""Benchmark: `mdl push` and `mdl pull` against a loopback registry (Debian's distribution 2.8.2).

Targets (issue: registries), all measured in the same run, medians of --runs:
- push of a 1 GiB single-layer model: <= 1.1x a raw single-pass streaming upload written with
  requests (PATCH hashing on the fly, then PUT ?digest=), <= 0.9x `skopeo copy oci:... docker://...`;
  peak RSS < 64 MiB;
- pull: <= 1.15x a raw verified GET (4 MiB readinto, hash, write, rename), <= 0.6x
  `skopeo copy docker://... oci:...`; peak RSS < 64 MiB;
- a 4-layer model (4 x 256 MiB): `--concurrency 4` measurably faster than `--concurrency 1`, pulled
  and pushed.
C tools are a second baseline: `curl -T` uploading the blob with its digest known (no hashing on the
client), and `curl | tee | sha256sum` downloading it (hashing in C).
Every timed push goes to a fresh repository and skopeo's blob-info cache is cleared before each
skopeo run, so nothing is skipped or mounted. Each timed run starts with the disk idle (`os.sync()`
first): a push leaves the registry's gigabyte in the page cache, and the next run, whichever tool it
times, would otherwise share the disk with its writeback.

    python bench/transfer.py [--size-mib 1024] [--runs 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))
from common import (OUT, mdl_command, mdl_env, median, mib, python_snippet, record, run_measured,  # noqa: E402
                    write_big_gguf, write_big_safetensors)

from tests.integration.registry import start_registry  # noqa: E402

RAW_PUSH = r"""
import hashlib, sys, requests
path, base, digest = sys.argv[1], sys.argv[2], sys.argv[3]
s = requests.Session()
loc = s.post(f"{base}/blobs/uploads/").headers["Location"]
h = hashlib.sha256()
def body():
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            yield chunk
r = s.patch(loc, data=body(), headers={"Content-Type": "application/octet-stream"})
assert r.status_code == 202, r.status_code
assert "sha256:" + h.hexdigest() == digest
loc = r.headers["Location"]
r = s.put(loc + ("&" if "?" in loc else "?") + "digest=" + digest)
assert r.status_code == 201, r.status_code
"""

RAW_PULL = r"""
import hashlib, os, sys, requests
url, out, digest = sys.argv[1], sys.argv[2], sys.argv[3]
h = hashlib.sha256()
buf = bytearray(4 << 20)
view = memoryview(buf)
with requests.get(url, stream=True) as r, open(out + ".part", "wb", buffering=0) as f:
    r.raise_for_status()
    raw = r.raw
    while n := raw.readinto(buf):
        h.update(view[:n])
        f.write(view[:n])
assert "sha256:" + h.hexdigest() == digest
os.rename(out + ".part", out)
"""

# $1 file, $2 registry origin, $3 repository, $4 digest: start an upload, then one streamed PUT.
CURL_PUSH = r"""
set -euo pipefail
loc=$(curl -sf -D - -o /dev/null -X POST "$2/v2/$3/blobs/uploads/" | tr -d '\r' \
      | awk 'tolower($1)=="location:"{print $2}')
case "$loc" in http*) ;; *) loc="$2$loc" ;; esac
case "$loc" in *\?*) sep='&' ;; *) sep='?' ;; esac
curl -sf -o /dev/null -T "$1" -H 'Content-Type: application/octet-stream' "$loc${sep}digest=$4"
"""

# $1 blob URL, $2 output file, $3 expected hex: download, write and hash in one pipe.
CURL_PULL = r"""
set -euo pipefail
sum=$(curl -sf "$1" | tee "$2.part" | sha256sum | cut -d' ' -f1)
[ "$sum" = "$3" ] && mv "$2.part" "$2"
"""

SKOPEO_CACHE = Path("/var/lib/containers/cache/blob-info-cache-v1.boltdb")


def timed(argv: list[str], env: dict | None = None) -> tuple[float, int]:
    """`run_measured`, starting with the disk idle: what earlier runs wrote (the registry's copy of each
    push above all, a gigabyte left in the page cache) is written out first, not inside this run."""
    os.sync()
    return run_measured(argv, env=env)


def mdl(*args: str) -> list[str]:
    return [*mdl_command(), *args]


def clear_skopeo_cache() -> None:
    SKOPEO_CACHE.unlink(missing_ok=True)
    (Path.home() / ".local/share/containers/cache/blob-info-cache-v1.boltdb").unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--layer-mib", type=int, default=256, help="layer size of the 4-layer model")
    ap.add_argument("--runs", type=int, default=5)  # the disk makes 1 GiB copies swing by ~30% here
    ap.add_argument("--workdir", type=Path, default=OUT,
                    help="where the registry, the stores and every copy live (e.g. /dev/shm: no disk in the way)")
    args = ap.parse_args()
    have_skopeo = shutil.which("skopeo") is not None

    args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        reg = start_registry(tmp / "registry")
        try:
            run(tmp, reg, args, have_skopeo)
        finally:
            reg.stop()


def run(tmp: Path, reg, args, have_skopeo: bool) -> None:
    home = tmp / "store"
    env = mdl_env(MDL_HOME=str(home))
    model = tmp / "big.gguf"
    write_big_gguf(model, args.size_mib)
    run_measured(mdl("package", "--gguf", str(model), "-q", "bench/big:v1"), env=env)  # setup, not timed
    manifest = json.loads(subprocess.run(mdl("inspect", "--manifest", "bench/big:v1"), env=env,
                                         capture_output=True, text=True, check=True).stdout)
    layer = manifest["layers"][0]
    size, digest = layer["size"], layer["digest"]
    blob = home / "blobs" / "sha256" / digest.split(":")[1]
    counter = itertools.count()

    def fresh_repo(kind: str) -> str:
        return f"bench/{kind}-{next(counter)}"

    push = {"raw": [], "mdl": [], "skopeo": [], "curl": []}
    push_rss = []
    for _ in range(args.runs):
        repo = fresh_repo("raw")
        push["raw"].append(timed(python_snippet(RAW_PUSH, str(blob), f"{reg.url}/v2/{repo}", digest))[0])
        push["curl"].append(timed(["bash", "-c", CURL_PUSH, "curl-push", str(blob), reg.url,
                                   fresh_repo("curl"), digest])[0])
        pushed_to = fresh_repo("mdl")
        wall, rss = timed(mdl("push", "-q", "bench/big:v1", f"{reg.host}/{pushed_to}:v1"), env=env)
        push["mdl"].append(wall)
        push_rss.append(rss)
        if have_skopeo:
            clear_skopeo_cache()
            push["skopeo"].append(timed(
                ["skopeo", "--insecure-policy", "copy", "-q", "--dest-tls-verify=false",
                 f"oci:{home}:docker.io/bench/big:v1", f"docker://{reg.host}/{fresh_repo('sk')}:v1"])[0])

    src = f"{reg.host}/{pushed_to}:v1"  # pushed above
    pull = {"raw": [], "mdl": [], "skopeo": [], "curl": []}
    pull_rss = []
    for i in range(args.runs):
        out = tmp / f"raw-{i}"
        pull["raw"].append(timed(python_snippet(
            RAW_PULL, f"{reg.url}/v2/{pushed_to}/blobs/{digest}", str(out), digest))[0])
        out.unlink()
        pull["curl"].append(timed(["bash", "-c", CURL_PULL, "curl-pull", f"{reg.url}/v2/{pushed_to}/blobs/{digest}",
                                   str(out), digest.split(":")[1]])[0])
        out.unlink()
        pull_home = tmp / f"pull-{i}"
        wall, rss = timed(mdl("pull", "-q", src), env=mdl_env(MDL_HOME=str(pull_home)))
        pull["mdl"].append(wall)
        pull_rss.append(rss)
        shutil.rmtree(pull_home)
        if have_skopeo:
            clear_skopeo_cache()
            dest = tmp / f"sk-{i}"
            pull["skopeo"].append(timed(
                ["skopeo", "--insecure-policy", "copy", "-q", "--src-tls-verify=false", f"docker://{src}",
                 f"oci:{dest}:x"])[0])
            shutil.rmtree(dest)

    print(f"model: one {mib(size)} layer; loopback registry; files under {args.workdir}; {args.runs} runs (medians)")
    report("push", mib(size), push, push_rss, raw_limit=1.1, skopeo_limit=0.9)
    report("pull", mib(size), pull, pull_rss, raw_limit=1.15, skopeo_limit=0.6)
    concurrency(tmp, reg, args)


def report(what: str, size: str, times: dict, rss: list[int], raw_limit: float, skopeo_limit: float) -> None:
    m, r, c = median(times["mdl"]), median(times["raw"]), median(times["curl"])
    record(f"`mdl {what}`, one {size} layer, loopback registry", f"<= {raw_limit}x a raw Python {what} (requests)",
           f"{m / r:.2f}x ({m:.2f} s vs {r:.2f} s)", m / r <= raw_limit)
    if times["skopeo"]:
        s = median(times["skopeo"])
        record(f"`mdl {what}` against skopeo", f"<= {skopeo_limit}x skopeo", f"{m / s:.2f}x ({m:.2f} s vs {s:.2f} s)",
               m / s <= skopeo_limit)
    record(f"`mdl {what}` against curl", "none: C tools, for reference", f"{m / c:.2f}x ({m:.2f} s vs {c:.2f} s)",
           None)
    record(f"`mdl {what}`: peak RSS", "< 64 MiB", mib(max(rss)), max(rss) < 64 << 20)


def concurrency(tmp: Path, reg, args) -> None:
    """A safetensors model of 4 files of --layer-mib each: push and pull with --concurrency 1 and 4."""
    model_dir = tmp / "four"
    model_dir.mkdir()
    for i in range(4):
        write_big_safetensors(model_dir / f"model-0000{i + 1}-of-00004.safetensors", args.layer_mib << 20, seed=i)
    env = mdl_env(MDL_HOME=str(tmp / "four-store"))
    run_measured(mdl("package", "--safetensors-dir", str(model_dir), "-q", "bench/four:v1"), env=env)  # setup
    pushed = {1: [], 4: []}
    pulled = {1: [], 4: []}
    for i in range(args.runs):
        for c in (1, 4):
            target = f"{reg.host}/bench/four-{c}-{i}:v1"  # a fresh repository: nothing is skipped or mounted
            pushed[c].append(timed(mdl("push", "-q", "--concurrency", str(c), "bench/four:v1", target),
                                   env=env)[0])
            home = tmp / f"four-pull-{c}-{i}"
            pulled[c].append(timed(mdl("pull", "-q", "--concurrency", str(c), target),
                                   env=mdl_env(MDL_HOME=str(home)))[0])
            shutil.rmtree(home)
    for what, times in (("push", pushed), ("pull", pulled)):
        t1, t4 = median(times[1]), median(times[4])
        record(f"`mdl {what}` of 4 x {args.layer_mib} MiB", "`--concurrency 4` faster than `--concurrency 1`",
               f"{t1 / t4:.2f}x faster ({t4:.2f} s vs {t1:.2f} s)", t4 < t1)

if __name__ == "__main__":
    main()
