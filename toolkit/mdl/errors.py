"""The errors `mdl` raises on purpose, and how each kind of error ends.

Every error the user can cause is an `MdlError`: it has a stable `kind` (for tests, `--json` and
the conformance suite), a one-line `message` naming the thing that is wrong, and a `hint` saying
what to do. The CLI prints `error: <message>` and `hint: <hint>` and exits with `exit_code`; it
shows a traceback only under `--debug`. Subclasses carry fields; their prose is built here, once.

`OUTCOMES` maps every kind, wherever its class is defined, to its exit code and to the HTTP status
and OpenAI error the runner answers with: one table, so the CLI and the runner cannot disagree and a
new kind is a new row (tests/unit/test_errors.py fails for a kind without one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """How an error of one kind ends: the CLI's exit code, the runner's HTTP status and OpenAI error."""

    exit_code: int
    http_status: int
    api_type: str
    api_code: str


_CLIENT = "invalid_request_error"
_SERVER = "server_error"
_AUTH = "authentication_error"

OUTCOMES: dict[str, Outcome] = {
    # kind:                  Outcome(exit code, HTTP status, OpenAI error type, OpenAI error code)
    "error":                   Outcome(1, 500, _SERVER, "error"),
    "internal":                Outcome(70, 500, _SERVER, "internal"),
    "usage":                   Outcome(2, 400, _CLIENT, "invalid_value"),
    # what the user named
    "reference":               Outcome(2, 400, _CLIENT, "invalid_model"),
    "not-found":               Outcome(1, 404, _CLIENT, "model_not_found"),
    "ambiguous":               Outcome(1, 400, _CLIENT, "ambiguous_model"),
    "conflict":                Outcome(1, 409, _CLIENT, "conflict"),
    "input-path":              Outcome(1, 500, _SERVER, "input_path"),
    "missing-shard":           Outcome(1, 500, _SERVER, "missing_shard"),
    "missing-extra":           Outcome(1, 500, _SERVER, "missing_extra"),
    "case-file":               Outcome(1, 500, _SERVER, "case_file"),
    # what a model's bytes and documents say
    "format":                  Outcome(1, 500, _SERVER, "model_damaged"),
    "schema":                  Outcome(1, 500, _SERVER, "model_damaged"),
    "digest":                  Outcome(1, 500, _SERVER, "digest"),
    "digest-mismatch":         Outcome(1, 500, _SERVER, "model_damaged"),
    "unsupported-artifact":    Outcome(1, 400, _CLIENT, "unsupported_model_format"),
    # the local store and archives
    "store":                   Outcome(1, 500, _SERVER, "store_error"),
    "disk-full":               Outcome(1, 507, _SERVER, "disk_full"),
    "blob-missing":            Outcome(1, 500, _SERVER, "model_damaged"),
    "blob-too-large":          Outcome(1, 500, _SERVER, "blob_too_large"),
    "layout":                  Outcome(1, 500, _SERVER, "layout"),
    "unsafe-archive":          Outcome(1, 500, _SERVER, "unsafe_archive"),
    "archive-too-large":       Outcome(1, 500, _SERVER, "archive_too_large"),
    "unsafe-path":             Outcome(1, 500, _SERVER, "unsafe_path"),
    "partial-model":           Outcome(1, 409, _CLIENT, "model_partial"),
    # registries (the runner's POST /models/create pulls)
    "unreachable":             Outcome(1, 502, _SERVER, "registry_unreachable"),
    "auth":                    Outcome(1, 401, _AUTH, "registry_auth"),
    "credentials":             Outcome(1, 401, _AUTH, "registry_auth"),
    "denied":                  Outcome(1, 403, "permission_error", "registry_denied"),
    "registry":                Outcome(1, 502, _SERVER, "registry_error"),
    "tls":                     Outcome(1, 502, _SERVER, "registry_tls"),
    "manifest-too-large":      Outcome(1, 500, _SERVER, "manifest_too_large"),
    "registry-nonconformant":  Outcome(1, 500, _SERVER, "registry_nonconformant"),
    # signatures: `mdl verify --key` exits 10-17, one code per way the check fails
    "signature":               Outcome(10, 500, _SERVER, "signature"),
    "unsigned":                Outcome(10, 500, _SERVER, "unsigned"),
    "bad-signature":           Outcome(11, 500, _SERVER, "bad_signature"),
    "payload-digest-mismatch": Outcome(12, 500, _SERVER, "model_damaged"),
    "wrong-subject":           Outcome(13, 500, _SERVER, "wrong_subject"),
    "key-format":              Outcome(14, 500, _SERVER, "key_format"),
    "bad-passphrase":          Outcome(15, 500, _SERVER, "bad_passphrase"),
    "key-permissions":         Outcome(16, 500, _SERVER, "key_permissions"),
    "keyless-unsupported":     Outcome(17, 500, _SERVER, "keyless_unsupported"),
    # the runner
    "invalid-request":         Outcome(1, 400, _CLIENT, "invalid_value"),
    "unsupported-format":      Outcome(1, 400, _CLIENT, "unsupported_model_format"),
    "model-damaged":           Outcome(1, 500, _SERVER, "model_damaged"),
    "model-too-large":         Outcome(1, 500, _SERVER, "model_too_large"),
    "load-failed":             Outcome(1, 500, _SERVER, "load_failed"),
    "registry-not-allowed":    Outcome(1, 403, "permission_error", "registry_not_allowed"),
    "worker-died":             Outcome(1, 500, _SERVER, "worker_died"),
    # the CLI talking to a running `mdl serve`
    "runner-unreachable":      Outcome(1, 502, _SERVER, "runner_unreachable"),
    "runner":                  Outcome(1, 502, _SERVER, "runner_error"),
    # a failed step of `mdl conformance e2e` (StepFailure sets these per instance)
    "findings":                Outcome(1, 500, _SERVER, "findings"),
    "http":                    Outcome(1, 500, _SERVER, "http"),
    "mismatch":                Outcome(1, 500, _SERVER, "mismatch"),
    "leftover":                Outcome(1, 500, _SERVER, "leftover"),
    # `mdl audit`: the registry could not be audited whole (unreachable, credentials refused, parts unreadable)
    "audit-incomplete":        Outcome(2, 502, _SERVER, "audit_incomplete"),
}


def outcome_of(kind: str) -> Outcome:
    """The row of `kind`; a kind without one (a bug the tests catch) ends like a plain MdlError."""
    return OUTCOMES.get(kind, OUTCOMES["error"])


class MdlError(Exception):
    kind = "error"
    # The row of OUTCOMES when it is not `kind`'s: for a subclass that keeps its parent's kind (what
    # callers match on) but ends differently.
    outcome_kind: str | None = None

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    @property
    def outcome(self) -> Outcome:
        return outcome_of(self.outcome_kind or self.kind)

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code


class UsageError(MdlError):
    """The command line itself is wrong (conflicting or missing options)."""

    kind = "usage"


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
