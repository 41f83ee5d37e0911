"""Walking a manifest graph: every blob reachable from a manifest or an index.

`successors()` (descriptor.py) says what one node points at; `reachable()` follows it through nested
manifests and indexes. Garbage collection, `verify --all`, copy and save all walk through here, so a
blob one of them counts as part of a model is part of it for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ..errors import MdlError, SchemaViolationError
from .descriptor import Descriptor, is_graph_node, parse_node, successors

MAX_DEPTH = 8  # nested indexes deeper than this are refused (a cycle cannot be built, but a chain can)


def reachable(root: Descriptor, read: Callable[[Descriptor], bytes | None], *,
              tolerant: bool = False) -> Iterator[Descriptor]:
    """Every descriptor reachable from `root` (not `root` itself), parents before children.

    `read(desc)` returns a node's bytes, or None when the node is absent (it is yielded, not entered).
    Damage (an unreadable or invalid node) raises, unless `tolerant`: then that node is skipped, as
    `verify --all` needs to report the rest of a damaged store."""
    yield from _walk(root, read, tolerant, 0)


def _walk(desc: Descriptor, read: Callable[[Descriptor], bytes | None], tolerant: bool,
          depth: int) -> Iterator[Descriptor]:
    if depth > MAX_DEPTH:
        if tolerant:
            return
        raise SchemaViolationError(f"manifest {desc.digest}", [("$", f"nested deeper than {MAX_DEPTH} levels")])
    try:
        raw = read(desc)
        if raw is None:
            return
        children = successors(parse_node(raw, desc.digest, desc.media_type))
    except MdlError:
        if tolerant:
            return
        raise
    for child in children:
        yield child
        if is_graph_node(child.media_type):
            yield from _walk(child, read, tolerant, depth + 1)


def reachable_digests(root: Descriptor, read: Callable[[Descriptor], bytes | None], *,
                      tolerant: bool = False) -> list[str]:
    """The digests `reachable` yields, each once, in walk order."""
    return list(dict.fromkeys(d.digest for d in reachable(root, read, tolerant=tolerant)))
