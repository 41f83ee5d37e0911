"""`mdl serve`: serve the local store's models over Docker Model Runner's HTTP API (OpenAI-compatible).

llama-cpp-python, Starlette and uvicorn are the `mdl[serve]` extra: they are imported here, inside
the command, never when `mdl` or its CLI is imported. Without them the command fails with a hint.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import sys
import threading
from typing import Optional

import typer

from ..errors import MdlError, MissingExtraError, UsageError
from ..runner import links_dir
from ..runner.scheduler import Scheduler
from ..runner.security import Policy, is_loopback
from ..runner.settings import NEVER, parse_duration
from ..runner.validation import InvalidRequestError
from ..runner.worker import load_worker, stop_all
from ..signing.keys import load_public_key
from ..sizes import SIZE_RULE, parse_size
from .boundary import Settings, report_error
from .common import open_store

_EXTRA_MODULES = {"llama_cpp": "llama-cpp-python", "starlette": "starlette", "uvicorn": "uvicorn"}


def check_serve_extra() -> None:
    missing = [pkg for mod, pkg in _EXTRA_MODULES.items() if importlib.util.find_spec(mod) is None]
    if missing:
        raise MissingExtraError(missing)


def reap_interval_for(keep_alive: float) -> float:
    """How often idle models are looked at: often enough for the shortest keep-alive a model may be
    configured with to be honoured within a second."""
    if keep_alive == NEVER:
        return 1.0
    return max(0.1, min(keep_alive / 4, 1.0))


def command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(12434, "--port", min=0, max=65535, help="Port to listen on (0: any free port)."),
    max_models: int = typer.Option(1, "--max-models", min=1, help="Models kept loaded at once."),
    memory_budget: str = typer.Option(None, "--memory-budget",
                                      help=f"Most bytes of weights kept loaded (default: no limit): {SIZE_RULE}."),
    keep_alive: str = typer.Option("5m", "--keep-alive", metavar="DURATION",
                                   help="Unload a model idle this long (30s, 5m, 1h; 0: at once; -1: never). "
                                        "`mdl configure` sets it per model."),
    idle_timeout: Optional[float] = typer.Option(None, "--idle-timeout", min=0, hidden=True,
                                                 help="--keep-alive in seconds (older spelling)."),
    threads: int = typer.Option(None, "--threads", min=1, help="CPU threads per model (default: llama.cpp's)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="MDL_API_KEY", show_default=False,
                                          help="Require this key on every route but /health (Authorization: "
                                               "Bearer KEY or x-api-key). Prefer the MDL_API_KEY variable: "
                                               "a command line is visible to other users."),
    cors_origins: list[str] = typer.Option([], "--cors-origin", metavar="ORIGIN",
                                           help="Allow cross-origin requests from this web origin, e.g. "
                                                "https://app.example (repeatable; '*' allows any)."),
    allowed_hosts: list[str] = typer.Option([], "--allowed-host", metavar="NAME",
                                            help="Also answer requests whose Host header names NAME "
                                                 "(repeatable; loopback names are always allowed)."),
    pull_from: list[str] = typer.Option([], "--pull-from", metavar="REGISTRY",
                                        help="Let POST /models/create pull only from this registry "
                                             "(repeatable; default: any)."),
    pull_verify_key: str = typer.Option(None, "--pull-verify-key", metavar="KEY.pub",
                                        help="POST /models/create pulls only models this public key signed "
                                             "(either cosign form), and keeps the signature with them."),
) -> None:
    """Serve local models over an OpenAI-compatible HTTP API (Docker Model Runner's paths)."""
    check_serve_extra()
    budget = parse_size(memory_budget, "--memory-budget") if memory_budget else None
    try:
        keep = float(idle_timeout) if idle_timeout is not None else parse_duration(keep_alive, "--keep-alive")
    except InvalidRequestError as e:
        raise UsageError(f"invalid --keep-alive {keep_alive!r}: use a duration like 30s, 5m, 1h, 0 or -1") from e
    if api_key is not None and not api_key.strip():
        raise UsageError("--api-key (or MDL_API_KEY) is empty")
    policy = Policy.for_server(host, api_key=api_key, cors_origins=cors_origins, allowed_hosts=allowed_hosts,
                               pull_from=pull_from or None, pull_verify_key=pull_verify_key)
    if not is_loopback(host.strip("[]")) and not api_key:
        print(f"warning: listening on {host} without an API key: anyone who can reach this address can run, "
              "pull and delete your models; set MDL_API_KEY (or --api-key)", file=sys.stderr, flush=True)
    if pull_verify_key is not None:
        load_public_key(pull_verify_key)  # a bad key fails now, not at the first pull
    store = open_store()

    import uvicorn

    from ..runner.app import create_app

    # Each model loads in a worker process of its own: a crash there fails its requests, not the server.
    scheduler = Scheduler(store, links_dir(store), max_models=max_models, memory_budget=budget,
                          idle_timeout=keep, n_threads=threads, loader=load_worker)
    app = create_app(store, scheduler, env=os.environ, reap_interval=reap_interval_for(keep), policy=policy,
                     log_to=sys.stderr)
    config = uvicorn.Config(app, host=host, port=port, log_level="debug" if Settings.debug else "warning",
                            access_log=Settings.debug, lifespan="on", timeout_graceful_shutdown=3,
                            timeout_keep_alive=30)
    server = _Server(config, on_stop=app.state.stopping.set)  # ends followed and in-flight streams
    try:
        server.run()
    except SystemExit as e:  # uvicorn exits when it cannot bind
        if e.code:
            raise MdlError(f"could not listen on {host}:{port}",
                           "is another server using the port? choose another with --port") from None
    finally:
        scheduler.close()  # idempotent; covers a startup that failed before the lifespan ran
        stop_all()  # workers still answering requests the shutdown cut short
    if server.failed_to_start:
        raise MdlError(f"the server on {host}:{port} did not start", "run again with --debug to see why")


class _Server:
    """uvicorn's Server, printing the URL once listening and stopping cleanly (exit 0) on SIGINT/SIGTERM.

    uvicorn re-raises the signal it caught after shutting down, which would end the process with the
    signal's status; here a signal is the normal way to stop, so it only asks the server to exit."""

    def __new__(cls, config, on_stop=None):
        import uvicorn

        class Server(uvicorn.Server):
            failed_to_start = False

            @contextlib.contextmanager
            def capture_signals(self):
                if threading.current_thread() is not threading.main_thread():
                    yield
                    return
                handled = (signal.SIGINT, signal.SIGTERM)
                original = {sig: signal.signal(sig, self._on_signal) for sig in handled}
                try:
                    yield
                finally:
                    for sig, handler in original.items():
                        signal.signal(sig, handler)

            def _on_signal(self, sig, frame) -> None:
                if self.should_exit and sig == signal.SIGINT:
                    self.force_exit = True
                self.should_exit = True
                if on_stop is not None:
                    on_stop()

            async def startup(self, sockets=None) -> None:
                await super().startup(sockets=sockets)
                if self.should_exit and not self.started:
                    self.failed_to_start = True
                    return
                for server in getattr(self, "servers", []):
                    for sock in server.sockets or ():
                        addr = sock.getsockname()
                        host = addr[0] if ":" not in addr[0] else f"[{addr[0]}]"
                        print(f"Serving on http://{host}:{addr[1]} (OpenAI API at http://{host}:{addr[1]}/engines/v1)",
                              flush=True)
                        return

        return Server(config)


if __name__ == "__main__":  # `python -m mdl.cli.serve ...`, before the command is registered
    _app = typer.Typer(add_completion=False)
    _app.command()(command)
    try:
        _app(args=sys.argv[1:], prog_name="mdl serve", standalone_mode=False)
    except MdlError as _e:
        sys.exit(report_error(_e))
    sys.exit(0)
