"""Parse and normalize model references the way Docker's model tools do.

Grammar: the OCI distribution spec v1.1 (`spec.md`, "Pulling manifests": `<name>` and `<reference>`),
with Docker's normalization on top (docker/model-runner `normalizeModelName` and `ParseReference`):

- the first `/`-separated component is a registry when it contains `.` or `:` or is `localhost`;
  otherwise the registry is `docker.io`; `index.docker.io` normalizes to `docker.io`, as distribution/reference does;
- a name on Docker Hub with a single path component gets the organization `ai/`
  (`smollm2` -> `docker.io/ai/smollm2`, `docker.io/smollm2` -> `docker.io/ai/smollm2`);
- the name is lower-cased, the tag keeps its case; with neither tag nor digest the tag is `latest`;
- `name@sha256:<64 hex>` is a digest reference; `name:tag@sha256:<hex>` keeps both.

A local model may also be named by its ID (the manifest digest): `sha256:<64 hex>`, 64 hex, or a
prefix of at least 12 hex characters (`model_id_query`); the store tries the ID before the name, and
hex that names no stored model is a name (`docker.io/ai/<hex>:latest`, spec/references.md §3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ReferenceFormatError

DEFAULT_REGISTRY = "docker.io"
DEFAULT_ORG = "ai"
DEFAULT_TAG = "latest"
NAME_MAX = 255  # distribution's NameTotalLengthMax, over "registry/repository"
SHORT_ID_LEN = 12

# distribution-spec: path components `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HEX_PREFIX = re.compile(r"[0-9a-f]{12,64}")
# A registry host: DNS labels (or an IPv6 literal in brackets) and an optional port.
_LABEL = r"(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])"
_REGISTRY = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])(?::[0-9]{{1,5}})?")
_COMPONENT_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789._-")


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str | None = DEFAULT_TAG
    digest: str | None = None

    def __post_init__(self) -> None:
        if not self.registry or not self.repository:
            raise ReferenceFormatError(f"{self.registry}/{self.repository}", "registry and repository are required")
        if self.tag is not None and not _TAG.fullmatch(self.tag):
            raise ReferenceFormatError(self.tag, _tag_problem(self.tag))
        if self.digest is not None and not _DIGEST.fullmatch(self.digest):
            raise ReferenceFormatError(self.digest, "a digest is sha256: followed by 64 lowercase hex characters")
        if self.tag is None and self.digest is None:
            raise ReferenceFormatError(self.name, "a reference needs a tag or a digest")

    @property
    def name(self) -> str:
        """`registry/repository`, e.g. `docker.io/ai/smollm2`."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        s = self.name
        if self.tag is not None:
            s += f":{self.tag}"
        if self.digest is not None:
            s += f"@{self.digest}"
        return s

    def familiar(self) -> str:
        """The short form Docker prints: `ai/smollm2:latest` for Docker Hub, the full form elsewhere."""
        s = str(self)
        prefix = DEFAULT_REGISTRY + "/"
        return s[len(prefix):] if s.startswith(prefix) else s

    def with_tag(self, tag: str) -> Reference:
        """The same repository at `tag` (any digest is dropped)."""
        return Reference(self.registry, self.repository, tag, None)

    def with_digest(self, digest: str) -> Reference:
        """The same repository at `digest` (any tag is dropped)."""
        return Reference(self.registry, self.repository, None, digest)


def _tag_problem(tag: str) -> str:
    if tag == "":
        return "the tag is empty"
    if len(tag) > 128:
        return f"the tag is {len(tag)} characters, over the limit of 128"
    bad = next((c for c in tag if not (c.isascii() and (c.isalnum() or c in "._-"))), None)
    if bad is not None:
        return f"invalid character {bad!r} in tag {tag!r} (allowed: letters, digits, '_', '.', '-')"
    return f"tag {tag!r} must not start with '.' or '-'"


def _component_problem(component: str, whole: str) -> str:
    if component == "":
        return f"empty path component in {whole!r} (check for '//' or a trailing '/')"
    bad = next((c for c in component if c not in _COMPONENT_CHARS), None)
    if bad is not None:
        return f"invalid character {bad!r} in name component {component!r} (allowed: a-z, 0-9, '.', '_', '-')"
    return (f"name component {component!r} must start and end with a letter or digit and separate "
            "them only by '.', '_', '__' or dashes")


def parse_reference(text: str) -> Reference:
    """Parse `[registry/]path[:tag][@sha256:<hex>]` and normalize it as Docker does."""
    if not isinstance(text, str):
        raise ReferenceFormatError(repr(text), "a reference must be a string")
    original = text
    text = text.strip()
    if not text:
        raise ReferenceFormatError(original, "the reference is empty")
    if "://" in text:
        raise ReferenceFormatError(original, "a reference has no URL scheme; drop the 'scheme://' prefix")

    digest = None
    rest = text
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            algo = digest.split(":", 1)[0] if ":" in digest else ""
            if algo and algo != "sha256" and ":" in digest:
                problem = f"unsupported digest algorithm {algo!r} (only sha256)"
            else:
                problem = f"digest {digest!r} is not sha256: followed by 64 lowercase hex characters"
            raise ReferenceFormatError(original, problem)

    tag = None
    last_slash = rest.rfind("/")
    last_colon = rest.rfind(":")
    if last_colon > last_slash:
        rest, tag = rest[:last_colon], rest[last_colon + 1:]
        if not _TAG.fullmatch(tag):
            raise ReferenceFormatError(original, _tag_problem(tag))
    if not rest:
        raise ReferenceFormatError(original, "the name is missing (only a tag or digest was given)")

    name = rest.lower()
    parts = name.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        registry, path = parts[0], parts[1:]
        if not _REGISTRY.fullmatch(registry):
            raise ReferenceFormatError(original, f"invalid registry host {registry!r}")
        if registry == "index.docker.io":
            registry = DEFAULT_REGISTRY
    else:
        registry, path = DEFAULT_REGISTRY, parts
    for component in path:
        if not _COMPONENT.fullmatch(component):
            raise ReferenceFormatError(original, _component_problem(component, rest))
    if registry == DEFAULT_REGISTRY and len(path) == 1:
        path = [DEFAULT_ORG, *path]
    repository = "/".join(path)
    full = f"{registry}/{repository}"
    if len(full) > NAME_MAX:
        raise ReferenceFormatError(original, f"the name is {len(full)} characters, over the limit of {NAME_MAX}")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry, repository, tag, digest)


def model_id_query(text: str) -> str | None:
    """What `text` asks for if it names a local model by ID, else None.

    `sha256:<64 hex>` and 64 hex give the full digest `sha256:<hex>`; 12 to 63 hex characters
    (optionally after `sha256:`) give the lower-cased hex prefix to match model IDs against.
    """
    if not isinstance(text, str):
        return None
    s = text.strip().lower()
    if s.startswith("sha256:"):
        s = s[len("sha256:"):]
    if not _HEX_PREFIX.fullmatch(s):
        return None
    if len(s) == 64:
        return "sha256:" + s
    return s


def is_plain_http(registry: str) -> bool:
    """True for loopback registries Docker talks to over plain HTTP: localhost, 127.0.0.1, [::1] (any port)."""
    host = registry.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return False
        host, port = host[: end + 1], host[end + 1:]
    else:
        host, _, port = host.partition(":")
        port = ":" + port if port else ""
    if port and not re.fullmatch(r":[0-9]{1,5}", port):
        return False
    return host in ("localhost", "127.0.0.1", "[::1]")
