"""Progress renderers for copies (push, pull, save, load): `make_progress(mode)` gives a `Progress`.

Modes (`choose_mode` picks one from the command line and the terminal):
- "tty": one bar per blob in flight plus a total line on stderr, redrawn in place with ANSI escapes,
  at most ~10 times a second; finished blobs leave the bars.
- "plain": one line on stderr when a blob starts and one when it ends
  (`layer sha256:0123456789ab… 256MiB sent`): for logs and pipes.
- "json": newline-delimited JSON events on stdout, `{"event": "start"|"progress"|"done", "digest",
  "size", "what", "bytes", "outcome"}`; progress events at most ~4 a second per blob.
- "quiet": nothing.
All renderers are thread-safe (copies call them from worker threads). Call `close()` when the copy
ends, whether it failed or not: the tty renderer draws its last frame and leaves the cursor below it.
The final summary is the command's to print.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import TextIO

from ..content.descriptor import Descriptor
from ..content.transfer import NoProgress
from ..formats.units import format_binary_size

MODES = ("tty", "plain", "json", "quiet")


def choose_mode(json_output: bool, quiet: bool, isatty: bool) -> str:
    if json_output:
        return "json"
    if quiet:
        return "quiet"
    return "tty" if isatty else "plain"


def short_digest(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}…"


class QuietProgress(NoProgress):
    def close(self) -> None:
        pass


class PlainProgress:
    """A line per blob as it starts and as it ends."""

    def __init__(self, stream: TextIO | None = None):
        self._stream = stream
        self._lock = threading.Lock()
        self._what: dict[str, str] = {}

    def _out(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def _line(self, text: str) -> None:
        with self._lock:
            out = self._out()
            out.write(text + "\n")
            out.flush()

    def start(self, desc: Descriptor, what: str) -> None:
        with self._lock:
            self._what[desc.digest] = what
        self._line(f"{what} {short_digest(desc.digest)} {format_binary_size(desc.size)} ...")

    def advance(self, desc: Descriptor, nbytes: int) -> None:
        pass

    def done(self, desc: Descriptor, outcome: str) -> None:
        with self._lock:
            what = self._what.pop(desc.digest, "blob")
        self._line(f"{what} {short_digest(desc.digest)} {format_binary_size(desc.size)} {outcome}")

    def close(self) -> None:
        pass


class JsonProgress:
    """Newline-delimited JSON events, one object per line."""

    def __init__(self, stream: TextIO | None = None, interval: float = 0.25, clock=time.monotonic):
        self._stream = stream
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._state: dict[str, list] = {}  # digest -> [what, bytes, last emit time]

    def _emit(self, doc: dict) -> None:
        out = self._stream if self._stream is not None else sys.stdout
        out.write(json.dumps(doc, separators=(",", ":")) + "\n")
        out.flush()

    def start(self, desc: Descriptor, what: str) -> None:
        with self._lock:
            self._state[desc.digest] = [what, 0, self._clock()]
            self._emit({"event": "start", "digest": desc.digest, "size": desc.size, "what": what, "bytes": 0})

    def advance(self, desc: Descriptor, nbytes: int) -> None:
        with self._lock:
            st = self._state.setdefault(desc.digest, ["blob", 0, 0.0])
            st[1] += nbytes
            now = self._clock()
            if now - st[2] >= self._interval:
                st[2] = now
                self._emit({"event": "progress", "digest": desc.digest, "size": desc.size, "what": st[0],
                            "bytes": st[1]})

    def done(self, desc: Descriptor, outcome: str) -> None:
        with self._lock:
            what, nbytes, _ = self._state.pop(desc.digest, ["blob", 0, 0.0])
            self._emit({"event": "done", "digest": desc.digest, "size": desc.size, "what": what,
                        "bytes": nbytes, "outcome": outcome})

    def close(self) -> None:
        pass


class TtyProgress:
    """Bars redrawn in place on a terminal: one per blob in flight, then a total line."""

    BAR = 24

    def __init__(self, stream: TextIO | None = None, interval: float = 0.1, clock=time.monotonic):
        self._stream = stream
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._active: dict[str, list] = {}  # digest -> [what, size, bytes], in start order
        self._total = 0
        self._finished: dict[str, int] = {}
        self._lines = 0  # lines drawn last time (to move back over)
        self._last = 0.0
        self._pending: list[str] = []  # finished-blob lines to print above the bars

    def _out(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def start(self, desc: Descriptor, what: str) -> None:
        with self._lock:
            if desc.digest not in self._active:
                self._active[desc.digest] = [what, desc.size, 0]
                self._total += desc.size
            self._draw(force=False)

    def advance(self, desc: Descriptor, nbytes: int) -> None:
        with self._lock:
            st = self._active.get(desc.digest)
            if st is not None:
                st[2] += nbytes
            self._draw(force=False)

    def done(self, desc: Descriptor, outcome: str) -> None:
        with self._lock:
            what, size, _ = self._active.pop(desc.digest, ["blob", desc.size, 0])
            self._pending.append(f"{what} {short_digest(desc.digest)} {format_binary_size(size)} {outcome}")
            self._finished[desc.digest] = size
            self._draw(force=True)

    def close(self) -> None:
        with self._lock:
            if self._lines or self._active or self._finished:  # nothing started: draw no empty total
                self._draw(force=True)

    def _bar(self, done: int, size: int) -> str:
        frac = 1.0 if size <= 0 else min(1.0, done / size)
        filled = int(frac * self.BAR)
        return "[" + "=" * filled + " " * (self.BAR - filled) + "]"

    def _draw(self, *, force: bool) -> None:
        now = self._clock()
        if not force and now - self._last < self._interval:
            return
        self._last = now
        out = self._out()
        parts = []
        if self._lines:
            parts.append(f"\x1b[{self._lines}F")  # to the start of the first line drawn last time
        for line in self._pending:
            parts.append("\x1b[2K" + line + "\n")
        self._pending.clear()
        lines = []
        for digest, (what, size, nbytes) in self._active.items():
            pct = 100 if size <= 0 else min(100, nbytes * 100 // size)
            lines.append(f"{what:8} {short_digest(digest)} {self._bar(nbytes, size)} {pct:3d}% "
                         f"{format_binary_size(nbytes)} / {format_binary_size(size)}")
        done_bytes = sum(self._finished.values()) + sum(st[2] for st in self._active.values())
        lines.append(f"total    {format_binary_size(done_bytes)} / {format_binary_size(self._total)}")
        for line in lines:
            parts.append("\x1b[2K" + line + "\n")
        parts.append("\x1b[J")  # clear what an earlier, taller frame left below
        self._lines = len(lines)
        out.write("".join(parts))
        out.flush()


def make_progress(mode: str, stream: TextIO | None = None):
    """A Progress for `mode` ("tty", "plain", "json", "quiet"); `stream` overrides where it writes
    (default: stderr for tty and plain, stdout for json)."""
    if mode == "tty":
        return TtyProgress(stream)
    if mode == "plain":
        return PlainProgress(stream)
    if mode == "json":
        return JsonProgress(stream)
    if mode == "quiet":
        return QuietProgress()
    raise ValueError(f"unknown progress mode {mode!r} (one of {', '.join(MODES)})")
