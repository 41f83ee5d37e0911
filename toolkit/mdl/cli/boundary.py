"""The CLI's boundary: settings resolved once from the command line, debug output, and how an
`MdlError` is shown to the user. Light on purpose: `cli.app` imports it before any command runs."""

from __future__ import annotations

import sys

from ..errors import MdlError


class Settings:
    """Resolved once by `main()` from the command line and environment."""

    debug = False


def debug_log(line: str) -> None:
    if Settings.debug:
        print(f"debug: {line}", file=sys.stderr, flush=True)


def report_error(error: MdlError) -> int:
    """Print `error: …` and `hint: …` on stderr; returns the exit code of the error's kind."""
    print(f"error: {error.message}", file=sys.stderr)
    if error.hint:
        print(f"hint: {error.hint}", file=sys.stderr)
    return error.exit_code
