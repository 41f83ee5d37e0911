"""`mdl pull` into a store on a real, full file system (a 1 MiB tmpfs, `tiny_tmpfs`), from the real
registry: a clear `disk-full` error, exit 1, no model and no unverified blob in the store, and the next
pull (once there is room) completes from what was kept."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.conftest import assert_clean_error
from tests.fixtures.models import write_large_dduf
from tests.integration.faultproxy import Fault, FaultProxy


def _push(mdl, registry, tmp: Path, name: str, size: int, seed: int) -> tuple[str, dict]:
    target = f"{registry.host}/test/{name}-{os.getpid()}:v1"
    proc = mdl("package", "--dduf", str(write_large_dduf(tmp / f"{name}.dduf", size, seed)), "--push", "-q", target)
    assert proc.returncode == 0, proc.stderr
    return target, json.loads(mdl("inspect", "--manifest", target).stdout)


def _state(mdl, home: Path) -> tuple[list, list[str]]:
    """(models listed, blob names) of the store at `home`; `mdl verify --all` must pass on it."""
    env = {"MDL_HOME": str(home)}
    proc = mdl("verify", "--all", extra_env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    models = json.loads(mdl("list", "--json", extra_env=env).stdout)
    blobs = home / "blobs" / "sha256"
    return models, sorted(p.name for p in blobs.iterdir()) if blobs.exists() else []


def _fill(directory: Path) -> Path:
    """Write a file until the file system is full; returns it."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        chunk = b"\0" * 4096
        try:
            while True:
                f.write(chunk)
        except OSError as e:
            assert e.errno == 28, e  # ENOSPC
    return filler


def test_a_layer_larger_than_the_free_space_is_refused_before_writing(mdl, registry, tiny_tmpfs, tmp_path):
    target, manifest = _push(mdl, registry, tmp_path, "df-big", 2 << 20, seed=41)
    home = tiny_tmpfs / "home"
    proc = mdl("pull", target, extra_env={"MDL_HOME": str(home)})
    layer = manifest["layers"][0]
    assert_clean_error(proc, 1, f"no space left on the device holding {home}", f"({layer['size']} bytes needed)",
                       "hint: free some space")
    models, blobs = _state(mdl, home)
    assert models == [] and blobs == []  # the config it had fetched was dropped again
    assert list((home / "ingest").iterdir()) == []  # not a byte of the layer written, no empty file left


def test_the_disk_filling_up_mid_download(mdl, registry, tiny_tmpfs, tmp_path):
    """The layer fits when its download starts; another writer fills the disk while it runs (after the
    connection is cut at 256 KiB, before the download resumes). The write that finds no room fails the
    pull cleanly, naming what it still needed; nothing is published; once space is freed the next pull
    resumes from the kept bytes."""
    target, manifest = _push(mdl, registry, tmp_path, "df-mid", 600 << 10, seed=42)
    layer = manifest["layers"][0]
    cut = 256 << 10
    host, port = registry.host.rsplit(":", 1)
    with FaultProxy(host, int(port)) as proxy:
        fault = proxy.add(Fault("GET", f"/blobs/{layer['digest']}", cut_after=cut, times=1))
        # the reopened download is held 1 s (then cut): time for this test to fill the disk, even on a busy CI
        held = proxy.add(Fault("GET", f"/blobs/{layer['digest']}", stall=1.0, times=1))
        via = proxy.host + target[target.index("/"):]
        home = tiny_tmpfs / "home"
        env = {"MDL_HOME": str(home)}
        partial = home / "ingest" / f"sha256-{layer['digest'].split(':')[1]}.part"
        proc = _popen_mdl(mdl, ["pull", "--concurrency", "1", via], env)
        deadline = time.monotonic() + 30
        while not (partial.exists() and partial.stat().st_size >= cut):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.001)
        filler = _fill(tiny_tmpfs)
        out, err = proc.communicate(timeout=60)
        assert (fault.hits, held.hits) == (1, 1)
        ranged = [t for m, t in proxy.requests if m == "GET" and layer["digest"] in t]
        assert len(ranged) == 3, ranged  # it did resume (and then found no room)
        assert_clean_error(_done(proc, out, err), 1, f"no space left on the device holding {home} "
                           f"({layer['size'] - cut} bytes needed)")
        models, blobs = _state(mdl, home)
        assert models == [] and blobs == []
        assert partial.stat().st_size >= cut  # what it verified so far is kept for the next run

        filler.unlink()
        again = mdl("pull", "--json", via, extra_env=env)
        assert again.returncode == 0, again.stderr
        res = next(e for e in map(json.loads, again.stdout.splitlines()) if e.get("event") == "summary")
        assert res["fetched"] <= res["size"] - cut  # resumed
        models, blobs = _state(mdl, home)
        assert [m["tags"] for m in models] == [[via]]
        assert list((home / "ingest").iterdir()) == []


def _popen_mdl(mdl, args: list[str], extra_env: dict):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "mdl", *args], env=mdl.env | extra_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def _done(proc, out: str, err: str):
    import subprocess

    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_no_room_left_for_the_manifest(mdl, registry, tiny_tmpfs, tmp_path):
    """The config and the layer fill the file system to the last page: the layer is published, then the
    manifest cannot be written. A clean error, and the blobs the pull published are dropped again."""
    import urllib.request

    home = tiny_tmpfs / "home"
    env = {"MDL_HOME": str(home)}
    home.mkdir()
    assert mdl("prune", extra_env=env).returncode == 0  # lays out the empty store: oci-layout, index.json
    st = os.statvfs(tiny_tmpfs)
    layer_bytes = (st.f_bavail * st.f_frsize // 4096 - 1) * 4096  # every page left but the config's
    target, manifest = _push(mdl, registry, tmp_path, "df-exact", layer_bytes - 1024, seed=43)
    size = manifest["layers"][0]["size"]
    assert layer_bytes - 4096 < size <= layer_bytes, (size, layer_bytes)
    name, tag = target.split("/", 1)[1].rsplit(":", 1)
    req = urllib.request.Request(f"{registry.url}/v2/{name}/manifests/{tag}",
                                 headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    manifest_size = len(urllib.request.urlopen(req).read())
    proc = mdl("pull", target, extra_env=env)
    assert f"layer {manifest['layers'][0]['digest'][:19]}" in proc.stderr  # the layer went in
    assert_clean_error(proc, 1, f"no space left on the device holding {home} ({manifest_size} bytes needed)")
    models, blobs = _state(mdl, home)
    assert models == [] and blobs == []
