"""`studiodoctor smoke` against its budget: wall time next to its slowest probe.

Cold: runs `studiodoctor smoke -f json` as a user would (a new process each time) and prints, per run:
the process's wall time, the SDK imports (`smoke.imports_ms`), the checks' run, the slowest single
check and the longest dependency chain (checks that had to wait for another), and the ratios.
Warm (what `serve`'s loop pays after its first run): the same in one process, SDKs already imported.

Run (with the lab up):  STUDIODOCTOR_LAB_DIR=/tmp/lab-x .venv/bin/python benchmarks/smoke_budget.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("studiodoctor")


def chain_ms(results: list[dict], deps: dict[str, list[str]]) -> tuple[float, list[str]]:
    """The longest dependency chain by summed duration (what concurrency cannot shorten)."""
    by_id = {r["id"]: r for r in results}
    memo: dict[str, tuple[float, list[str]]] = {}

    def walk(cid: str) -> tuple[float, list[str]]:
        if cid not in memo:
            best = max((walk(d) for d in deps.get(cid, []) if d in by_id), default=(0.0, []))
            memo[cid] = (best[0] + by_id[cid]["duration_ms"], best[1] + [cid])
        return memo[cid]

    return max((walk(cid) for cid in by_id), default=(0.0, []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", default="lab")
    parser.add_argument("--budget", default="20")
    args = parser.parse_args()
    listing = json.loads(subprocess.run([str(SCRIPT), "list", "--format", "json"], capture_output=True,
                                        text=True, check=True).stdout)
    deps = {c["id"]: c["depends_on"] for c in listing}
    rows = []
    for i in range(args.runs):
        t0 = time.perf_counter()
        proc = subprocess.run([str(SCRIPT), "smoke", "--profile", args.profile, "--budget", args.budget, "-f", "json"],
                              capture_output=True, text=True)
        wall = (time.perf_counter() - t0) * 1000
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            print(f"cold {i + 1}: exit {proc.returncode}, no JSON on stdout; stderr: {proc.stderr.strip()[-300:]!r}")
            continue
        slowest = max(data["results"], key=lambda r: r["duration_ms"])
        chain, path = chain_ms(data["results"], deps)
        bad = [r["id"] for r in data["results"] if r["status"] not in ("ok", "skip")]
        rows.append((wall, data["duration_ms"], slowest["duration_ms"], chain))
        print(f"cold {i + 1}: exit {proc.returncode}, wall {wall:6.0f} ms, imports {data['smoke']['imports_ms']:6.0f} ms, "
              f"run {data['duration_ms']:6.0f} ms, "
              f"slowest probe {slowest['duration_ms']:6.0f} ms ({slowest['id']}), longest chain {chain:6.0f} ms "
              f"({' > '.join(path)}), run/slowest {data['duration_ms'] / slowest['duration_ms']:.2f}"
              + (f", not ok: {', '.join(bad)}" if bad else ""), flush=True)
    report_medians("cold", rows, args)
    from studiodoctor.config import load_profile
    from studiodoctor.secrets import Redactor
    from studiodoctor.smoke import smoke

    profile, warm = load_profile(args.profile), []
    smoke(profile, budget=float(args.budget))  # imports the SDKs, like serve's first run
    for i in range(args.runs):
        t0 = time.perf_counter()
        data = smoke(profile, budget=float(args.budget)).to_dict(Redactor())
        wall = (time.perf_counter() - t0) * 1000
        slowest = max(data["results"], key=lambda r: r["duration_ms"])
        warm.append((wall, data["duration_ms"], slowest["duration_ms"], chain_ms(data["results"], deps)[0]))
        print(f"warm {i + 1}: wall {wall:6.0f} ms, slowest probe {slowest['duration_ms']:6.0f} ms ({slowest['id']})",
              flush=True)
    report_medians("warm", warm, args)


def report_medians(kind: str, rows: list, args) -> None:
    if not rows:
        return
    med = [statistics.median(col) for col in zip(*rows)]
    print(f"{kind}, median of {args.runs}: wall {med[0]:.0f} ms, run {med[1]:.0f} ms, slowest probe {med[2]:.0f} ms, "
          f"longest chain {med[3]:.0f} ms; run/slowest {med[1] / med[2]:.2f}, run/chain {med[1] / med[3]:.2f}, "
          f"wall/slowest {med[0] / med[2]:.2f} (budget {args.budget} s)")


if __name__ == "__main__":
    main()
