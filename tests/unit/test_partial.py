"""A model pulled partially (`pull --include`): recorded in index.json, listed and verified as partial,
kept whole by gc, prune and `verify --all --repair`, refused by the runner and by save when what they
need is absent, completed by a later full pull. The source here is another local store (`StoreSource`):
the registry side of the same pull is in tests/integration/test_extract_registry.py."""

from __future__ import annotations

import json

import pytest

from mdl.errors import UsageError
from mdl.model_check import PartialModelError, check_model_in_store
from mdl.ops.pull import SKIPPED, pull
from mdl.ops.package import PackageRequest, package
from mdl.ops.save import save_model
from mdl.ops.verify import verify_store
from mdl.reference import Reference, parse_reference
from mdl.runner.resolve import resolve_model
from mdl.store import LayoutStore
from mdl.store.index import PARTIAL_ANNOTATION
from mdl.store.sides import StoreSource
from tests.fixtures import models

TAG = "docker.io/ai/tiny:1"


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> LayoutStore:
    """A store holding ai/tiny:1: a GGUF, a license and a chat template."""
    base = tmp_path_factory.mktemp("origin")
    store = LayoutStore(base / "home")
    gguf = models.write_tiny_gguf(base / "tiny.gguf")[0]
    (base / "LICENSE").write_text("MIT")
    (base / "t.jinja").write_text("{{ messages }}")
    package(store, PackageRequest(gguf=str(gguf), licenses=[str(base / "LICENSE")], chat_template=str(base / "t.jinja")),
            parse_reference(TAG))
    return store


def pull_from(origin: LayoutStore, store: LayoutStore, **kw):
    digest = origin.resolve(TAG)
    ref = Reference("docker.io", "ai/tiny", "1", digest)
    return pull(store, StoreSource(origin), ref, **kw)


@pytest.fixture
def partial(origin, tmp_path) -> LayoutStore:
    store = LayoutStore(tmp_path / "home")
    result = pull_from(origin, store, include=["LICENSE"])
    assert result.partial and sorted(result.absent) == ["t.jinja", "tiny.gguf"]
    assert list(result.outcomes.values()).count(SKIPPED) == 2
    return store


def test_the_index_records_the_model_as_partial(partial):
    digest = partial.resolve(TAG)
    entries = json.loads(partial.index_path.read_text())["manifests"]
    assert [e["annotations"][PARTIAL_ANNOTATION] for e in entries] == ["true"]
    assert partial.is_partial(digest) and [m.partial for m in partial.models()] == [True]


def test_verify_checks_what_is_there_and_reports_what_is_not(partial):
    report = check_model_in_store(partial, partial.resolve(TAG))
    assert report.ok and report.partial
    assert sorted(a["file"] for a in report.absent) == ["t.jinja", "tiny.gguf"]
    assert report.blobs_checked == 3  # manifest, config, license


def test_gc_verify_all_and_repair_keep_a_partial_model(partial):
    present = {d for d, _ in partial.blob_files()}
    assert partial.prune().deleted_blobs == []
    whole = verify_store(partial, repair=True)
    assert whole.ok and whole.report.broken_models == set() and whole.removed is None
    assert {d for d, _ in partial.blob_files()} == present
    assert partial.resolve(TAG)


def test_the_runner_refuses_a_partial_model_without_its_weights(partial, tmp_path):
    with pytest.raises(PartialModelError) as e:
        resolve_model(partial, "ai/tiny:1", tmp_path / "links")
    assert e.value.kind == "partial-model" and "tiny.gguf" in e.value.message and "t.jinja" in e.value.message
    assert e.value.outcome.http_status == 409 and "mdl pull ai/tiny:1" in e.value.hint


def test_a_partial_model_with_its_weights_runs(origin, tmp_path):
    store = LayoutStore(tmp_path / "home")
    pull_from(origin, store, exclude=["LICENSE"])
    assert store.is_partial(store.resolve(TAG))
    assert resolve_model(store, "ai/tiny:1", tmp_path / "links").model_path.is_file()


def test_save_refuses_a_partial_model(partial, tmp_path):
    with pytest.raises(PartialModelError, match="to save it"):
        save_model(partial, TAG, tmp_path / "out.tar")
    assert not (tmp_path / "out.tar").exists()


def test_push_refuses_a_partial_model(partial, tmp_path):
    from mdl.ops.push import push
    from mdl.store.sides import StoreTarget

    target = LayoutStore(tmp_path / "elsewhere")
    with pytest.raises(PartialModelError, match="to push it") as e:
        push(partial, StoreTarget(target), TAG, parse_reference("ai/copy:1"))
    assert e.value.kind == "partial-model" and "tiny.gguf" in e.value.message
    assert not (target.root / "index.json").exists() or target.entries() == []


def test_a_full_pull_completes_it_and_tags_keep_the_mark(origin, partial):
    digest = partial.resolve(TAG)
    partial.add_tag(digest, parse_reference("ai/other:1"))  # `mdl tag` of a partial model
    assert all(e.annotations.get(PARTIAL_ANNOTATION) == "true" for e in partial.entries())
    result = pull_from(origin, partial)
    assert not result.partial and result.fetched > 0
    assert not partial.is_partial(digest)
    assert all(PARTIAL_ANNOTATION not in (e.annotations or {}) for e in partial.entries())
    assert check_model_in_store(partial, digest).absent == []


def test_include_that_selects_everything_is_a_full_pull(origin, tmp_path):
    store = LayoutStore(tmp_path / "home")
    result = pull_from(origin, store, include=["*"])
    assert not result.partial and not store.is_partial(store.resolve(TAG))


def test_a_second_partial_pull_adds_files(origin, partial):
    result = pull_from(origin, partial, include=["*.jinja"])
    assert result.partial and result.absent == ["tiny.gguf"]
    assert partial.is_partial(partial.resolve(TAG))


def test_include_matching_nothing_fetches_nothing(origin, tmp_path):
    store = LayoutStore(tmp_path / "home")
    with pytest.raises(UsageError, match="no file of"):
        pull_from(origin, store, include=["*.safetensors"])
    assert store.models() == [] if store.index_path.exists() else True
