"""Where a run's wall time goes: each check's start and end (ms after the run's start), in-process.

Prints the preload (SDK imports, this process's: the checks behind psycopg and redis-py run in a forked child
as on the command line, unless --one-process), then one line per check sorted by start: start, end, duration,
network_ms, what it waited on (dependencies), and a bar. The run's wall against its slowest check is
the last line. Run: .venv/bin/python benchmarks/timeline.py [SYMPTOM] [--profile lab] [--runs 3]
"""

from __future__ import annotations

import argparse
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("symptom", nargs="?", default="502")
    ap.add_argument("--profile", default="lab")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--width", type=int, default=60)
    ap.add_argument("--one-process", action="store_true",
                    help="no second core: the checks behind psycopg and redis-py run here too (studiodoctor.forked)")
    args = ap.parse_args()
    from studiodoctor import engine, forked, runner
    from studiodoctor.config import load_profile

    forked.ALLOWED = not args.one_process  # as the command line runs (preload below times this process's)

    real_preload = runner.preload
    spans = {}

    def timed_preload(*a, **k):
        t = time.monotonic()
        try:
            return real_preload(*a, **k)
        finally:
            spans["preload"] = (time.monotonic() - t) * 1000

    runner.preload = timed_preload
    profile = load_profile(args.profile)
    for n in range(args.runs):
        report = engine.diagnose(profile, args.symptom)
        wall = report.duration_ms
        res = sorted(report.results, key=lambda r: (r.start_ms or 0))
        slowest = max(res, key=lambda r: r.duration_ms)
        scale = args.width / max(wall, 1)
        print(f"run {n + 1}: diagnose {args.symptom}: {len(res)} checks, wall {wall:.0f} ms, "
              f"preload {spans.get('preload', 0):.0f} ms")
        for r in res:
            s = r.start_ms or 0
            e = s + r.duration_ms
            net = "" if r.network_ms is None else f"{r.network_ms:5.0f}"
            bar = " " * int(s * scale) + "#" * max(1, int(r.duration_ms * scale))
            print(f"  {r.id:<36} {s:6.0f} {e:6.0f} {r.duration_ms:5.0f} {net:>5} {r.status.value:<7} |{bar}")
        last = max(((r.start_ms or 0) + r.duration_ms) for r in res)
        print(f"  wall {wall:.0f} ms; last check ends at {last:.0f}; slowest {slowest.id} {slowest.duration_ms:.0f} ms "
              f"({wall / max(slowest.duration_ms, 1):.2f}x)")


if __name__ == "__main__":
    main()
