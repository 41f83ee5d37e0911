"""WWW-Authenticate parsing (RFC 9110 §11.6.1; distribution's token auth)."""

from __future__ import annotations

import pytest

from mdl.registry.challenge import Challenge, parse_challenges
from mdl.registry.errors import RegistryError


def test_basic():
    assert parse_challenges('Basic realm="Registry Realm"') == [Challenge("basic", {"realm": "Registry Realm"})]


def test_bearer_docker_hub():
    header = ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
              'scope="repository:ai/smollm2:pull"')
    [c] = parse_challenges(header)
    assert c.scheme == "bearer" and c.realm == "https://auth.docker.io/token"
    assert c.params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                        "scope": "repository:ai/smollm2:pull"}


def test_scheme_and_keys_are_case_insensitive_values_are_not():
    [c] = parse_challenges('BEARER Realm="https://A/token", Service=Reg.Example')
    assert c.scheme == "bearer" and c.params == {"realm": "https://A/token", "service": "Reg.Example"}


def test_escapes_in_quoted_strings():
    [c] = parse_challenges(r'Basic realm="say \"hi\" \\ bye"')
    assert c.realm == 'say "hi" \\ bye'


def test_commas_inside_quotes_and_multiple_scopes():
    [c] = parse_challenges('Bearer realm="https://t/x",scope="repository:a:pull,push repository:b:pull"')
    assert c.params["scope"] == "repository:a:pull,push repository:b:pull"


def test_several_challenges_in_one_header():
    cs = parse_challenges('Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"')
    assert [c.scheme for c in cs] == ["newauth", "basic"]
    assert cs[0].params == {"realm": "apps", "type": "1", "title": 'Login to "apps"'}
    assert cs[1].params == {"realm": "simple"}


def test_bearer_then_basic():
    cs = parse_challenges('Bearer realm="https://t",service="s", Basic realm="r"')
    assert [c.scheme for c in cs] == ["bearer", "basic"] and cs[0].params["service"] == "s"


def test_token68_and_bare_schemes():
    cs = parse_challenges("Negotiate abc123==, Basic realm=x")
    assert cs[0] == Challenge("negotiate", {}, "abc123==") and cs[1].realm == "x"
    assert parse_challenges("Basic") == [Challenge("basic", {})]
    # by the grammar `realm=` alone is a token68, not a parameter without a value
    assert parse_challenges("Bearer realm=") == [Challenge("bearer", {}, "realm=")]


def test_whitespace_around_equals_and_empty_list_elements():
    [c] = parse_challenges('  Bearer   realm = "https://t" ,, service = s  ')
    assert c.params == {"realm": "https://t", "service": "s"}


@pytest.mark.parametrize("header", [
    "",
    "   ",
    None,
    'Bearer realm="https://unterminated',
    'Bearer realm="x" service="y"',  # a missing comma
    'Bearer realm=,service=x',
    '"quoted" realm=x',
    'Basic realm="x", =y',
    'Bearer realm="a", realm="b"',
    'Basic realm="ends in backslash\\',
    'Bearer@ realm=x',
    ',,,',
    'Bearer realm="x";service="y"',
])
def test_malformed_headers_raise_only_a_registry_error(header):
    with pytest.raises(RegistryError) as err:
        parse_challenges(header, "reg.example:5000")
    assert err.value.kind == "registry" and "reg.example:5000" in err.value.message
    assert "malformed WWW-Authenticate" in err.value.message


def test_fuzzed_headers_never_raise_anything_else():
    import random

    rng = random.Random(1234)
    alphabet = 'Basic Bearer realm= service ="\\,;:/ \t abcXYZ019-._~+'
    for _ in range(3000):
        header = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        try:
            out = parse_challenges(header)
        except RegistryError:
            continue
        assert out and all(isinstance(c, Challenge) for c in out)
