"""The `mdl` command's entry point: the CLI loads with Python's cyclic garbage collector paused.

Loading typer and mdl's modules allocates many objects and frees next to none, so the 31-34
collections the allocations trigger find nothing: 6-8 ms of an everyday command's ~100, measured with
gc.callbacks (docs/performance.md). Once the command's module is loaded, cli/lazy.py freezes what
loading made and turns the collector on, before the command runs; a library user importing mdl never
has it paused.
"""

from __future__ import annotations

import gc


def entry() -> None:
    gc.disable()
    from .app import entry as run

    run()
