"""The runner: resolve a stored model to the files llama.cpp opens, load it, and schedule requests.

- `resolve.py`: reference -> `ResolvedModel` (spec/runtime.md), cheap, per request;
- `validation.py`: the checks of an OpenAI-shaped request, before any model sees it;
- `engine.py`: one loaded llama.cpp model answering OpenAI-shaped requests (llama-cpp-python is
  imported there, lazily: `mdl` itself never needs it);
- `scheduler.py`: which models are loaded, who uses them, in what order.

`mdl run` and `mdl serve` share those. `mdl serve` adds the HTTP server (Starlette, the `serve`
extra): `app.py` builds it from `openai_api.py`, `models_api.py` and `ops_api.py` (the routes),
`dashboard.py` (the page at `/`, files in `static/`), `security.py` (Host, Origin, API key, JSON
bodies), `api_errors.py` (errors in OpenAI's shape), `request_body.py`, `catalog.py` (the models
listed), `pump.py` (blocking work feeding the event loop), `request_log.py` and `feeds.py` (recent
requests, the log), `settings.py` (per-model settings, keep-alive), `middleware.py` and `metrics.py`.
Its engines live in worker processes: `worker.py` (the server's side) and `worker_process.py`.
"""

from __future__ import annotations

from pathlib import Path

from ..store import LayoutStore
from .resolve import links_root


def links_dir(store: LayoutStore) -> Path:
    """Where the runner keeps the shard links of split models: `<store root>/runner/links`."""
    return links_root(store)
