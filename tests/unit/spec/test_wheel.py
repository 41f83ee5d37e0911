"""The wheel carries the schemas, the spec and the artifact cases (pyproject force-includes them under
`mdl/_schemas`, `mdl/_spec`, `mdl/_conformance`) and uses them."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

CHECK = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    root = Path(sys.argv[1]).resolve()
    import mdl
    from mdl.spec import resources, schemas, mediatypes
    assert Path(mdl.__file__).resolve().is_relative_to(root), mdl.__file__
    d = resources.schemas_dir().resolve()
    assert d.is_relative_to(root) and d.name == "_schemas", d
    names = sorted(p.name for p in d.glob("*.schema.json"))
    assert len(names) >= 10, names
    cfg = {"config": {"format": "gguf", "size": "864B", "parameters": "183"},
           "descriptor": {"created": "2025-06-01T00:00:00Z"},
           "rootfs": {"type": "rootfs", "diff_ids": ["sha256:" + "ab" * 32]}}
    assert schemas.validate(cfg, schemas.config_schema_for(mediatypes.DOCKER_CONFIG_V01, written=True)) == []
    cfg["config"]["size"] = "864 B"
    assert [f.path for f in schemas.validate(cfg, schemas.DOCKER_CONFIG_WRITTEN)] == ["$.config.size"]
    from mdl.conformance import artifacts
    assert resources.conformance_dir().resolve().is_relative_to(root)
    assert resources.spec_dir().resolve().is_relative_to(root)
    assert artifacts.run_suite(artifacts.load_suite()) and artifacts.lint() == []
    print("ok", d)
""")


def _build_wheel(out: Path) -> Path:
    have_backend = importlib.util.find_spec("hatchling") is not None
    cmd = [sys.executable, "-m", "build", "--wheel", "--outdir", str(out)]
    if have_backend:
        cmd.append("--no-isolation")
    proc = subprocess.run(cmd + [str(REPO)], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        if not have_backend:
            pytest.skip("hatchling is not installed and an isolated build could not get it:\n"
                        + proc.stdout[-2000:] + proc.stderr[-2000:])
        pytest.fail(proc.stdout[-3000:] + proc.stderr[-3000:])
    wheels = list(out.glob("mdl-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_carries_and_uses_the_schemas(tmp_path):
    wheel = _build_wheel(tmp_path / "dist")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        source = {p.name for p in (REPO / "schemas").iterdir() if p.is_file()}
        assert {f"mdl/_schemas/{n}" for n in source} <= names
        unpacked = tmp_path / "unpacked"
        z.extractall(unpacked)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(unpacked)
    proc = subprocess.run([sys.executable, "-c", CHECK, str(unpacked)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok ")
