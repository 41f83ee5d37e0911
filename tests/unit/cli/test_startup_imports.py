"""Everyday commands import only what they use (issue: CLI start-up): no registry client, no JSON
Schema validator, no numpy. Checked in a fresh interpreter, since this test process has them all."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("requests", "jsonschema", "numpy", "pydantic")

PROBE = """
import json, sys
from mdl.cli.app import main
code = main(sys.argv[1:]) if len(sys.argv) > 1 else 0
print(json.dumps({"code": code, "loaded": sorted(m for m in sys.modules if m.split('.')[0] in %r)}))
""" % (HEAVY,)


def probe(args: list[str], env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [[], ["--version"], ["list"], ["inspect", "ai/tiny"], ["tag", "ai/tiny", "ai/t:2"],
                                  ["rm", "ai/t:2"]])
def test_everyday_commands_do_not_import_heavy_modules(args, tmp_path, monkeypatch):
    import os

    from mdl.conformance.tinymodel import write_tiny_gguf
    from mdl.ops.package import PackageRequest, package
    from mdl.reference import parse_reference
    from mdl.store import LayoutStore

    store = LayoutStore(tmp_path / "store")
    gguf = tmp_path / "tiny.gguf"
    write_tiny_gguf(gguf)
    package(store, PackageRequest(gguf=str(gguf)), parse_reference("ai/tiny"))
    if args and args[0] == "rm":
        store.add_tag(store.resolve("ai/tiny"), parse_reference("ai/t:2"))
    result = probe(args, {**os.environ, "MDL_HOME": str(store.root)})
    assert result["code"] == 0
    assert result["loaded"] == [], f"mdl {' '.join(args)} imported {result['loaded']}"


def test_packaging_and_verifying_valid_models_do_not_load_jsonschema(tmp_path):
    """Valid documents pass the quick schema check (spec/quickcheck.py); jsonschema only explains failures."""
    import os

    from mdl.conformance.tinymodel import write_tiny_gguf
    from tests.fixtures.models import write_safetensors_dir

    gguf = tmp_path / "tiny.gguf"
    write_tiny_gguf(gguf)
    st_dir = tmp_path / "st"
    write_safetensors_dir(st_dir)
    env = {**os.environ, "MDL_HOME": str(tmp_path / "store")}
    for args in (["package", "--gguf", str(gguf), "ai/tiny"],
                 ["package", "--safetensors-dir", str(st_dir), "--format", "cncf", "ai/st"],
                 ["verify", "ai/tiny"], ["verify", "--all"]):
        result = probe(args, env)
        assert result["code"] == 0, args
        assert result["loaded"] == [], f"mdl {' '.join(args)} imported {result['loaded']}"


GC_PROBE = """
import functools, gc, json, sys
import mdl.cli.list as list_cli
from mdl.cli import launch

seen = {}
real = list_cli.command


@functools.wraps(real)
def command(*args, **kwargs):
    seen["collector on while the command runs"] = gc.isenabled()
    return real(*args, **kwargs)


list_cli.command = command
real_import = __import__


def spying_import(name, *args, **kwargs):
    if name == "app" or name.endswith("cli.app"):
        seen.setdefault("collector paused while the CLI loads", not gc.isenabled())
    return real_import(name, *args, **kwargs)


__builtins__.__import__ = spying_import
sys.argv = ["mdl", "list"]
try:
    launch.entry()
finally:
    __builtins__.__import__ = real_import
    print(json.dumps(seen), file=sys.stderr)
"""


def test_the_cli_loads_with_the_collector_paused_and_runs_the_command_with_it_on(tmp_path):
    import os

    env = {**os.environ, "MDL_HOME": str(tmp_path / "store")}
    out = subprocess.run([sys.executable, "-c", GC_PROBE], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stderr.strip().splitlines()[-1]) == {
        "collector paused while the CLI loads": True, "collector on while the command runs": True}
