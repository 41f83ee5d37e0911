"""A running `mdl serve` for the API tests (Anthropic, Ollama, Responses, tools), and llama.cpp opened
directly on the same files, to compare answers with.

The store holds ai/tiny (the GGUF's own template), ai/tiny-embed, and ai/tools: a tiny GGUF whose
own chat template renders tools, past calls and tool results in Hermes/Qwen's syntax, with a
2048-token context (tools make long prompts with the tiny vocabulary). Test modules import the
fixtures: `from .api_server import api_server, direct  # noqa: F401`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mdl.ops.package import PackageRequest, package
from mdl.reference import parse_reference
from mdl.store import LayoutStore
from tests.fixtures import models

from .conftest import CREATED
from .test_serve import Server

HERMES_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\n"
    "{% if messages[0].role == 'system' %}{{ messages[0].content }}\n{% endif %}"
    "Tools:{% for tool in tools %} {{ tool.function | tojson }}{% endfor %}\n"
    "Call one with <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call><|im_end|>\n"
    "{% elif messages[0].role == 'system' %}<|im_start|>system\n{{ messages[0].content }}<|im_end|>\n{% endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'system' %}"
    "{%- elif message.role == 'assistant' and message.tool_calls %}<|im_start|>assistant\n{{ message.content or '' }}"
    "{% for tc in message.tool_calls %}<tool_call>{\"name\": \"{{ tc.function.name }}\", \"arguments\": "
    "{{ tc.function.arguments | tojson }}}</tool_call>{% endfor %}<|im_end|>\n"
    "{%- elif message.role == 'tool' %}<|im_start|>user\n<tool_response>{{ message.content }}</tool_response><|im_end|>\n"
    "{%- else %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TOOLS_CONTEXT = 2048
FILES = {"ai/tiny": "tiny.gguf", "ai/tools": "tools.gguf"}
CONTEXTS = {"ai/tiny": 256, "ai/tools": TOOLS_CONTEXT}


def build_api_store(base: Path) -> LayoutStore:
    inputs = base / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    store = LayoutStore(base / "home")

    def pack(ref: str, gguf: Path) -> None:
        package(store, PackageRequest(created=CREATED, gguf=str(gguf)), parse_reference(ref))

    pack("ai/tiny:latest", models.write_tiny_gguf(inputs / FILES["ai/tiny"], seed=1)[0])
    (inputs / "embed").mkdir(exist_ok=True)
    pack("ai/tiny-embed:latest", models.write_tiny_gguf(inputs / "embed" / "e.gguf", seed=4, pooling="mean",
                                                        chat_template=None)[0])
    pack("ai/tools:latest", models.write_tiny_gguf(inputs / FILES["ai/tools"], seed=5, chat_template=HERMES_TEMPLATE,
                                                   context_length=TOOLS_CONTEXT)[0])
    return store


@pytest.fixture(scope="module")
def api_base(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("apis")
    build_api_store(base)
    return base


@pytest.fixture(scope="module")
def api_server(api_base, tmp_path_factory):
    srv = Server(api_base / "home", tmp_path_factory.mktemp("apis-run"), "--max-models", "3")
    yield srv
    srv.stop()


class Direct:
    """llama-cpp-python on the test models' files, opened as its docs show (one Llama per file)."""

    def __init__(self, base: Path):
        self._base, self._open = base, {}

    def __call__(self, model: str = "ai/tiny"):
        import llama_cpp

        if model not in self._open:
            self._open[model] = llama_cpp.Llama(model_path=str(self._base / "inputs" / FILES[model]), n_threads=1,
                                                n_ctx=CONTEXTS[model], verbose=False)
        return self._open[model]

    def chat(self, messages, model: str = "ai/tiny", **kw) -> dict:
        return self(model).create_chat_completion(messages=messages, temperature=0, **kw)

    def close(self):
        for llm in self._open.values():
            llm.close()


@pytest.fixture(scope="module")
def direct(api_base):
    d = Direct(api_base)
    yield d
    d.close()
