"""Where each layer of a model goes in a model directory (spec/runtime.md, spec/annotations.md §2), and
which layers a set of path patterns selects (`mdl extract`, `mdl pull --include`).

A layer is placed at its `org.cncf.model.filepath` (the legacy `org.cnai` spelling too), normalized.
Older Docker artifacts carry no annotation; their files get the names spec/runtime.md gives by media
type: `model.gguf` (several GGUF layers: the shard names `model-NNNNN-of-NNNNN.gguf`, in layer order),
`model.safetensors` (or shard names), `model.dduf`, `template.jinja`, `model.mmproj`, `license.txt`
(then `license-2.txt`, ...). Archive layers (Docker's legacy `vllm.config.tar` and `dir.tar`,
ModelPack's `tar`, `tar+gzip` and `tar+zstd`) are unpacked under the model directory itself; their
own path (the annotation, else the media type's file name) is what patterns select them by.

Patterns are shell globs (`fnmatch`, case-sensitive): one with a `/` matches the whole path (`*`
crosses `/`); one without matches the whole path or its last segment (`*.json` selects
`tokenizer/tokenizer.json`). A layer is selected when it matches an `include` pattern (or none is
given) and no `exclude` pattern.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from fnmatch import fnmatchcase

from .artifact_check import effective_filepath, path_problem
from .content.descriptor import Descriptor, Manifest
from .errors import MdlError, UsageError
from .spec import mediatypes as mt


class UnsafePathError(MdlError):
    """A file would land outside the model directory, or somewhere it must not be written."""

    kind = "unsafe-path"

    def __init__(self, where: str, path: str, problem: str):
        self.where, self.path, self.problem = where, path, problem
        super().__init__(f"{where}: {path!r} is refused: {problem}",
                         "nothing outside the target directory is written; check the artifact, or the directory")


# Compression of an archive layer, by its encoding: None for a plain tar.
_ENCODINGS = {"tar": None, "tar+gzip": "gzip", "tar+zstd": "zstd"}
_DOCKER_TARS = {mt.VLLM_CONFIG_TAR: "vllm.config.tar", mt.DIR_TAR: "dir.tar"}
# Docker layer types with the file name spec/runtime.md gives them when unannotated: (stem, suffix, role).
_DOCKER_NAMES = {
    mt.GGUF: ("model", ".gguf", "weight"),
    mt.SAFETENSORS: ("model", ".safetensors", "weight"),
    mt.DDUF: ("model", ".dduf", "weight"),
    mt.MMPROJ: ("model", ".mmproj", "projector"),
    mt.CHAT_TEMPLATE: ("template", ".jinja", "template"),
    mt.LICENSE: ("license", ".txt", "license"),
    mt.MODEL_FILE: (None, None, "file"),
}
# Roles a runtime needs to run a model (what `mdl serve` refuses a partial model without).
RUNTIME_ROLES = frozenset({"weight", "projector", "template"})


@dataclass(frozen=True)
class Placement:
    index: int  # the layer's position in the manifest
    desc: Descriptor
    path: str  # normalized: where the file goes, or (archive) the layer's own path, for selection
    archive: bool  # unpacked under the model directory rather than written at `path`
    compression: str | None  # of an archive: None (plain tar), "gzip" or "zstd"
    role: str  # weight, projector, template, license, file, weight.config, doc, code, dataset

    def describe(self) -> str:
        return f"layer {self.index} ({self.path})"


def shard_name(i: int, n: int, stem: str = "model", suffix: str = ".gguf") -> str:
    """llama.cpp's split naming (`llama_split_path`): `<prefix>-%05d-of-%05d.gguf`, 1-based."""
    return f"{stem}-{i:05d}-of-{n:05d}{suffix}"


def layer_role(desc: Descriptor) -> str:
    """What a layer is for, by media type (and, for ModelPack's weight.config, the `.jinja` filepath)."""
    kind = mt.modelpack_layer_kind(desc.media_type)
    if kind is not None:
        if kind[0] == "weight.config" and (effective_filepath(desc.annotations or {}) or "").endswith(".jinja"):
            return "template"
        return kind[0]
    if desc.media_type in _DOCKER_TARS:
        return "weight.config"
    return _DOCKER_NAMES.get(desc.media_type, (None, None, "file"))[2]


def place(manifest: Manifest, where: str) -> list[Placement]:
    """Every layer of `manifest` with its place; UnsafePathError (naming `where`, the model) for a path
    that breaks spec/annotations.md §2, two layers placed at one path, or a layer with no path at all."""
    modelpack = manifest.config.media_type in mt.MODELPACK_CONFIGS  # only ModelPack reads org.cnai keys
    counts: dict[str, int] = {}
    for d in manifest.layers:
        if effective_filepath(d.annotations or {}, modelpack=modelpack) is None and d.media_type in _DOCKER_NAMES:
            counts[d.media_type] = counts.get(d.media_type, 0) + 1
    seen: dict[str, int] = {}
    numbers: dict[str, int] = {}
    out = []
    for i, d in enumerate(manifest.layers):
        kind = mt.modelpack_layer_kind(d.media_type)
        archive = d.media_type in _DOCKER_TARS or (kind is not None and kind[1] != "raw")
        if kind is not None and archive and kind[1] not in _ENCODINGS:
            raise UnsafePathError(where, f"layer {i}", f"its encoding {kind[1]!r} is not one mdl can unpack")
        compression = _ENCODINGS[kind[1]] if kind is not None and archive else None
        filepath = effective_filepath(d.annotations or {}, modelpack=modelpack)
        if filepath is not None:
            problem = path_problem(filepath) if isinstance(filepath, str) else "is not a string"
            path = posixpath.normpath(filepath) if problem is None else ""
            if problem is None and path in (".", ""):
                problem = "names the model directory itself"
            if problem is not None:
                raise UnsafePathError(where, str(filepath), f"the file path of layer {i} {problem}")
        else:
            numbers[d.media_type] = numbers.get(d.media_type, 0) + 1
            path = _fallback_name(where, i, d, counts.get(d.media_type, 1), numbers[d.media_type])
        if not archive:
            if path in seen:
                raise UnsafePathError(where, path, f"layers {seen[path]} and {i} are both placed there")
            seen[path] = i
        out.append(Placement(i, d, path, archive, compression, layer_role(d)))
    return out


def _fallback_name(where: str, i: int, d: Descriptor, count: int, number: int) -> str:
    if d.media_type in _DOCKER_TARS:
        return _DOCKER_TARS[d.media_type]
    stem, suffix, _ = _DOCKER_NAMES.get(d.media_type, (None, None, None))
    if stem is None:
        raise UnsafePathError(where, f"layer {i}", f"it has no {mt.ANNOTATION_FILEPATH} annotation and its media "
                                                    f"type {d.media_type} gives no file name")
    if d.media_type == mt.LICENSE:
        return f"{stem}{suffix}" if number == 1 else f"{stem}-{number}{suffix}"
    return f"{stem}{suffix}" if count == 1 else shard_name(number, count, stem, suffix)


def check_patterns(patterns: list[str] | tuple[str, ...], option: str) -> list[str]:
    for p in patterns:
        if not p or p.startswith("/") or "\x00" in p:
            raise UsageError(f"invalid {option} pattern {p!r}",
                             "give a glob relative to the model directory, e.g. 'config.json' or '*.safetensors'")
    return list(patterns)


def matches(path: str, patterns: list[str] | tuple[str, ...]) -> bool:
    """Whether `path` matches one of the glob `patterns` (rules in the module docstring)."""
    base = path.rsplit("/", 1)[-1]
    return any(fnmatchcase(path, p) or ("/" not in p and fnmatchcase(base, p)) for p in patterns)


def select(placements: list[Placement], include=(), exclude=()) -> list[Placement]:
    """The placements `include` (all when empty) and `exclude` select, in layer order."""
    return [p for p in placements
            if (not include or matches(p.path, include)) and not (exclude and matches(p.path, exclude))]


def no_match_error(where: str, placements: list[Placement], include, exclude) -> UsageError:
    shown = ", ".join(p.path for p in placements[:8]) + (", ..." if len(placements) > 8 else "")
    given = " ".join([*(f"--include {p!r}" for p in include), *(f"--exclude {p!r}" for p in exclude)])
    return UsageError(f"no file of {where} matches {given}", f"its files are: {shown}")


__all__ = ["Placement", "RUNTIME_ROLES", "UnsafePathError", "check_patterns", "layer_role", "matches",
           "no_match_error", "place", "select", "shard_name"]
