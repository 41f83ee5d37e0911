import pytest

from mdl.formats.classify import FileKind, classify, is_config_name

K = FileKind


@pytest.mark.parametrize("name, kind", [
    ("model.gguf", K.GGUF), ("MODEL.GGUF", K.GGUF), ("model-00001-of-00002.gguf", K.GGUF),
    ("sub/dir/x.gguf", K.GGUF), ("model.safetensors", K.SAFETENSORS),
    ("model-00001-of-00003.SafeTensors", K.SAFETENSORS), ("flux.dduf", K.DDUF),
    ("template.jinja", K.CHAT_TEMPLATE), ("chat_template.json", K.CHAT_TEMPLATE),
    ("my_chat_template.txt", K.CHAT_TEMPLATE), ("CHAT_TEMPLATE", K.CHAT_TEMPLATE),
    ("LICENSE", K.LICENSE), ("license.txt", K.LICENSE), ("LICENCE.md", K.LICENSE),
    ("COPYING", K.LICENSE), ("NOTICE", K.LICENSE), ("third_party_notices.txt", K.LICENSE),
    ("Apache-License-2.0", K.LICENSE),
    # order: the extension rules win over the name rules
    ("license.gguf", K.GGUF), ("license.jinja", K.CHAT_TEMPLATE), ("chat_template_license", K.CHAT_TEMPLATE),
    ("config.json", K.OTHER), ("README.md", K.OTHER), ("tokenizer.json", K.OTHER),
    ("tokenizer.model", K.OTHER), ("vocab.vocab", K.OTHER), ("model.bin", K.OTHER),
    ("script.py", K.OTHER), ("", K.OTHER), ("model.gguf.part", K.OTHER), ("gguf", K.OTHER),
    ("dir.gguf/config.json", K.OTHER), ("a\\b\\LICENSE", K.LICENSE),
])
def test_classify(name, kind):
    assert classify(name) is kind


@pytest.mark.parametrize("name, config", [
    ("config.json", True), ("README.md", True), ("notes.TXT", True), ("vocab.vocab", True),
    ("TOKENIZER.MODEL", True), ("model.bin", False), ("LICENSE.txt", False), ("x.gguf", False),
])
def test_is_config_name(name, config):
    assert is_config_name(name) is config


def test_weights_kinds():
    assert {k for k in FileKind if k.is_weights} == {K.GGUF, K.SAFETENSORS, K.DDUF}
