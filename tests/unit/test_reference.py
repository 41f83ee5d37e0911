"""References: Docker's normalization (FACTS §1) over the distribution-spec grammar."""

from __future__ import annotations

import pytest

from mdl.errors import ReferenceFormatError
from mdl.reference import Reference, is_plain_http, model_id_query, parse_reference

HEX = "0123456789abcdef" * 4
DIGEST = "sha256:" + HEX


@pytest.mark.parametrize(
    "text, registry, repository, tag, digest, string",
    [
        ("smollm2", "docker.io", "ai/smollm2", "latest", None, "docker.io/ai/smollm2:latest"),
        ("smollm2:360M", "docker.io", "ai/smollm2", "360M", None, "docker.io/ai/smollm2:360M"),
        ("ai/smollm2", "docker.io", "ai/smollm2", "latest", None, "docker.io/ai/smollm2:latest"),
        ("myorg/model:v1", "docker.io", "myorg/model", "v1", None, "docker.io/myorg/model:v1"),
        ("docker.io/smollm2", "docker.io", "ai/smollm2", "latest", None, "docker.io/ai/smollm2:latest"),
        ("index.docker.io/ai/x:1", "docker.io", "ai/x", "1", None, "docker.io/ai/x:1"),
        ("library/x", "docker.io", "library/x", "latest", None, "docker.io/library/x:latest"),
        ("localhost:5000/x", "localhost:5000", "x", "latest", None, "localhost:5000/x:latest"),
        ("localhost/x:t", "localhost", "x", "t", None, "localhost/x:t"),
        ("127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000", "a/b/c", "t", None, "127.0.0.1:5000/a/b/c:t"),
        ("[::1]:5000/x", "[::1]:5000", "x", "latest", None, "[::1]:5000/x:latest"),
        ("ghcr.io/org/x:tag", "ghcr.io", "org/x", "tag", None, "ghcr.io/org/x:tag"),
        ("ghcr.io/x", "ghcr.io", "x", "latest", None, "ghcr.io/x:latest"),
        ("SmolLM2:Q4_K_M", "docker.io", "ai/smollm2", "Q4_K_M", None, "docker.io/ai/smollm2:Q4_K_M"),
        ("GHCR.IO/Org/Model:V1", "ghcr.io", "org/model", "V1", None, "ghcr.io/org/model:V1"),
        ("my_org/e---f.g_h.v2__x", "docker.io", "my_org/e---f.g_h.v2__x", "latest", None,
         "docker.io/my_org/e---f.g_h.v2__x:latest"),
        (f"ai/x@{DIGEST}", "docker.io", "ai/x", None, DIGEST, f"docker.io/ai/x@{DIGEST}"),
        (f"x:v2@{DIGEST}", "docker.io", "ai/x", "v2", DIGEST, f"docker.io/ai/x:v2@{DIGEST}"),
        (f"localhost:5000/x@{DIGEST}", "localhost:5000", "x", None, DIGEST, f"localhost:5000/x@{DIGEST}"),
        ("  smollm2  ", "docker.io", "ai/smollm2", "latest", None, "docker.io/ai/smollm2:latest"),
        ("deadbeefcafe", "docker.io", "ai/deadbeefcafe", "latest", None, "docker.io/ai/deadbeefcafe:latest"),
        # 64 hex is a name too; the store tries it as a model ID first (spec/references.md §3)
        (HEX, "docker.io", f"ai/{HEX}", "latest", None, f"docker.io/ai/{HEX}:latest"),
        ("index.docker.io/smollm2", "docker.io", "ai/smollm2", "latest", None, "docker.io/ai/smollm2:latest"),
    ],
)
def test_normalization(text, registry, repository, tag, digest, string):
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert str(ref) == string
    assert ref.name == f"{registry}/{repository}"
    assert parse_reference(str(ref)) == ref  # normalized form is a fixed point


@pytest.mark.parametrize(
    "text, problem_part",
    [
        ("", "empty"),
        ("   ", "empty"),
        (":tag", "name is missing"),
        (f"@{DIGEST}", "name is missing"),
        ("smol!lm", "invalid character '!'"),
        ("smol lm", "invalid character ' '"),
        ("ai/smöllm", "invalid character 'ö'"),
        ("x:t@g", "digest"),
        ("x:", "tag is empty"),
        ("x:-bad", "must not start with"),
        ("x:bad!tag", "invalid character '!' in tag"),
        ("x:" + "t" * 129, "over the limit of 128"),
        ("ai//x", "empty path component"),
        ("ai/x/", "empty path component"),
        ("ai/-x", "must start and end with a letter or digit"),
        ("ai/x..y", "must start and end with a letter or digit"),
        ("ai/x___y", "must start and end with a letter or digit"),
        ("x@sha256:abc", "64 lowercase hex"),
        ("x@sha256:" + HEX.upper(), "64 lowercase hex"),
        ("x@sha512:" + HEX * 2, "unsupported digest algorithm 'sha512'"),
        ("https://ghcr.io/x", "scheme"),
        ("bad_host:5000/x", "invalid registry host 'bad_host:5000'"),
        ("ghcr.io/" + "a" * 250, "over the limit of 255"),
    ],
)
def test_invalid(text, problem_part):
    with pytest.raises(ReferenceFormatError) as info:
        parse_reference(text)
    assert problem_part in info.value.problem
    assert info.value.reference == text
    assert text.strip()[:20] in info.value.message or text.strip() == ""


def test_length_limit_is_on_the_full_name():
    # "docker.io/ai/" is 13 characters: a 242-character name is exactly 255 in all
    ok = parse_reference("a" * 242)
    assert len(ok.name) == 255
    with pytest.raises(ReferenceFormatError, match="256 characters"):
        parse_reference("a" * 243)


def test_with_tag_and_digest():
    ref = parse_reference("ghcr.io/org/x:v1")
    assert str(ref.with_tag("v2")) == "ghcr.io/org/x:v2"
    assert str(ref.with_digest(DIGEST)) == f"ghcr.io/org/x@{DIGEST}"
    assert ref.with_digest(DIGEST).tag is None
    with pytest.raises(ReferenceFormatError):
        ref.with_tag("bad tag")
    with pytest.raises(ReferenceFormatError):
        ref.with_digest("sha256:1234")


def test_reference_is_hashable_and_familiar():
    a, b = parse_reference("smollm2"), parse_reference("docker.io/ai/smollm2:latest")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a.familiar() == "ai/smollm2:latest"
    assert parse_reference("ghcr.io/x").familiar() == "ghcr.io/x:latest"
    with pytest.raises(ReferenceFormatError):
        Reference("docker.io", "ai/x", None, None)


@pytest.mark.parametrize(
    "text, expected",
    [
        (DIGEST, DIGEST),
        (HEX, DIGEST),
        (HEX.upper(), DIGEST),
        ("sha256:" + HEX[:12], HEX[:12]),
        (HEX[:12], HEX[:12]),
        (HEX[:12].upper(), HEX[:12]),
        (HEX[:40], HEX[:40]),
        (HEX[:11], None),
        ("0123456789abcdeg", None),
        ("smollm2", None),
        ("sha256:" + HEX[:5], None),
        ("", None),
    ],
)
def test_model_id_query(text, expected):
    assert model_id_query(text) == expected


@pytest.mark.parametrize(
    "registry, plain",
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1", True),
        ("127.0.0.1:41234", True),
        ("[::1]", True),
        ("[::1]:5000", True),
        ("LOCALHOST:5000", True),
        ("docker.io", False),
        ("ghcr.io", False),
        ("localhost.example.com", False),
        ("127.0.0.2:5000", False),
        ("localhost:abc", False),
        ("[::2]:5000", False),
    ],
)
def test_is_plain_http(registry, plain):
    assert is_plain_http(registry) is plain
