"""The typer app and its single error boundary.

Every command runs inside `main()`: an `MdlError` prints `error: …` and `hint: …` on stderr and
exits with the code of its kind (mdl.errors.OUTCOMES); anything else is a bug and says so in one
line. `--debug` (anywhere on the command line, or MDL_DEBUG=1) re-raises with the traceback instead.
"""

from __future__ import annotations

import os
import sys

import typer

try:  # typer vendors click from 0.26 on
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer
    from click import ClickException

from ..errors import InternalError, MdlError
from .common import Settings, report_error
from .conformance import conformance_app
from . import (df, inspect, keygen, list as list_cmd, load, login, package, prune, pull, push, rm, run, save, serve,
               sign, tag, verify)

app = typer.Typer(
    name="mdl",
    help="Package AI models as OCI artifacts, move them through registries, verify and serve them.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

app.command("package")(package.command)
app.command("list")(list_cmd.command)
app.command("ls", hidden=True)(list_cmd.command)
app.command("inspect")(inspect.command)
app.command("tag")(tag.command)
app.command("rm")(rm.command)
app.command("prune")(prune.command)
app.command("df")(df.command)
app.command("verify")(verify.command)
app.command("pull")(pull.command)
app.command("push")(push.command)
app.command("save")(save.command)
app.command("load")(load.command)
app.command("login")(login.login_command)
app.command("logout")(login.logout_command)
app.command("run")(run.command)
app.command("serve")(serve.command)
app.command("keygen")(keygen.command)
app.command("sign")(sign.command)
app.add_typer(conformance_app, name="conformance")


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and protocol details."),
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
    sys.exit(main())
