"""The runner: resolve a stored model to the files llama.cpp opens, load it, and schedule requests.

- `resolve.py`: reference -> `ResolvedModel` (spec/runtime.md), cheap, per request;
- `engine.py`: one loaded llama.cpp model answering OpenAI-shaped requests (llama-cpp-python is
  imported there, lazily: `mdl` itself never needs it);
- `scheduler.py`: which models are loaded, who uses them, in what order.

`mdl run` and `mdl serve` share all three.
"""

from __future__ import annotations

from pathlib import Path

from ..content.layout import LayoutStore


def links_dir(store: LayoutStore) -> Path:
    """Where the runner keeps the shard links of split models: `<store root>/runner/links`."""
    from .resolve import links_root

    return links_root(store)
