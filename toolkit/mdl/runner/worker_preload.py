"""Imported by the workers' forkserver before it forks any worker (multiprocessing's
`set_forkserver_preload`): its import is the preload. numpy's BLAS (which llama-cpp-python imports)
starts threads when imported unless told not to, and the forkserver must have none to fork."""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"

from .worker_process import preload  # noqa: E402 - after the variable is set

preload()
