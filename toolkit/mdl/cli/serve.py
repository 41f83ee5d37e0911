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

import typer

from ..errors import MdlError, MissingExtraError
from ..runner import links_dir
from ..runner.scheduler import Scheduler
from ..sizes import SIZE_RULE, parse_size
from .common import Settings, open_store, report_error

_EXTRA_MODULES = {"llama_cpp": "llama-cpp-python", "starlette": "starlette", "uvicorn": "uvicorn"}


def check_serve_extra() -> None:
    missing = [pkg for mod, pkg in _EXTRA_MODULES.items() if importlib.util.find_spec(mod) is None]
    if missing:
        raise MissingExtraError(missing)


def reap_interval_for(idle_timeout: float | None) -> float | None:
    if not idle_timeout:
        return None
    return max(0.2, min(idle_timeout / 4, 30.0))


def command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(12434, "--port", min=0, max=65535, help="Port to listen on (0: any free port)."),
    max_models: int = typer.Option(1, "--max-models", min=1, help="Models kept loaded at once."),
    memory_budget: str = typer.Option(None, "--memory-budget",
                                      help=f"Most bytes of weights kept loaded (default: no limit): {SIZE_RULE}."),
    idle_timeout: float = typer.Option(None, "--idle-timeout", min=0,
                                       help="Unload a model unused for this many seconds."),
    threads: int = typer.Option(None, "--threads", min=1, help="CPU threads per model (default: llama.cpp's)."),
) -> None:
    """Serve local models over an OpenAI-compatible HTTP API (Docker Model Runner's paths)."""
    check_serve_extra()
    budget = parse_size(memory_budget, "--memory-budget") if memory_budget else None
    store = open_store()

    import uvicorn

    from ..runner.app import create_app

    scheduler = Scheduler(store, links_dir(store), max_models=max_models, memory_budget=budget,
                          idle_timeout=idle_timeout or None, n_threads=threads)
    app = create_app(store, scheduler, env=os.environ, reap_interval=reap_interval_for(idle_timeout))
    config = uvicorn.Config(app, host=host, port=port, log_level="debug" if Settings.debug else "warning",
                            access_log=Settings.debug, lifespan="on", timeout_graceful_shutdown=3,
                            timeout_keep_alive=30)
    server = _Server(config)
    try:
        server.run()
    except SystemExit as e:  # uvicorn exits when it cannot bind
        if e.code:
            raise MdlError(f"could not listen on {host}:{port}",
                           "is another server using the port? choose another with --port") from None
    finally:
        scheduler.close()  # idempotent; covers a startup that failed before the lifespan ran
    if server.failed_to_start:
        raise MdlError(f"the server on {host}:{port} did not start", "run again with --debug to see why")


class _Server:
    """uvicorn's Server, printing the URL once listening and stopping cleanly (exit 0) on SIGINT/SIGTERM.

    uvicorn re-raises the signal it caught after shutting down, which would end the process with the
    signal's status; here a signal is the normal way to stop, so it only asks the server to exit."""

    def __new__(cls, config):
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
