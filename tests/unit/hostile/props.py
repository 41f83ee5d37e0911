"""Hostile-input properties shared by the short CI run (`test_hostile.py`) and the long run (`bench/fuzz.py`).

Each property is (name, strategy, check): `check(example)` feeds one generated input to a parser and
must return normally or raise an MdlError; anything else (ValueError, KeyError, struct.error,
UnicodeDecodeError, RecursionError, MemoryError, ...) is a bug. Parsers of files run under
`tracemalloc` and must stay under `PEAK_LIMIT` even when a header declares gigabytes.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
import tracemalloc
import warnings
import zipfile
from functools import lru_cache
from pathlib import Path

from hypothesis import strategies as st

from mdl.content.descriptor import Manifest
from mdl.errors import MdlError
from mdl.formats import dduf, gguf, gguf_docker, safetensors
from mdl.reference import parse_reference
from mdl.registry.auth import Authenticator
from mdl.registry.challenge import Challenge, parse_challenges
from mdl.spec import mediatypes as mt
from mdl.spec import schemas
from mdl.artifact_check import path_problem

PEAK_LIMIT = 64 << 20
_DIR = Path(tempfile.mkdtemp(prefix="mdl-hostile-"))


def _file(name: str, data: bytes) -> Path:
    p = _DIR / f"{os.getpid()}-{name}"
    p.write_bytes(data)
    return p


def bounded(fn, *args):
    """Run fn(*args); only MdlError may escape, and peak traced memory stays under PEAK_LIMIT."""
    tracemalloc.start()
    try:
        try:
            fn(*args)
        except MdlError:
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK_LIMIT, f"{fn.__name__} peaked at {peak} bytes"


def only_mdl_errors(fn, *args):
    try:
        return fn(*args)
    except MdlError:
        return None


# -- byte mutations --------------------------------------------------------------------------------

HUGE = st.sampled_from([0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**62, 2**63 - 1, 2**64 - 1])


def mutations(limit: int):
    """A list of edits of a byte string whose interesting part is its first `limit` bytes."""
    offset = st.integers(0, limit)
    op = st.one_of(
        st.tuples(st.just("flip"), offset, st.integers(0, 255)),
        st.tuples(st.just("u64"), offset, HUGE),
        st.tuples(st.just("u32"), offset, HUGE.map(lambda v: v & 0xFFFFFFFF)),
        st.tuples(st.just("insert"), offset, st.binary(max_size=16)),
        st.tuples(st.just("delete"), offset, st.integers(1, 64)),
        st.tuples(st.just("truncate"), offset, st.just(0)),
    )
    return st.lists(op, min_size=1, max_size=4)


def mutate(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for kind, at, arg in ops:
        at = min(at, len(b))
        if kind == "flip":
            if at < len(b):
                b[at] ^= arg or 1
        elif kind == "u64":
            b[at:at + 8] = struct.pack("<Q", arg)
        elif kind == "u32":
            b[at:at + 4] = struct.pack("<I", arg)
        elif kind == "insert":
            b[at:at] = arg
        elif kind == "delete":
            del b[at:at + arg]
        elif kind == "truncate":
            del b[at:]
    return bytes(b)


# -- GGUF ------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def tiny_gguf() -> tuple[bytes, int]:
    from tests.fixtures.models import write_tiny_gguf

    p = write_tiny_gguf(_DIR / "tiny.gguf")[0]
    data = p.read_bytes()
    return data, gguf.read_header(p).data_offset


def check_gguf_mutation(ops) -> None:
    data, header_end = tiny_gguf()
    p = _file("m.gguf", mutate(data, [(k, min(at, header_end), a) for k, at, a in ops]))
    bounded(gguf.read_header, p)
    bounded(gguf_docker.describe_gguf, p)


_GGUF_VALUE_TYPES = st.integers(0, 15)


@st.composite
def gguf_structured(draw) -> bytes:
    """A GGUF header from parts, with huge counts and lengths where the format has a length."""
    out = bytearray(b"GGUF")
    out += struct.pack("<I", draw(st.sampled_from([2, 3, 1, 0, 4, 0x03000000, 2**32 - 1])))
    out += struct.pack("<Q", draw(st.one_of(st.integers(0, 4), HUGE)))  # tensor count
    n_kv = draw(st.integers(0, 4))
    out += struct.pack("<Q", draw(st.one_of(st.just(n_kv), HUGE)))
    for _ in range(n_kv):
        key = draw(st.binary(max_size=12))
        out += struct.pack("<Q", draw(st.one_of(st.just(len(key)), HUGE))) + key
        vtype = draw(_GGUF_VALUE_TYPES)
        out += struct.pack("<I", vtype)
        if vtype == 8:  # string
            s = draw(st.binary(max_size=12))
            out += struct.pack("<Q", draw(st.one_of(st.just(len(s)), HUGE))) + s
        elif vtype == 9:  # array
            out += struct.pack("<I", draw(_GGUF_VALUE_TYPES))
            out += struct.pack("<Q", draw(st.one_of(st.integers(0, 3), HUGE)))
        out += draw(st.binary(max_size=16))
    for _ in range(draw(st.integers(0, 2))):  # tensor infos
        name = draw(st.binary(max_size=8))
        out += struct.pack("<Q", len(name)) + name
        out += struct.pack("<I", draw(st.sampled_from([0, 1, 4, 5, 2**32 - 1])))
        out += b"".join(struct.pack("<Q", draw(HUGE)) for _ in range(2))
        out += struct.pack("<I", draw(st.integers(0, 40))) + struct.pack("<Q", draw(HUGE))
    return bytes(out)


def check_gguf_structured(data: bytes) -> None:
    p = _file("s.gguf", data)
    bounded(gguf.read_header, p)


# -- safetensors -------------------------------------------------------------------------------------

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                         st.floats(allow_nan=True), st.text(max_size=12))
JSON = st.recursive(JSON_SCALARS, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), kids, max_size=4)),
                    max_leaves=20)

_TENSOR = st.fixed_dictionaries({
    "dtype": st.one_of(st.sampled_from(["F32", "F16", "BF16", "I8", "U8", "F8_E4M3", "BOOL"]), JSON),
    "shape": st.one_of(st.lists(st.one_of(st.integers(0, 8), HUGE, st.integers(-5, -1)), max_size=4), JSON),
    "data_offsets": st.one_of(st.lists(st.one_of(st.integers(0, 64), HUGE), min_size=2, max_size=2), JSON),
})


@st.composite
def safetensors_file(draw) -> bytes:
    header = draw(st.one_of(
        st.dictionaries(st.text(max_size=8), _TENSOR, max_size=3).map(lambda d: json.dumps(d).encode()),
        JSON.map(lambda d: json.dumps(d).encode()),
        st.binary(max_size=64),
        st.integers(1, 100_000).map(lambda n: b"[" * n + b"]" * n),
    ))
    declared = draw(st.one_of(st.just(len(header)), HUGE, st.integers(0, len(header) + 8)))
    return struct.pack("<Q", declared) + header + draw(st.binary(max_size=64))


def check_safetensors(data: bytes) -> None:
    bounded(safetensors.read_header, _file("s.safetensors", data))


# -- DDUF ----------------------------------------------------------------------------------------------

NAMES = st.one_of(
    st.sampled_from(["model_index.json", "unet/config.json", "../evil", "/abs", "a\\b", "a/../b",
                     "a\x00b", "./x", "dir/", "a//b", "vae/model.safetensors"]),
    st.text(max_size=12),
)


@st.composite
def dduf_archive(draw) -> bytes:
    buf = io.BytesIO()
    warnings.simplefilter("ignore", UserWarning)  # duplicate names are wanted here
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name in draw(st.lists(NAMES, min_size=1, max_size=5)):
            info = zipfile.ZipInfo(name or "x")
            try:
                zf.writestr(info, draw(st.binary(max_size=32)))
            except (ValueError, UnicodeEncodeError):
                continue
    data = buf.getvalue()
    # a zip bomb by header: huge declared sizes or counts in the central directory / end record
    ops = draw(st.lists(st.tuples(st.sampled_from(["u32", "u64", "flip", "truncate"]),
                                  st.integers(0, len(data)), HUGE), max_size=3))
    ops = [(k, at, a & 0xFFFFFFFF if k == "u32" else (a & 0xFF if k == "flip" else a)) for k, at, a in ops]
    return mutate(data, ops)


def check_dduf(data: bytes) -> None:
    bounded(dduf.check_dduf, _file("a.dduf", data))


# -- manifests and configs ---------------------------------------------------------------------------

_VALID_MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
    "config": {"mediaType": mt.DOCKER_CONFIG_V01, "digest": "sha256:" + "a" * 64, "size": 10},
    "layers": [{"mediaType": mt.GGUF, "digest": "sha256:" + "b" * 64, "size": 20,
                "annotations": {"org.opencontainers.image.title": "m.gguf"}}],
}).encode()


@st.composite
def manifest_bytes(draw) -> bytes:
    return draw(st.one_of(
        mutations(len(_VALID_MANIFEST)).map(lambda ops: mutate(_VALID_MANIFEST, ops)),
        JSON.map(lambda d: json.dumps(d).encode()),
        st.binary(max_size=200),
        st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n),
        st.integers(1, 200_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    ))


def check_manifest(raw: bytes) -> None:
    only_mdl_errors(Manifest.parse, raw)
    only_mdl_errors(Manifest.parse, raw, "sha256:" + "c" * 64)


CONFIG_SCHEMAS = [schemas.DOCKER_CONFIG, schemas.DOCKER_CONFIG_WRITTEN, schemas.MODELPACK_CONFIG,
                  schemas.MODELPACK_CONFIG_WRITTEN, schemas.FILE_METADATA, schemas.OCI_MANIFEST,
                  schemas.DOCKER_MANIFEST, schemas.MODELPACK_MANIFEST]


def check_config(doc) -> None:
    for name in CONFIG_SCHEMAS:
        findings = schemas.validate(doc, name)  # findings only: no exception of any kind
        assert isinstance(findings, list)


# -- references, challenges, token responses, paths --------------------------------------------------

REF_TEXT = st.one_of(
    st.text(max_size=80),
    st.from_regex(r"[a-z0-9.:/_@-]{0,80}", fullmatch=True),
    st.from_regex(r"([a-z0-9.-]+(:[0-9]{1,6})?/)?[a-z0-9/_.-]{1,40}(:[\w.-]{0,130})?(@sha256:[0-9a-f]{0,70})?",
                  fullmatch=True),
)


def check_reference(text: str) -> None:
    from mdl.errors import ReferenceFormatError

    try:
        parse_reference(text)
    except ReferenceFormatError:
        pass


CHALLENGE_TEXT = st.one_of(
    st.text(max_size=120),
    st.lists(st.sampled_from(['Bearer', 'Basic', ' ', ',', '=', '"', '\\', 'realm', '"https://a/t"',
                              'service="r"', 'scope="x y"', 'abc==', '\t', 'a=b', '""']), max_size=20).map("".join),
)


def check_challenge(text: str) -> None:
    only_mdl_errors(parse_challenges, text)


@st.composite
def token_body(draw) -> tuple[int, bytes]:
    body = draw(st.one_of(
        JSON.map(lambda d: json.dumps(d).encode()),
        st.fixed_dictionaries({}, optional={"token": JSON, "access_token": JSON, "expires_in": JSON})
          .map(lambda d: json.dumps(d).encode()),
        st.binary(max_size=64),
        st.integers(1, 100_000).map(lambda n: b"[" * n),
    ))
    return draw(st.sampled_from([200, 200, 200, 401, 403, 500])), body


def check_token_response(example: tuple[int, bytes]) -> None:
    import requests

    status, body = example

    def send(*_args, **_kw):
        r = requests.models.Response()
        r.status_code = status
        r._content = body
        r.encoding = "utf-8"
        return r

    auth = Authenticator("registry.example", None, send)
    only_mdl_errors(auth._fetch_token, Challenge("bearer", {"realm": "https://auth.example/token"}), frozenset())


BAD_SEGMENT = st.sampled_from(["..", ".", ""])
SEGMENT = st.text(st.characters(blacklist_characters="/\\\x00"), min_size=1, max_size=8).filter(
    lambda s: s not in (".", ".."))


@st.composite
def bad_path(draw) -> str:
    parts = draw(st.lists(SEGMENT, min_size=1, max_size=4))
    kind = draw(st.sampled_from(["abs", "dotdot", "nul", "backslash", "empty"]))
    at = draw(st.integers(0, len(parts)))
    if kind == "abs":
        return "/" + "/".join(parts)
    if kind == "dotdot":
        parts.insert(at, draw(BAD_SEGMENT))
        return "/".join(parts)
    if kind == "nul":
        s = "/".join(parts)
        return s[:at] + "\x00" + s[at:]
    if kind == "backslash":
        s = "/".join(parts)
        return s[:at] + "\\" + s[at:]
    return ""


def check_bad_path(path: str) -> None:
    # Readers accept '.' and empty segments (spec/annotations.md §2); writers refuse all of these.
    assert path_problem(path, written=True) is not None, path


def check_any_path(path: str) -> None:
    problem = path_problem(path)
    if problem is None:
        assert path and not path.startswith("/") and "\x00" not in path and "\\" not in path
        assert ".." not in path.split("/")


PROPERTIES = [
    ("gguf-mutation", mutations(4096), check_gguf_mutation),
    ("gguf-structured", gguf_structured(), check_gguf_structured),
    ("safetensors", safetensors_file(), check_safetensors),
    ("dduf", dduf_archive(), check_dduf),
    ("manifest", manifest_bytes(), check_manifest),
    ("config", JSON, check_config),
    ("reference", REF_TEXT, check_reference),
    ("www-authenticate", CHALLENGE_TEXT, check_challenge),
    ("token-response", token_body(), check_token_response),
    ("bad-path", bad_path(), check_bad_path),
    ("any-path", st.text(max_size=40), check_any_path),
]
