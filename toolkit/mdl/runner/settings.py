"""Per-model settings (`POST /engines/_configure`, `mdl configure`) and keep-alive durations.

A model's settings apply when it is next loaded: its context size, how long it stays loaded while idle
(keep-alive), and the sampling values a request gets when it leaves them out. They are kept in memory
by the scheduler, per model ID and, when `mode` is given, per mode (a chat instance and an embeddings
instance of one model are two instances).

Keep-alive follows Docker and Ollama: a duration (`30s`, `5m`, `1h30m`, or seconds as a number), `0`
(unload as soon as the request ends) or any negative value (never unload). The default is 5 minutes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from .validation import InvalidRequestError, sampling_args

DEFAULT_KEEP_ALIVE = 300.0  # seconds, Docker Model Runner's idle unload
NEVER = math.inf
MAX_CONTEXT = 1 << 20
MODES = {"completion": False, "embedding": True}  # mode -> the scheduler's `embedding` flag
SAMPLING_KEYS = frozenset({"temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty",
                           "repeat_penalty", "seed", "max_tokens", "stop"})

_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(value: Any, what: str = "keep_alive") -> float:
    """Seconds from `30s`, `5m`, `1h30m`, `300` (seconds), `0`; `-1` (any negative) is NEVER."""
    if isinstance(value, bool) or value is None:
        raise InvalidRequestError(f"'{what}' must be a duration like 30s, 5m, 1h, 0 or -1", param=what)
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise InvalidRequestError(f"'{what}' must be finite", param=what)
        return NEVER if value < 0 else float(value)
    text = str(value).strip().lower()
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None and math.isfinite(number):
        return NEVER if number < 0 else number
    if text.startswith("-") and _parts(text[1:]) is not None:  # "-1s", "-5m": never, as Ollama reads them
        return NEVER
    seconds = _parts(text)
    if seconds is None:
        raise InvalidRequestError(f"'{what}' must be a duration like 30s, 5m, 1h30m, 0 or -1, got {value!r}",
                                  param=what)
    return seconds


def _parts(text: str) -> float | None:
    pos, total = 0, 0.0
    if not text:
        return None
    for m in _PART.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    return total if pos == len(text) else None


def format_duration(seconds: float | None) -> str:
    """`5m`, `1h30m`, `45s`, `0`, `never`: how ps and configure show a keep-alive."""
    if seconds is None:
        return ""
    if seconds == NEVER:
        return "never"
    if seconds == 0:
        return "0"
    if seconds < 1 or seconds != int(seconds):
        return f"{seconds:g}s"
    s, out = int(seconds), ""
    for unit, size in (("h", 3600), ("m", 60)):
        if s >= size:
            out += f"{s // size}{unit}"
            s %= size
    return out + (f"{s}s" if s or not out else "")


@dataclass(frozen=True)
class ModelSettings:
    """What `_configure` set for one model (None: not set, the server's default applies)."""

    context_size: int | None = None
    keep_alive: float | None = None
    sampling: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"context_size": self.context_size,
                "keep_alive": format_duration(self.keep_alive) if self.keep_alive is not None else None,
                "sampling": dict(self.sampling)}


def read_configure(body: dict) -> tuple[str, bool | None, ModelSettings]:
    """(model reference, embedding mode or None for both, settings) from a `_configure` body; Docker's
    spellings (`context-size`, `keep-alive`) and ours (`context_size`, `keep_alive`) are both read."""
    known = {"model", "mode", "context-size", "context_size", "keep_alive", "keep-alive", "sampling", "backend"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise InvalidRequestError(f"'{unknown[0]}' cannot be configured here (runtime flags are not supported)",
                                  param=unknown[0])
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequestError("'model' must name a model", param="model")
    mode = body.get("mode")
    if mode is not None and mode not in MODES:
        raise InvalidRequestError(f"'mode' must be one of {', '.join(MODES)}, got {mode!r}", param="mode")
    context = body.get("context_size", body.get("context-size"))
    if context is not None and (not isinstance(context, int) or isinstance(context, bool)
                                or not 1 <= context <= MAX_CONTEXT):
        raise InvalidRequestError(f"'context_size' must be an integer from 1 to {MAX_CONTEXT}, got {context!r}",
                                  param="context_size")
    keep = body.get("keep_alive", body.get("keep-alive"))
    keep_alive = parse_duration(keep) if keep is not None else None
    sampling = body.get("sampling") or {}
    if not isinstance(sampling, dict):
        raise InvalidRequestError("'sampling' must be an object of sampling parameters", param="sampling")
    for key in sampling:
        if key not in SAMPLING_KEYS:
            raise InvalidRequestError(f"'sampling.{key}' is not a sampling parameter "
                                      f"({', '.join(sorted(SAMPLING_KEYS))})", param=f"sampling.{key}")
    try:
        sampling_args(sampling)  # the same checks as a request's own values
    except InvalidRequestError as e:
        raise InvalidRequestError(e.message, param=f"sampling.{e.param}" if e.param else "sampling") from None
    settings = ModelSettings(context, keep_alive, {k: v for k, v in sampling.items() if v is not None})
    return model.strip(), (MODES[mode] if mode is not None else None), settings


def with_defaults(request: dict, defaults: dict) -> dict:
    """`request` with the configured sampling values it leaves out (or sets to null)."""
    if not defaults:
        return request
    merged = dict(request)
    for key, value in defaults.items():
        if merged.get(key) is None:
            merged[key] = value
    return merged
