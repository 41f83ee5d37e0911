"""Progress renderers: JSON events, plain lines, tty frames, quiet; safe from many threads."""

from __future__ import annotations

import io
import json
import threading

import pytest

from mdl.cli.progress import JsonProgress, TtyProgress, choose_mode, make_progress
from mdl.content import Descriptor
from mdl.spec import mediatypes as mt

D = Descriptor(mt.GGUF, "sha256:" + "ab" * 32, 256 << 20)
C = Descriptor(mt.DOCKER_CONFIG_V01, "sha256:" + "cd" * 32, 512)


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_choose_mode():
    assert choose_mode(True, False, True) == "json"
    assert choose_mode(False, True, True) == "quiet"
    assert choose_mode(False, False, True) == "tty"
    assert choose_mode(False, False, False) == "plain"
    with pytest.raises(ValueError):
        make_progress("fancy")


def test_json_events_parse_and_progress_is_throttled():
    out, clock = io.StringIO(), Clock()
    p = JsonProgress(out, interval=0.25, clock=clock)
    p.start(D, "layer")
    for i in range(10):
        clock.t += 0.1
        p.advance(D, 1 << 20)
    p.done(D, "sent")
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert events[0] == {"event": "start", "digest": D.digest, "size": D.size, "what": "layer", "bytes": 0}
    assert events[-1] == {"event": "done", "digest": D.digest, "size": D.size, "what": "layer",
                          "bytes": 10 << 20, "outcome": "sent"}
    progress = [e for e in events if e["event"] == "progress"]
    assert 2 <= len(progress) <= 5  # throttled: not one per advance
    assert all(e["what"] == "layer" for e in progress)
    assert [e["bytes"] for e in progress] == sorted(e["bytes"] for e in progress)


def test_plain_lines():
    out = io.StringIO()
    p = make_progress("plain", out)
    p.start(D, "layer")
    p.advance(D, 100)
    p.done(D, "sent")
    p.start(C, "config")
    p.done(C, "exists")
    assert out.getvalue().splitlines() == [
        "layer sha256:abababababab… 256MiB ...",
        "layer sha256:abababababab… 256MiB sent",
        "config sha256:cdcdcdcdcdcd… 512B ...",
        "config sha256:cdcdcdcdcdcd… 512B exists",
    ]


def test_quiet_prints_nothing(capsys):
    p = make_progress("quiet")
    p.start(D, "layer")
    p.advance(D, 5)
    p.done(D, "sent")
    p.close()
    assert capsys.readouterr() == ("", "")


def test_tty_redraws_in_place_and_throttles():
    out, clock = io.StringIO(), Clock()
    p = TtyProgress(out, interval=0.1, clock=clock)
    clock.t = 1.0
    p.start(D, "layer")
    frames = out.getvalue().count("total")
    for _ in range(50):  # no time passes: no redraw
        p.advance(D, 1 << 20)
    assert out.getvalue().count("total") == frames
    clock.t += 0.2
    p.advance(D, 1 << 20)
    assert out.getvalue().count("total") == frames + 1
    assert "\x1b[2F" in out.getvalue()  # moved back over the bar and the total line
    p.done(D, "sent")
    p.close()
    text = out.getvalue()
    assert "layer sha256:abababababab… 256MiB sent" in text
    assert text.rstrip().endswith("\x1b[J") or "total    256MiB / 256MiB" in text


def test_renderers_are_thread_safe():
    out = io.StringIO()
    p = JsonProgress(out, interval=0.0)
    descs = [Descriptor(mt.GGUF, "sha256:" + f"{i:02x}" * 32, 1000) for i in range(8)]

    def work(d):
        p.start(d, "layer")
        for _ in range(100):
            p.advance(d, 10)
        p.done(d, "sent")

    threads = [threading.Thread(target=work, args=(d,)) for d in descs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = [json.loads(line) for line in out.getvalue().splitlines()]  # no torn lines
    done = {e["digest"]: e["bytes"] for e in events if e["event"] == "done"}
    assert done == {d.digest: 1000 for d in descs}
