"""The runner's counters, rendered in the Prometheus text exposition format (version 0.0.4).

Kept in process and thread-safe: request handlers count from the event loop, generation threads
count tokens. The scheduler's own figures (loads, load time, models loaded) are read when scraped.
"""

from __future__ import annotations

import threading
from collections import defaultdict

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


def _number(v: float) -> str:
    if isinstance(v, int) or float(v).is_integer():
        return str(int(v))
    return repr(float(v))


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], int] = defaultdict(int)
        self._tokens: dict[str, int] = defaultdict(int)
        self._prompt_tokens: dict[str, int] = defaultdict(int)
        self._streams_cancelled = 0

    def request(self, route: str, status: int) -> None:
        with self._lock:
            self._requests[(route, str(status))] += 1

    def stream_cancelled(self) -> None:
        with self._lock:
            self._streams_cancelled += 1

    def tokens(self, model: str, generated: int, prompt: int = 0) -> None:
        if generated <= 0 and prompt <= 0:
            return
        with self._lock:
            self._tokens[model] += max(0, generated)
            self._prompt_tokens[model] += max(0, prompt)

    def render(self, scheduler) -> str:
        with self._lock:
            requests = sorted(self._requests.items())
            tokens = sorted(self._tokens.items())
            prompt = sorted(self._prompt_tokens.items())
            cancelled = self._streams_cancelled
        lines = [
            "# HELP mdl_requests_total HTTP requests answered, by route and status code.",
            "# TYPE mdl_requests_total counter",
        ]
        lines += [f"mdl_requests_total{_labels(route=r, status=s)} {n}" for (r, s), n in requests]
        lines += [
            "# HELP mdl_tokens_generated_total Tokens generated, by model.",
            "# TYPE mdl_tokens_generated_total counter",
        ]
        lines += [f"mdl_tokens_generated_total{_labels(model=m)} {n}" for m, n in tokens]
        lines += [
            "# HELP mdl_prompt_tokens_total Prompt tokens processed, by model.",
            "# TYPE mdl_prompt_tokens_total counter",
        ]
        lines += [f"mdl_prompt_tokens_total{_labels(model=m)} {n}" for m, n in prompt]
        lines += [
            "# HELP mdl_streams_cancelled_total Streamed answers stopped because the client went away.",
            "# TYPE mdl_streams_cancelled_total counter",
            f"mdl_streams_cancelled_total {cancelled}",
        ]

        stats = getattr(scheduler, "stats", None)
        loads = int(getattr(stats, "loads", 0) or 0)
        load_seconds = float(getattr(stats, "load_seconds_total", 0.0) or 0.0)
        unloads = int(getattr(stats, "unloads", 0) or 0)
        try:
            loaded = list(scheduler.loaded())
        except Exception:  # noqa: BLE001 - a scrape must not fail because of the scheduler
            loaded = []
        lines += [
            "# HELP mdl_model_load_seconds Time spent loading models into the engine.",
            "# TYPE mdl_model_load_seconds summary",
            f"mdl_model_load_seconds_sum {_number(load_seconds)}",
            f"mdl_model_load_seconds_count {loads}",
            "# HELP mdl_model_unloads_total Models unloaded (evicted, idle or removed).",
            "# TYPE mdl_model_unloads_total counter",
            f"mdl_model_unloads_total {unloads}",
            "# HELP mdl_models_loaded Models loaded in the engine now.",
            "# TYPE mdl_models_loaded gauge",
            f"mdl_models_loaded {len(loaded)}",
            "# HELP mdl_model_loaded_bytes Size of each loaded model's weights.",
            "# TYPE mdl_model_loaded_bytes gauge",
        ]
        for info in loaded:
            lines.append(f"mdl_model_loaded_bytes{_labels(model=info.reference or info.digest)} "
                         f"{int(info.size or 0)}")
        return "\n".join(lines) + "\n"
