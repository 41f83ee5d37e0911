"""The errors `mdl` raises on purpose.

Every error the user can cause is an `MdlError`: it has a stable `kind` (for tests, `--json` and
the conformance suite), a one-line `message` naming the thing that is wrong, and a `hint` saying
what to do. The CLI prints `error: <message>` and `hint: <hint>` and exits with `exit_code`; it
shows a traceback only under `--debug`. Subclasses carry fields; their prose is built here, once.
"""

from __future__ import annotations

import os


class MdlError(Exception):
    kind = "error"
    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(MdlError):
    """The command line itself is wrong (conflicting or missing options)."""

    kind = "usage"
    exit_code = 2


class InputPathError(MdlError):
    """A path given as input cannot be used: missing, unreadable, or the wrong kind of file."""

    kind = "input-path"

    def __init__(self, path: str | os.PathLike, problem: str, hint: str | None = None):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}", hint or "check the path and try again")


class MissingShardError(InputPathError):
    kind = "missing-shard"

    def __init__(self, missing: str | os.PathLike, total: int):
        self.total = total
        super().__init__(
            missing,
            f"shard missing (the model is split into {total} files)",
            "put every shard of the model in the same directory",
        )


class FormatError(MdlError):
    """A file's bytes do not follow its format (bad magic, truncated, absurd lengths)."""

    kind = "format"

    def __init__(self, path: str | os.PathLike | None, fmt: str, problem: str, hint: str | None = None):
        self.path = os.fspath(path) if path is not None else None
        self.format = fmt
        self.problem = problem
        where = f"{self.path}: " if self.path else ""
        super().__init__(
            f"{where}not a valid {fmt} file: {problem}",
            hint or f"check that the file is a complete {fmt} file",
        )


class ReferenceFormatError(MdlError):
    kind = "reference"
    exit_code = 2

    def __init__(self, reference: str, problem: str):
        self.reference = reference
        self.problem = problem
        super().__init__(
            f"invalid reference {reference!r}: {problem}",
            "use [registry/]namespace/name[:tag|@sha256:<digest>], e.g. ai/smollm2:360M",
        )


class ModelNotFoundError(MdlError):
    kind = "not-found"

    def __init__(self, reference: str, where: str = "the local store"):
        self.reference = reference
        super().__init__(
            f"model {reference} not found in {where}",
            "run `mdl list` to see the models you have, or `mdl pull` it",
        )


class AmbiguousReferenceError(MdlError):
    kind = "ambiguous"

    def __init__(self, reference: str, matches: list[str]):
        self.reference = reference
        self.matches = matches
        super().__init__(
            f"{reference} matches {len(matches)} models",
            "use more characters of the ID, or the full sha256 digest",
        )


class ConflictError(MdlError):
    """The operation would lose something the user did not ask to lose."""

    kind = "conflict"


class DigestMismatchError(MdlError):
    kind = "digest-mismatch"

    def __init__(self, what: str, expected: str, actual: str, expected_size: int | None = None,
                 actual_size: int | None = None):
        self.what = what
        self.expected = expected
        self.actual = actual
        self.expected_size = expected_size
        self.actual_size = actual_size
        if expected_size is not None and actual_size is not None and expected_size != actual_size:
            detail = f"size {actual_size} bytes, expected {expected_size}"
        else:
            detail = f"content hashes to {actual}"
        super().__init__(
            f"{what} {expected} is corrupt: {detail}",
            "the data was altered in storage or in transit; fetch it again from a trusted source",
        )


class SchemaViolationError(MdlError):
    """A document fails the project's JSON Schemas; `findings` lists (json path, message)."""

    kind = "schema"

    def __init__(self, what: str, findings: list[tuple[str, str]]):
        self.what = what
        self.findings = findings
        path, msg = findings[0] if findings else ("$", "invalid")
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        super().__init__(f"{what} fails its schema at {path}: {msg}{more}",
                         "run `mdl verify` for the full list of findings")


class StoreError(MdlError):
    """The local store is damaged or cannot be written."""

    kind = "store"


class DiskFullError(StoreError):
    kind = "disk-full"

    def __init__(self, where: str | os.PathLike, needed: int | None = None):
        self.where = os.fspath(where)
        self.needed = needed
        need = f" ({needed} bytes needed)" if needed else ""
        super().__init__(f"no space left on the device holding {self.where}{need}",
                         "free some space (`mdl prune`, `mdl rm`) or set MDL_HOME to a larger disk")


class InternalError(MdlError):
    """A bug in mdl: something it produced itself fails its own checks."""

    kind = "internal"
    exit_code = 70

    def __init__(self, message: str):
        super().__init__(f"internal error: {message}",
                         "this is a bug in mdl; please report it with the output of --debug")


class UnsupportedArtifactError(MdlError):
    """A manifest that is not a model artifact mdl can read (an image, an unknown config type)."""

    kind = "unsupported-artifact"

    def __init__(self, reference: str, config_media_type: str | None):
        self.reference = reference
        self.config_media_type = config_media_type
        super().__init__(
            f"{reference} is not a model artifact (config media type {config_media_type or 'missing'})",
            "mdl reads Docker model artifacts (config v0.1/v0.2) and CNCF ModelPack artifacts",
        )


class MissingExtraError(MdlError):
    """An optional dependency (an extra such as `serve`) is not installed."""

    kind = "missing-extra"

    def __init__(self, packages: list[str], extra: str = "serve"):
        self.packages = packages
        self.extra = extra
        verb = "is" if len(packages) == 1 else "are"
        super().__init__(f"this needs {', '.join(packages)}, which {verb} not installed (the `{extra}` extra)",
                         f"install it: CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install 'mdl[{extra}]'")
