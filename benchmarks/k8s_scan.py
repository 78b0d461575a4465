"""Benchmark: the kubernetes layer over a namespace of ~1,000 pods served by the API stand-in.

Prints: the list calls the run made (one per namespace and kind), the wall time of the whole
kubernetes layer (median of 3 runs), the time of one raw pod list call (transfer + JSON parse), the pure
analysis time of the pod list (analyse_pods), what the backend imports (no ``kubernetes`` SDK), and each
check's duration next to its network time (``evidence.network_ms``).

    .venv/bin/python benchmarks/k8s_scan.py [--pods 1000]

With ``--lab`` it measures a running lab instead (``STUDIODOCTOR_LAB_DIR``, ``lab up`` first): wall, CPU
and peak RSS of ``check --layer kubernetes`` and each kubernetes.*/traefik.pods check's duration next to
its network time in a full ``diagnose 502``, alternating runs with ``--before PYTHON`` (an interpreter
whose ``studiodoctor`` is another tree, e.g. the commit before) when given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime, timezone


# -P: the interpreter's own studiodoctor, never the one in the current directory
CLI = "import sys; from studiodoctor.cli import main; sys.exit(main())"


def _timed(python: str, argv: list[str]) -> tuple[float, float, float, dict]:
    """(wall s, CPU s, peak RSS MiB, JSON report) of one CLI run in its own process."""
    import os
    import subprocess

    started = time.perf_counter()
    proc = subprocess.Popen([python, "-P", "-c", CLI, *argv], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read()
    _pid, _status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(_status)
    wall = time.perf_counter() - started
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, json.loads(out or b"{}")


def _kube_rows(report: dict) -> dict[str, tuple[float, float | None]]:
    results = report.get("results") or [r for s in report.get("steps", []) for r in s.get("results", [])]
    return {r["id"]: (r["duration_ms"], r.get("network_ms", (r.get("evidence") or {}).get("network_ms")),
                      (r.get("evidence") or {}).get("cpu_ms")) for r in results
            if r["id"].startswith("kubernetes.") or r["id"] == "traefik.pods"}


def lab(runs: int, before: str | None) -> None:
    import sys

    sides = {"after": sys.executable, **({"before": before} if before else {})}
    layer = ["check", "--layer", "kubernetes", "--profile", "lab", "--format", "json"]
    diag = ["diagnose", "502", "--profile", "lab", "--format", "json"]
    figures: dict[str, dict[str, list]] = {side: {"layer": [], "diag": [], "rows": []} for side in sides}
    for _ in range(runs):  # alternating A B A B: the same machine load for both
        for side, python in sides.items():
            figures[side]["layer"].append(_timed(python, layer)[:3])
            wall, cpu, rss, report = _timed(python, diag)
            figures[side]["diag"].append((wall, cpu, rss))
            figures[side]["rows"].append(_kube_rows(report))
    med = statistics.median
    for side, f in figures.items():
        print(f"[{side}] check --layer kubernetes: wall {med(x[0] for x in f['layer']):.2f} s, "
              f"CPU {med(x[1] for x in f['layer']):.2f} s, peak RSS {med(x[2] for x in f['layer']):.0f} MiB")
        print(f"[{side}] diagnose 502: wall {med(x[0] for x in f['diag']):.2f} s, "
              f"CPU {med(x[1] for x in f['diag']):.2f} s, peak RSS {med(x[2] for x in f['diag']):.0f} MiB")
        print(f"[{side}] in diagnose 502, median of {runs}: check  duration_ms  network_ms  cpu_ms")
        for cid in dict.fromkeys(cid for r in f["rows"] for cid in r):
            durations = [r[cid][0] for r in f["rows"] if cid in r]
            nets = [r[cid][1] for r in f["rows"] if cid in r and r[cid][1] is not None]
            cpus = [r[cid][2] for r in f["rows"] if cid in r and r[cid][2] is not None]
            print(f"    {cid:32} {med(durations):8.1f}  {med(nets) if nets else '-':>10}  "
                  f"{med(cpus) if cpus else '-':>6}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lab", action="store_true", help="measure the running lab's CLI instead")
    parser.add_argument("--before", help="with --lab: another interpreter to compare with, runs alternating")
    parser.add_argument("--round-trip", type=float, default=0.0, metavar="MS",
                        help="the stand-in answers each request MS later (an API server across a network)")
    args = parser.parse_args()
    if args.lab:
        return lab(args.runs, args.before)

    import sys

    from studiodoctor import engine
    from studiodoctor.backends import kube_pods as kp
    from studiodoctor.config import profile_from_data
    from studiodoctor.lab.standins import kubernetes as K

    t0 = time.perf_counter()
    from studiodoctor.backends import kubeconfig, kubernetes as kb

    kb.Client(kubeconfig.Endpoint("http://127.0.0.1:1"))  # imports urllib3
    import_s = time.perf_counter() - t0
    frontend = int(args.pods * 0.7)
    workers = args.pods - frontend
    with tempfile.TemporaryDirectory() as root:
        server = K.KubeAPIServer(root, hostnames=["studio.localtest"])
        state = K.studio_state(hostnames=("studio.localtest",), frontend=frontend, workers=workers)
        state["faults"] = ["oomkilled", "pending", "memory-high"]
        state["round_trip_ms"] = args.round_trip
        server.start(state=state)
        try:
            profile = profile_from_data("bench", {"kubernetes": {"api_url": server.url, "namespace": "studio"},
                                                  "dns": {"hostnames": ["studio.localtest"]}, "timeout": 30},
                                        env={})
            walls, counts, results = [], {}, []
            for _ in range(args.runs):
                server.reset_counts()
                t = time.perf_counter()
                report = engine.check(profile, layers=["kubernetes"])
                walls.append(time.perf_counter() - t)
                counts = server.request_counts()
                results = report.results
            client = kb.Client(kubeconfig.Endpoint(server.url))
            t = time.perf_counter()
            items, wire_s = client.call("GET", "/api/v1/namespaces/studio/pods", timeout=30)
            items = items["items"]
            list_s = time.perf_counter() - t
            analyses = []
            for _ in range(5):
                t = time.perf_counter()
                a = kp.analyse_pods(items, datetime.now(timezone.utc))
                analyses.append(time.perf_counter() - t)
        finally:
            server.stop()

    print(f"pods in namespace studio: {a['total']} ({frontend} frontend, {workers} workers, +1 Pending)"
          + (f"; every request answered {args.round_trip:g} ms late" if args.round_trip else ""))
    print("list calls made by one run of the kubernetes layer:")
    for path, n in sorted(counts.items()):
        print(f"  {n:3d}  {path}")
    print(f"kubernetes layer wall time ({len(results)} checks): median {statistics.median(walls):.3f} s "
          f"(runs: {', '.join(f'{w:.3f}' for w in walls)})")
    print(f"one pod list call (HTTP + JSON parse, {len(items)} pods): {list_s:.3f} s (on the wire {wire_s:.3f} s)")
    print(f"analyse_pods on {len(items)} pods: median {statistics.median(analyses) * 1000:.1f} ms")
    sdk = sorted(m for m in sys.modules if m == "kubernetes" or m.startswith("kubernetes."))
    print(f"backend + urllib3 import: {import_s:.3f} s; kubernetes SDK modules imported: {len(sdk)}")
    print("  status check                           duration  network")
    for r in results:
        net = (r.evidence or {}).get("network_ms")
        print(f"  {r.status.value:5} {r.id:32} {r.duration_ms:7.1f} ms {net if net is not None else '-':>7} ms  "
              f"{r.summary[:70]}")


if __name__ == "__main__":
    main()
