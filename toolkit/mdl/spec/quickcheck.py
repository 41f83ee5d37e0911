"""A quick, sound check that a document passes one of the project's schemas.

jsonschema explains why a document fails, but importing it costs ~0.1 s of CPU (docs/performance.md):
more than everything `mdl verify` does besides hashing. Valid documents are the rule, so
`schemas.validate` asks this check first and loads jsonschema only for a document it does not accept.

Sound, not complete: whatever it accepts, jsonschema (Draft 2020-12, with its format checker) accepts
too. Each keyword is checked exactly as jsonschema checks it, on documents made of JSON values only
(what `json.loads` returns); where that is not cheap it declines (`Undecided`) and jsonschema decides:
a document holding other Python types, a `uri`, a `date-time` outside the plain RFC 3339 shape.
Declining aborts the whole check, so `not`, `if` and `oneOf` never see an inexact answer.
It compiles the keywords the schemas use and refuses any other (`UnsupportedSchema`), so a schema
that grows a new keyword is not checked by half; tests compare it with jsonschema on every
conformance document and on seeded mutations of them.
"""

from __future__ import annotations

import operator
import re
import threading
from datetime import date
from typing import Any, Callable

Check = Callable[[Any], bool]


class UnsupportedSchema(Exception):
    """The schema uses a keyword, or a form of one, that this check does not implement."""


class Undecided(Exception):
    """The check cannot tell cheaply; jsonschema must decide."""


# Keywords that assert nothing (the content vocabulary only annotates in 2020-12, and jsonschema
# does not check it): skipped.
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "$defs", "title", "description", "examples",
                          "default", "deprecated", "readOnly", "writeOnly",
                          "contentEncoding", "contentMediaType", "contentSchema"})

_JSON_SCALARS = (str, int, float, bool, type(None))


def is_plain_json(value: Any) -> bool:
    """Whether `value` holds only what `json.loads` makes (exact types: no subclasses, no tuples)."""
    kind = type(value)
    if kind is dict:
        return all(type(k) is str and is_plain_json(v) for k, v in value.items())
    if kind is list:
        return all(is_plain_json(v) for v in value)
    return kind in _JSON_SCALARS


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality as jsonschema defines it: 1 == 1.0, but true != 1 (plain JSON values)."""
    if a is b:
        return True
    if type(a) is list and type(b) is list:
        return len(a) == len(b) and all(map(json_equal, a, b))
    if type(a) is dict and type(b) is dict:
        return len(a) == len(b) and all(k in b and json_equal(v, b[k]) for k, v in a.items())
    if type(a) is bool or type(b) is bool:
        return False  # two equal bools are the same object, caught above
    return a == b


_TYPES: dict[str, Check] = {
    "null": lambda x: x is None,
    "boolean": lambda x: type(x) is bool,
    "integer": lambda x: type(x) is int or (type(x) is float and x.is_integer()),
    "number": lambda x: type(x) is int or type(x) is float,
    "string": lambda x: type(x) is str,
    "array": lambda x: type(x) is list,
    "object": lambda x: type(x) is dict,
}

# RFC 3339 date-time in its plain shape: jsonschema's checker (rfc3339-validator) accepts all of these,
# and also lower-case letters and leap seconds, which are left to it.
_DATE_TIME = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])-([0-9]{2})T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
                        r"(\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])")


def _date_time(x: Any) -> bool:
    if type(x) is not str:
        return True  # formats apply to strings only
    m = _DATE_TIME.fullmatch(x)
    if m is None:
        raise Undecided
    try:
        date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:  # no such day
        raise Undecided from None
    return True


def _undecided_for_strings(x: Any) -> bool:
    if type(x) is str:
        raise Undecided
    return True


_FORMATS: dict[str, Check] = {"date-time": _date_time, "uri": _undecided_for_strings}


class Compiler:
    """Compiles schemas into checks; `load(uri)` returns the schema document with that `$id`."""

    def __init__(self, load: Callable[[str], Any]):
        self._load = load
        self._compiled: dict[str, Check] = {}
        self._wanted: list[str] = []  # targets of `$ref`s met while compiling
        self._lock = threading.Lock()  # commands validate on several threads (pull, the runner)

    def check(self, uri: str) -> Check:
        """The check of the schema at `uri`: an absolute `$id`, with an optional `#/json/pointer`.
        Everything it refers to is compiled with it, so an unsupported keyword anywhere fails here."""
        with self._lock:
            new: dict[str, Check] = {}
            self._wanted = [uri]
            while self._wanted:
                target = self._wanted.pop()
                if target not in self._compiled and target not in new:
                    base, _, fragment = target.partition("#")
                    new[target] = self._node(_pointer(self._fetch(base), fragment), base)
            self._compiled.update(new)  # only once all of it compiled: no check refers to a missing one
            return self._compiled[uri]

    def _fetch(self, uri: str) -> Any:
        try:
            return self._load(uri)
        except (KeyError, OSError, ValueError) as e:  # not one of the schemas: jsonschema resolves it
            raise UnsupportedSchema(f"a schema that cannot be loaded: {uri} ({e})") from None

    def _node(self, schema: Any, base: str) -> Check:
        if schema is True:
            return lambda x: True
        if schema is False:
            return lambda x: False
        if type(schema) is not dict:
            raise UnsupportedSchema(f"a schema must be an object or a boolean, not {schema!r}")
        unknown = schema.keys() - _BUILDERS.keys() - _ANNOTATIONS - _READ_BY_OTHERS
        if unknown:
            raise UnsupportedSchema(f"keyword(s) {sorted(unknown)} in {base}")
        if schema.get("$id", base) != base:
            raise UnsupportedSchema(f"a nested $id ({schema['$id']}) in {base}")
        checks = [build(self, schema, base) for key, build in _BUILDERS.items() if key in schema]
        if len(checks) == 1:
            return checks[0]
        return lambda x: all(check(x) for check in checks)

    def _ref(self, ref: str, base: str) -> Check:
        if ref.startswith("#"):
            target = base + ref
        elif "://" in ref:
            target = ref
        else:  # a file name beside this schema: resolve against the base's directory
            target = base.rsplit("/", 1)[0] + "/" + ref
        target = target.removesuffix("#")
        self._wanted.append(target)
        compiled = self._compiled
        return lambda x: compiled[target](x)  # looked up when used: a schema may refer to itself


def _pointer(doc: Any, fragment: str) -> Any:
    if not fragment:
        return doc
    if not fragment.startswith("/"):
        raise UnsupportedSchema(f"a $ref fragment that is not a JSON pointer: #{fragment}")
    try:
        for part in fragment[1:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            doc = doc[int(part)] if type(doc) is list else doc[part]
    except (KeyError, IndexError, ValueError, TypeError):
        raise UnsupportedSchema(f"a $ref to nothing: #{fragment}") from None
    return doc


# One builder per keyword, each returning a check exact to jsonschema's. Keywords that only modify
# another (`then`, `minContains`, ...) are read by that keyword's builder.
_READ_BY_OTHERS = frozenset({"then", "else", "minContains", "maxContains"})


def _type(c: Compiler, s: dict, base: str) -> Check:
    names = s["type"] if type(s["type"]) is list else [s["type"]]
    if not set(names) <= _TYPES.keys():
        raise UnsupportedSchema(f"type {s['type']!r}")
    tests = [_TYPES[n] for n in names]
    return lambda x: any(t(x) for t in tests)


def _const(c: Compiler, s: dict, base: str) -> Check:
    value = s["const"]
    return lambda x: json_equal(x, value)


def _enum(c: Compiler, s: dict, base: str) -> Check:
    values = s["enum"]
    return lambda x: any(json_equal(v, x) for v in values)


def _ref(c: Compiler, s: dict, base: str) -> Check:
    return c._ref(s["$ref"], base)


def _properties(c: Compiler, s: dict, base: str) -> Check:
    props = {name: c._node(sub, base) for name, sub in s["properties"].items()}
    return lambda x: type(x) is not dict or all(check(x[n]) for n, check in props.items() if n in x)


def _additional_properties(c: Compiler, s: dict, base: str) -> Check:
    known = s.get("properties", {}).keys()
    rest = c._node(s["additionalProperties"], base)
    return lambda x: type(x) is not dict or all(rest(v) for k, v in x.items() if k not in known)


def _property_names(c: Compiler, s: dict, base: str) -> Check:
    name = c._node(s["propertyNames"], base)
    return lambda x: type(x) is not dict or all(map(name, x))


def _required(c: Compiler, s: dict, base: str) -> Check:
    names = s["required"]
    return lambda x: type(x) is not dict or all(n in x for n in names)


def _items(c: Compiler, s: dict, base: str) -> Check:
    if type(s["items"]) is list:
        raise UnsupportedSchema("an array form of items (use prefixItems)")
    each = c._node(s["items"], base)
    return lambda x: type(x) is not list or all(map(each, x))


def _contains(c: Compiler, s: dict, base: str) -> Check:
    match = c._node(s["contains"], base)
    low, high = s.get("minContains", 1), s.get("maxContains")

    def check(x: Any) -> bool:
        if type(x) is not list:
            return True
        matches = sum(1 for v in x if match(v))
        return matches >= low and (high is None or matches <= high)
    return check


def _pattern(c: Compiler, s: dict, base: str) -> Check:
    search = re.compile(s["pattern"]).search
    return lambda x: type(x) is not str or search(x) is not None


def _format(c: Compiler, s: dict, base: str) -> Check:
    if s["format"] not in _FORMATS:
        raise UnsupportedSchema(f"format {s['format']!r}")
    return _FORMATS[s["format"]]


def _size_bound(keyword: str, kind: type, holds: Callable[[int, int], bool]):
    """minItems and its kin: a bound on len() of one JSON type, others pass."""
    def build(c: Compiler, s: dict, base: str) -> Check:
        bound = s[keyword]
        return lambda x: type(x) is not kind or holds(len(x), bound)
    return build


def _number_bound(keyword: str, holds: Callable[[Any, Any], bool]):
    def build(c: Compiler, s: dict, base: str) -> Check:
        bound = s[keyword]
        return lambda x: not _TYPES["number"](x) or holds(x, bound)
    return build


def _all_of(c: Compiler, s: dict, base: str) -> Check:
    subs = [c._node(sub, base) for sub in s["allOf"]]
    return lambda x: all(sub(x) for sub in subs)


def _any_of(c: Compiler, s: dict, base: str) -> Check:
    subs = [c._node(sub, base) for sub in s["anyOf"]]
    return lambda x: any(sub(x) for sub in subs)


def _one_of(c: Compiler, s: dict, base: str) -> Check:
    subs = [c._node(sub, base) for sub in s["oneOf"]]
    return lambda x: sum(1 for sub in subs if sub(x)) == 1


def _not(c: Compiler, s: dict, base: str) -> Check:
    sub = c._node(s["not"], base)
    return lambda x: not sub(x)


def _if(c: Compiler, s: dict, base: str) -> Check:
    condition = c._node(s["if"], base)
    then = c._node(s.get("then", True), base)
    otherwise = c._node(s.get("else", True), base)
    return lambda x: then(x) if condition(x) else otherwise(x)


_BUILDERS: dict[str, Callable[[Compiler, dict, str], Check]] = {
    "type": _type, "const": _const, "enum": _enum, "$ref": _ref,
    "required": _required, "properties": _properties, "additionalProperties": _additional_properties,
    "minProperties": _size_bound("minProperties", dict, operator.ge), "propertyNames": _property_names,
    "items": _items, "contains": _contains,
    "minItems": _size_bound("minItems", list, operator.ge), "maxItems": _size_bound("maxItems", list, operator.le),
    "pattern": _pattern, "format": _format,
    "minLength": _size_bound("minLength", str, operator.ge), "maxLength": _size_bound("maxLength", str, operator.le),
    "minimum": _number_bound("minimum", lambda x, b: not x < b),  # as jsonschema words it: NaN passes
    "maximum": _number_bound("maximum", lambda x, b: not x > b),
    "allOf": _all_of, "anyOf": _any_of, "oneOf": _one_of, "not": _not, "if": _if,
}


def accepts(check: Check, document: Any) -> bool:
    """True when `check` accepts `document` for sure; False when jsonschema must decide."""
    if not is_plain_json(document):
        return False
    try:
        return check(document)
    except Undecided:
        return False
