"""Fixtures of the runner tests: one local store holding small real models that llama.cpp loads.

The store is built once per test session (packaging is cheap, but there is no need to repeat it);
tests must not change the models in it. A test that damages a model builds its own store with
`build_runner_store(path)`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from mdl.store import LayoutStore
from mdl.ops.package import PackageRequest, package
from mdl.reference import parse_reference
from tests.fixtures import models

# A template unlike the GGUF's own: the same messages render to a different prompt.
TEMPLATE_LAYER = (
    "{% for message in messages %}"
    "{{ '### ' + message['role'] + ' says hello world to the model: ' + message['content'] + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### assistant says:' }}{% endif %}"
)

CREATED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

REFS = {
    "tiny": "ai/tiny:latest",
    "sharded": "ai/tiny-sharded:latest",
    "template": "ai/tiny-template:latest",
    "cncf": "ai/tiny-cncf:latest",
    "embed": "ai/tiny-embed:latest",
    "safetensors": "ai/st:latest",
}


def build_runner_store(root: Path, work: Path | None = None) -> LayoutStore:
    """A store at `root` with the runner test models packaged under the names in REFS."""
    work = work or root.parent / (root.name + "-inputs")
    work.mkdir(parents=True, exist_ok=True)
    store = LayoutStore(root)

    for sub in ("sharded", "cncf", "embed"):
        (work / sub).mkdir(exist_ok=True)

    def pack(ref: str, **kw) -> None:
        package(store, PackageRequest(created=CREATED, **kw), parse_reference(ref))

    tiny = models.write_tiny_gguf(work / "tiny.gguf", seed=1)[0]
    pack(REFS["tiny"], gguf=str(tiny))
    shards = models.write_tiny_gguf(work / "sharded" / "tiny.gguf", seed=2, n_shards=3)
    pack(REFS["sharded"], gguf=str(shards[0]))
    template = work / "template.jinja"
    template.write_text(TEMPLATE_LAYER)
    pack(REFS["template"], gguf=str(tiny), chat_template=str(template))
    cncf = models.write_tiny_gguf(work / "cncf" / "tiny.gguf", seed=3)[0]
    pack(REFS["cncf"], gguf=str(cncf), format="cncf")
    embed = models.write_tiny_gguf(work / "embed" / "tiny-embed.gguf", seed=4, pooling="mean",
                                   chat_template=None)[0]
    pack(REFS["embed"], gguf=str(embed))
    st = models.write_safetensors_dir(work / "st", n_shards=1)
    pack(REFS["safetensors"], safetensors_dir=str(st))
    return store


@pytest.fixture(scope="session")
def runner_store(tmp_path_factory) -> LayoutStore:
    """LayoutStore with ai/tiny, ai/tiny-sharded (3 shards), ai/tiny-template (a chat-template layer),
    ai/tiny-cncf (ModelPack), ai/tiny-embed (pooling mean, no chat template) and ai/st (safetensors)."""
    base = tmp_path_factory.mktemp("runner")
    return build_runner_store(base / "home", base / "inputs")


@pytest.fixture(scope="session")
def runner_home(runner_store) -> Path:
    """The root of `runner_store`: set MDL_HOME to it to use those models from the `mdl` command."""
    return runner_store.root
