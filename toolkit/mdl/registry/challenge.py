"""Parse `WWW-Authenticate` headers (RFC 9110 §11.6.1; the Docker token flow, distribution `docs/spec/auth/token.md`).

    WWW-Authenticate = challenge *( "," challenge )
    challenge        = auth-scheme [ 1*SP ( token68 / auth-param *( "," auth-param ) ) ]
    auth-param       = token "=" ( token / quoted-string )

Registries send `Basic realm="..."` (distribution's htpasswd) or
`Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"`.
A header that does not follow the grammar raises `RegistryError` and nothing else: a registry's
malformed header is the registry's fault, and the user is told so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import RegistryError

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9._~+/-]+=*")
_WS = " \t"


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower-cased: "basic", "bearer", ...
    params: dict[str, str] = field(default_factory=dict)  # keys lower-cased
    token68: str | None = None

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


class _Malformed(Exception):
    pass


def parse_challenges(header: str | None, registry: str = "the registry") -> list[Challenge]:
    """Every challenge in `header`, in order; RegistryError when the header is malformed or empty."""
    try:
        if header is None or not header.strip():
            raise _Malformed("the header is empty")
        return _Parser(header).challenges()
    except _Malformed as e:
        raise RegistryError(registry, "authentication", 401, "MALFORMED_CHALLENGE",
                            f"malformed WWW-Authenticate header: {e}",
                            hint="the registry sent an authentication challenge mdl cannot read; "
                                 "report it to the registry's operator") from None


class _Parser:
    def __init__(self, text: str):
        self.s = text
        self.i = 0

    def _skip_ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in _WS:
            self.i += 1

    def _peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def _token(self) -> str | None:
        m = _TOKEN.match(self.s, self.i)
        if not m:
            return None
        self.i = m.end()
        return m.group()

    def _quoted(self) -> str:
        assert self._peek() == '"'
        self.i += 1
        out = []
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == "\\":
                if self.i + 1 >= len(self.s):
                    raise _Malformed("a quoted string ends in a backslash")
                out.append(self.s[self.i + 1])
                self.i += 2
            elif c == '"':
                self.i += 1
                return "".join(out)
            else:
                out.append(c)
                self.i += 1
        raise _Malformed("a quoted string is not terminated")

    def _at_end_or_comma(self, pos: int) -> bool:
        j = pos
        while j < len(self.s) and self.s[j] in _WS:
            j += 1
        return j >= len(self.s) or self.s[j] == ","

    def challenges(self) -> list[Challenge]:
        out: list[Challenge] = []
        while True:
            while self.i < len(self.s) and self.s[self.i] in _WS + ",":
                self.i += 1
            if self.i >= len(self.s):
                break
            scheme = self._token()
            if scheme is None:
                raise _Malformed(f"expected an auth scheme at character {self.i + 1}")
            out.append(self._challenge(scheme.lower()))
        if not out:
            raise _Malformed("no challenge in the header")
        return out

    def _challenge(self, scheme: str) -> Challenge:
        if self.i < len(self.s) and self.s[self.i] not in _WS + ",":
            raise _Malformed(f"unexpected {self.s[self.i]!r} after auth scheme {scheme!r}")
        self._skip_ws()
        # token68 form: `Negotiate abc==`
        m = _TOKEN68.match(self.s, self.i)
        if m and self._at_end_or_comma(m.end()) and (m.group().endswith("=") or "=" not in m.group()):
            self.i = m.end()
            return Challenge(scheme, {}, m.group())
        params: dict[str, str] = {}
        while True:
            save = self.i
            while self.i < len(self.s) and self.s[self.i] in _WS + ",":  # empty list elements are allowed
                self.i += 1
            name = self._token()
            if name is None:
                self.i = save
                break
            self._skip_ws()
            if self._peek() != "=":
                self.i = save  # not a parameter: the next challenge's scheme
                break
            self.i += 1
            self._skip_ws()
            if self._peek() == '"':
                value = self._quoted()
            else:
                value = self._token()
                if value is None:
                    raise _Malformed(f"parameter {name!r} has no value")
            key = name.lower()
            if key in params:
                raise _Malformed(f"parameter {name!r} appears twice")
            params[key] = value
            self._skip_ws()
            if self._peek() == ",":
                self.i += 1
                continue
            if self._peek() == "":
                break
            raise _Malformed(f"unexpected {self._peek()!r} after parameter {name!r}")
        return Challenge(scheme, params)
