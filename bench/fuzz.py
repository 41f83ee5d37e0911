"""The long hostile-input run: the properties of `tests/unit/hostile/props.py` with many examples.

    .venv/bin/python bench/fuzz.py [--examples 20000] [--seconds 120] [--only NAME ...]

Each property runs until `--examples` examples or its share of `--seconds` is used up, whichever comes
first; prints the examples run per property and exits 1 on the first counterexample (which it prints).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, given, settings  # noqa: E402

from tests.unit.hostile.props import PROPERTIES  # noqa: E402


class _Budget(Exception):
    pass


def _only_budget(e: BaseException) -> bool:
    """The time budget ran out (hypothesis may wrap that in a group when replaying), not a real failure."""
    if isinstance(e, _Budget):
        return True
    subs = getattr(e, "exceptions", None)
    return bool(subs) and all(_only_budget(x) for x in subs)


def _runner(check, counter: list[int], deadline: float):
    def run(example):
        if time.monotonic() > deadline:
            raise _Budget
        counter[0] += 1
        check(example)
    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=20000)
    ap.add_argument("--seconds", type=float, default=120.0, help="wall-clock budget for all properties")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    props = [p for p in PROPERTIES if not args.only or p[0] in args.only]
    share = args.seconds / len(props)
    failed = False
    total = 0
    for name, strategy, check in props:
        counter = [0]
        run = _runner(check, counter, time.monotonic() + share)

        test = settings(max_examples=args.examples, deadline=None, database=None, derandomize=False,
                        suppress_health_check=list(HealthCheck))(given(strategy)(run))
        if args.seed is not None:
            from hypothesis import seed
            test = seed(args.seed)(test)
        t0 = time.monotonic()
        status = "ok"
        try:
            test()
        except _Budget:
            status = "ok (time budget)"
        except Exception as e:  # a counterexample: hypothesis re-raises it after shrinking
            if _only_budget(e):
                status = "ok (time budget)"
            else:
                status = f"FAILED: {type(e).__name__}: {e}"
                failed = True
        count = counter[0]
        total += count
        print(f"{name:18} {count:7d} examples {time.monotonic() - t0:7.1f}s  {status}", flush=True)
    print(f"total {total} examples; {'FAILED' if failed else 'no counterexample'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
