"""`mdl save` / `mdl load`: OCI layout directories and tars, round trips, hostile archives, skopeo."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mdl.cli import load as load_cli
from mdl.cli import save as save_cli
from mdl.content import Descriptor, Manifest
from mdl.store import LayoutStore
from mdl.content.descriptor import canonical_json
from mdl.layout.common import LayoutError, UnsafeArchiveError
from mdl.layout.dir import LayoutDir
from mdl.ops.load import load_layout
from mdl.ops.save import save_model
from mdl.errors import ConflictError, DigestMismatchError, SchemaViolationError
from mdl.ops.package import PackageRequest, package
from mdl.reference import parse_reference
from mdl.spec import mediatypes as mt
from mdl.model_check import check_model_in_store
from tests.fixtures.models import write_tiny_gguf

REF = "docker.io/ai/tiny:latest"


@pytest.fixture(scope="module")
def gguf(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")[0]


@pytest.fixture
def store(tmp_path, gguf) -> LayoutStore:
    s = LayoutStore(tmp_path / "store")
    package(s, PackageRequest(gguf=str(gguf), licenses=[str(_license(tmp_path))]), parse_reference("ai/tiny"))
    return s


def _license(tmp_path: Path) -> Path:
    p = tmp_path / "LICENSE"
    p.write_text("MIT\n")
    return p


@pytest.fixture
def fresh(tmp_path) -> LayoutStore:
    return LayoutStore(tmp_path / "fresh")


def blobs_in(store: LayoutStore) -> list[str]:
    d = store.root / "blobs" / "sha256"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_save_dir_then_load(store, fresh, tmp_path):
    digest = store.resolve("ai/tiny")
    result = save_model(store, "ai/tiny", tmp_path / "out")
    assert result.format == "dir" and result.names == [REF] and result.digest == digest
    out = tmp_path / "out"
    assert json.loads((out / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    [entry] = json.loads((out / "index.json").read_bytes())["manifests"]
    assert entry["annotations"] == {mt.ANNOTATION_REF_NAME: REF} and entry["digest"] == digest
    m = store.manifest(digest)
    assert sorted(p.name for p in (out / "blobs" / "sha256").iterdir()) == \
        sorted({d.digest[7:] for d in [*m.blob_descriptors(), m.descriptor()]})
    assert check_model_in_store(LayoutStore(out), digest).ok  # `mdl verify DIR` reads it

    loaded = load_layout(fresh, out)
    assert [(x.digest, x.tags) for x in loaded.models] == [(digest, [REF])]
    assert fresh.resolve("ai/tiny") == digest and fresh.manifest(digest).raw == m.raw
    assert check_model_in_store(fresh, digest).ok
    assert not (out / "ingest").exists() and not (out / "index.lock").exists()


def test_save_tar_then_load(store, fresh, tmp_path):
    digest = store.resolve("ai/tiny")
    store.add_tag(digest, parse_reference("localhost:5000/team/tiny:q4"))
    result = save_model(store, digest[7:19], tmp_path / "m.tar")  # by ID: every tag is named
    assert result.format == "tar" and sorted(result.names) == sorted([REF, "localhost:5000/team/tiny:q4"])
    with tarfile.open(tmp_path / "m.tar") as tar:
        names = tar.getnames()
        m = store.manifest(digest)
        blob_order = [f"blobs/sha256/{d.digest[7:]}" for d in [*dict.fromkeys(m.blob_descriptors()), m.descriptor()]]
        # a fixed order, so the same model gives the same bytes: the copy's (config, layers, manifest),
        # then the index, whose entries are known last
        assert names == ["blobs", "blobs/sha256", *blob_order, "index.json", "oci-layout"]
        for info in tar.getmembers():
            assert (info.mtime, info.uid, info.gid, info.uname, info.gname) == (0, 0, 0, "", "")
            assert info.mode == (0o755 if info.isdir() else 0o644)
    loaded = load_layout(fresh, tmp_path / "m.tar")
    assert sorted(loaded.models[0].tags) == sorted(result.names)
    assert fresh.resolve("localhost:5000/team/tiny:q4") == digest
    assert check_model_in_store(fresh, digest).ok
    assert list((fresh.root / "ingest").iterdir()) == []


def test_tar_is_deterministic_and_not_overwritten_without_force(store, tmp_path):
    save_model(store, "ai/tiny", tmp_path / "a.tar")
    save_model(store, "ai/tiny", tmp_path / "b.tar")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    with pytest.raises(ConflictError):
        save_model(store, "ai/tiny", tmp_path / "a.tar")
    save_model(store, "ai/tiny", tmp_path / "a.tar", force=True)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_save_into_an_existing_directory(store, tmp_path, gguf):
    other = tmp_path / "junk"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(LayoutError) as e:
        save_model(store, "ai/tiny", other)
    assert "not an OCI image layout" in e.value.message

    out = tmp_path / "layout"
    save_model(store, "ai/tiny", out)
    package(store, PackageRequest(gguf=str(gguf), context_size=128), parse_reference("ai/other:v2"))
    save_model(store, "ai/other:v2", out)  # adds to the layout
    index = json.loads((out / "index.json").read_bytes())
    names = [d["annotations"][mt.ANNOTATION_REF_NAME] for d in index["manifests"]]
    assert names == [REF, "docker.io/ai/other:v2"]
    fresh = LayoutStore(tmp_path / "fresh")
    assert len(load_layout(fresh, out).models) == 2


# -- hostile and broken archives -------------------------------------------------------------------


def rebuild(src: Path, dst: Path, extra: list[tuple[tarfile.TarInfo, bytes | None]], *, drop: str | None = None):
    """A copy of tar `src` with `extra` members inserted after the blobs (before index.json)."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as tout:
        for info in tin.getmembers():
            if info.name == "index.json":
                for x, data in extra:
                    tout.addfile(x, io.BytesIO(data) if data is not None else None)
            if info.name == drop:
                continue
            tout.addfile(info, tin.extractfile(info) if info.isreg() else None)


def member(name: str, data: bytes = b"x", kind=tarfile.REGTYPE, link: str = ""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else None


@pytest.mark.parametrize("bad, problem", [
    (member("/etc/evil"), "absolute path"),
    (member("blobs/../../evil"), ".."),
    (member("blobs/sha256/" + "a" * 64, kind=tarfile.SYMTYPE, link="/etc/passwd"), "a link"),
    (member("blobs/sha256/" + "b" * 64, kind=tarfile.LNKTYPE, link="index.json"), "a link"),
    (member("blobs/sha256/" + "c" * 64, kind=tarfile.FIFOTYPE), "not a regular file"),
    (member("blobs/sha256/notahash"), "not a blob name"),
    (member("blobs/sha512/" + "d" * 128), "not a blob name"),
])
def test_hostile_members_are_refused(store, fresh, tmp_path, bad, problem):
    save_model(store, "ai/tiny", tmp_path / "good.tar")
    rebuild(tmp_path / "good.tar", tmp_path / "bad.tar", [bad])
    with pytest.raises(UnsafeArchiveError) as e:
        load_layout(fresh, tmp_path / "bad.tar")
    assert problem in e.value.message and str(tmp_path / "bad.tar") in e.value.message
    assert blobs_in(fresh) == []  # the blobs read before the bad member are gone again
    assert fresh.entries() == []
    assert not (tmp_path / "etc").exists() and not (tmp_path.parent / "evil").exists()


def test_blob_with_the_wrong_content_is_refused(store, fresh, tmp_path):
    save_model(store, "ai/tiny", tmp_path / "good.tar")
    m = store.manifest(store.resolve("ai/tiny"))
    lic = m.layers[-1]
    name = f"blobs/sha256/{lic.digest[7:]}"
    rebuild(tmp_path / "good.tar", tmp_path / "bad.tar", [member(name, b"GPL\n")], drop=name)
    with pytest.raises(DigestMismatchError) as e:
        load_layout(fresh, tmp_path / "bad.tar")
    assert lic.digest in e.value.message and name in e.value.message
    assert blobs_in(fresh) == [] and fresh.entries() == []


def test_missing_blob_is_refused(store, fresh, tmp_path):
    save_model(store, "ai/tiny", tmp_path / "good.tar")
    m = store.manifest(store.resolve("ai/tiny"))
    rebuild(tmp_path / "good.tar", tmp_path / "bad.tar", [], drop=f"blobs/sha256/{m.layers[0].digest[7:]}")
    with pytest.raises(LayoutError) as e:
        load_layout(fresh, tmp_path / "bad.tar")
    assert m.layers[0].digest in e.value.message and "missing" in e.value.message
    assert blobs_in(fresh) == []


def write_layout(root: Path, manifest: Manifest, blobs: list[bytes], name: str = REF) -> None:
    LayoutDir(root).create()
    for data in [*blobs, manifest.raw]:
        (root / "blobs" / "sha256" / _doc(data, mt.OCI_EMPTY).digest[7:]).write_bytes(data)
    entry = {**manifest.descriptor().to_dict(), "annotations": {mt.ANNOTATION_REF_NAME: name}}
    (root / "index.json").write_bytes(canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                                                      "manifests": [entry]}))


def _doc(data: bytes, media_type: str) -> Descriptor:
    return Descriptor(media_type, f"sha256:{hashlib.sha256(data).hexdigest()}", len(data))


def test_manifest_failing_its_schema_is_refused(store, fresh, tmp_path):
    good = store.manifest(store.resolve("ai/tiny"))
    config = store.read_blob(good.config.digest)
    layer = b"plain text"
    m = Manifest.build(good.config, [_doc(layer, "text/plain")])
    write_layout(tmp_path / "bad", m, [config, layer])
    with pytest.raises(SchemaViolationError) as e:
        load_layout(fresh, tmp_path / "bad")
    assert str(tmp_path / "bad") in e.value.message and "$.layers[0].mediaType" in e.value.message
    assert blobs_in(fresh) == [] and fresh.entries() == []


def test_unknown_config_media_type_is_refused(fresh, tmp_path):
    config, layer = b"{}", b"data"
    m = Manifest.build(_doc(config, "application/json"), [_doc(layer, mt.GGUF)])
    write_layout(tmp_path / "odd", m, [config, layer])
    with pytest.raises(LayoutError) as e:
        load_layout(fresh, tmp_path / "odd")
    assert "'application/json'" in e.value.message and "not a model config" in e.value.message


def test_bare_ref_name_is_kept_untagged_or_tagged_with_tag(store, tmp_path):
    good = store.manifest(store.resolve("ai/tiny"))
    blobs = [store.read_blob(d.digest, limit=1 << 24) for d in good.blob_descriptors()]
    write_layout(tmp_path / "sk", good, blobs, name="latest")
    a = LayoutStore(tmp_path / "a")
    [loaded] = load_layout(a, tmp_path / "sk").models
    assert loaded.tags == [] and loaded.ignored_names == ["latest"]
    assert [e.ref_name for e in a.entries()] == [None]
    b = LayoutStore(tmp_path / "b")
    [loaded] = load_layout(b, tmp_path / "sk", tag="team/tiny:v1").models
    assert loaded.tags == ["docker.io/team/tiny:v1"] and b.resolve("team/tiny:v1") == good.digest


# -- CLI -----------------------------------------------------------------------------------------------


def test_cli_save_and_load(store, tmp_path, monkeypatch):
    app = typer.Typer()
    app.command("save")(save_cli.command)
    app.command("load")(load_cli.command)
    runner = CliRunner()
    monkeypatch.setenv("MDL_HOME", str(store.root))
    r = runner.invoke(app, ["save", "ai/tiny", "-o", str(tmp_path / "x.tar"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["names"] == [REF]
    monkeypatch.setenv("MDL_HOME", str(tmp_path / "other"))
    r = runner.invoke(app, ["load", str(tmp_path / "x.tar")])
    assert r.exit_code == 0, r.output
    assert f"Loaded {REF}" in r.stdout


# -- skopeo ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_skopeo_reads_saved_layout(store, fresh, tmp_path):
    digest = store.resolve("ai/tiny")
    save_model(store, "ai/tiny", tmp_path / "saved")
    r = subprocess.run(["skopeo", "copy", "--quiet", f"oci:{tmp_path / 'saved'}:{REF}",
                        f"oci:{tmp_path / 'other'}:{REF}"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    loaded = load_layout(fresh, tmp_path / "other")
    assert [(x.digest, x.tags) for x in loaded.models] == [(digest, [REF])]
    assert fresh.manifest(digest).raw == store.manifest(digest).raw  # byte for byte
    assert check_model_in_store(fresh, digest).ok

    r = subprocess.run(["skopeo", "copy", "--quiet", f"oci:{tmp_path / 'saved'}:{REF}",
                        f"oci-archive:{tmp_path / 'sk.tar'}:{REF}"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    other = LayoutStore(tmp_path / "from-archive")
    assert load_layout(other, tmp_path / "sk.tar").models[0].digest == digest
