"""The typer app and its single error boundary.

Every command runs inside `main()`: an `MdlError` prints `error: …` and `hint: …` on stderr and
exits with the code of its kind (mdl.errors.OUTCOMES); anything else is a bug and says so in one
line. `--debug` (anywhere on the command line, or MDL_DEBUG=1) re-raises with the traceback instead.
"""

from __future__ import annotations

import gc
import os
import sys

import typer

try:  # typer vendors click from 0.26 on
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer
    from click import ClickException

from .. import __version__
from ..errors import InternalError, MdlError
from .boundary import Settings, report_error
from .lazy import CommandTable, lazy_group

# Each command's module is loaded only when that command runs (cli/lazy.py).
COMMANDS: CommandTable = {
    "package": ("package", "command", False),
    "list": ("list", "command", False),
    "ls": ("list", "command", True),
    "inspect": ("inspect", "command", False),
    "tag": ("tag", "command", False),
    "rm": ("rm", "command", False),
    "prune": ("prune", "command", False),
    "df": ("df", "command", False),
    "verify": ("verify", "command", False),
    "pull": ("pull", "command", False),
    "extract": ("extract", "command", False),
    "push": ("push", "command", False),
    "save": ("save", "command", False),
    "load": ("load", "command", False),
    "login": ("login", "login_command", False),
    "logout": ("login", "logout_command", False),
    "run": ("run", "command", False),
    "serve": ("serve", "command", False),
    "ps": ("ps", "command", False),
    "unload": ("unload", "command", False),
    "configure": ("configure", "command", False),
    "requests": ("requests_cmd", "command", False),
    "status": ("status", "command", False),
    "logs": ("logs", "command", False),
    "keygen": ("keygen", "command", False),
    "sign": ("sign", "command", False),
    "conformance": ("conformance", "conformance_app", False),
    "audit": ("audit", "command", False),
}


app = typer.Typer(
    name="mdl",
    cls=lazy_group(COMMANDS),
    help="Package AI models as OCI artifacts, move them through registries, verify and serve them.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        print(f"mdl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and protocol details."),
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the version and exit."),
) -> None:
    """mdl: models as OCI artifacts."""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("MDL_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    Settings.debug = debug
    try:
        # Outside standalone mode click returns typer.Exit's code instead of raising it.
        result = app(args=args, prog_name="mdl", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 130
    except ClickException as e:
        e.show()
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MdlError as e:
        if debug:
            raise
        return report_error(e)
    except BrokenPipeError:
        return 0
    except Exception as e:  # a bug: one line, not a traceback, unless --debug
        if debug:
            raise
        return report_error(InternalError(f"{type(e).__name__}: {e}"))


def entry() -> None:
    code = main()
    # Nothing is left to collect, but the collections at interpreter shutdown would still walk every
    # object the imports made: ~13 ms, a sixth of an everyday command (docs/performance.md).
    gc.freeze()
    sys.exit(code)
