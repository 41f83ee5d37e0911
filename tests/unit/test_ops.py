"""The choices `mdl.ops` makes for the CLI and the runner, without a registry: where `verify` looks, and
`package` refusing a signing key it could not use before doing any work."""

from __future__ import annotations

import pytest

from mdl.errors import UsageError
from mdl.ops.package import PackageRequest, package
from mdl.ops.verify import is_layout_dir, verify
from mdl.reference import parse_reference
from mdl.store import LayoutStore
from tests.fixtures.models import write_tiny_gguf


class _Opened(Exception):
    """Raised by a repository opener: the operation asked for the registry."""


def _no_registry(ref):
    raise _Opened(str(ref))


@pytest.fixture
def packaged(tmp_path) -> tuple[LayoutStore, str]:
    store = LayoutStore(tmp_path / "store")
    [gguf] = write_tiny_gguf(tmp_path / "tiny.gguf")
    result = package(store, PackageRequest(gguf=str(gguf)), parse_reference("registry.example.com/ai/tiny:v1"))
    return store, result.digest


def test_verify_checks_the_local_model_unless_remote_is_asked(packaged):
    store, digest = packaged
    result = verify(store, "registry.example.com/ai/tiny:v1", open_repository=_no_registry)
    assert result.ok and [r.digest for r in result.reports] == [digest] and result.signature is None
    with pytest.raises(_Opened, match="registry.example.com/ai/tiny:v1"):
        verify(store, "registry.example.com/ai/tiny:v1", open_repository=_no_registry, remote=True)
    with pytest.raises(_Opened):  # not in the store: the registry's copy is checked
        verify(store, "registry.example.com/ai/other:v1", open_repository=_no_registry)


def test_verify_checks_every_model_of_a_layout_directory(packaged, tmp_path):
    store, digest = packaged
    assert is_layout_dir(str(store.root)) and not is_layout_dir(str(tmp_path)) and not is_layout_dir(None)
    result = verify(LayoutStore(tmp_path / "elsewhere"), str(store.root), open_repository=_no_registry, remote=True)
    assert result.ok and [r.digest for r in result.reports] == [digest]


def test_package_refuses_a_sign_key_without_a_push_before_any_work(tmp_path):
    store = LayoutStore(tmp_path / "store")
    [gguf] = write_tiny_gguf(tmp_path / "tiny.gguf")
    with pytest.raises(UsageError, match="--sign-key signs what --push pushed"):
        package(store, PackageRequest(gguf=str(gguf)), parse_reference("ai/tiny:v1"), sign_key=tmp_path / "none.key")
    assert not (store.root / "blobs").exists()
