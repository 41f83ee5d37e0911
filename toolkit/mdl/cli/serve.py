"""`mdl serve`: serve the local store's models over Docker Model Runner's HTTP API (OpenAI-compatible).

llama-cpp-python, Starlette and uvicorn are the `mdl[serve]` extra: they are imported here, inside
the command, never when `mdl` or its CLI is imported. Without them the command fails with a hint.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import sys

import typer

from ..errors import MdlError, MissingExtraError, UsageError
from .common import Settings, open_store

_EXTRA_MODULES = {"llama_cpp": "llama-cpp-python", "starlette": "starlette", "uvicorn": "uvicorn"}

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "ki": 1 << 10, "kib": 1 << 10, "mi": 1 << 20, "mib": 1 << 20,
          "gi": 1 << 30, "gib": 1 << 30, "ti": 1 << 40, "tib": 1 << 40}


def check_serve_extra() -> None:
    missing = [pkg for mod, pkg in _EXTRA_MODULES.items() if importlib.util.find_spec(mod) is None]
    if missing:
        raise MissingExtraError(missing)


def parse_bytes(text: str | None) -> int | None:
    """`8GiB`, `512MiB`, `2G`, `1.5GB`, `1073741824` -> bytes; None or empty -> None."""
    if text is None or not str(text).strip():
        return None
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise UsageError(f"invalid size {text!r}", "give bytes, optionally with a unit: 8GiB, 512MiB, 2GB")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value <= 0:
        raise UsageError(f"invalid size {text!r}: must be positive", "e.g. --memory-budget 8GiB")
    return value


def reap_interval_for(idle_timeout: float | None) -> float | None:
    if not idle_timeout:
        return None
    return max(0.2, min(idle_timeout / 4, 30.0))


def command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(12434, "--port", min=0, max=65535, help="Port to listen on (0: any free port)."),
    max_models: int = typer.Option(1, "--max-models", min=1, help="Models kept loaded at once."),
    memory_budget: str = typer.Option(None, "--memory-budget",
                                      help="Most bytes of weights kept loaded, e.g. 8GiB (default: no limit)."),
    idle_timeout: float = typer.Option(None, "--idle-timeout", min=0,
                                       help="Unload a model unused for this many seconds."),
    threads: int = typer.Option(None, "--threads", min=1, help="CPU threads per model (default: llama.cpp's)."),
) -> None:
    """Serve local models over an OpenAI-compatible HTTP API (Docker Model Runner's paths)."""
    check_serve_extra()
    budget = parse_bytes(memory_budget)
    store = open_store()

    import uvicorn

    from ..runner import links_dir
    from ..runner.app import create_app
    from ..runner.scheduler import Scheduler

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
                import threading

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
    from .app import _report

    _app = typer.Typer(add_completion=False)
    _app.command()(command)
    try:
        _app(args=sys.argv[1:], prog_name="mdl serve", standalone_mode=False)
    except MdlError as _e:
        sys.exit(_report(_e))
    sys.exit(0)
