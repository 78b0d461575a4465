"""studiodoctor against the same probes typed by hand, on the lab.

Writes the seed's 502 walk as a sequential shell script bound to the lab profile (curl edge, origin,
nginx and app; the Traefik API; three Kubernetes lists with kubectl; psql; redis-cli), then times it
against ``studiodoctor diagnose 502`` alternating A B A B, and prints wall, CPU (user+sys) and peak
RSS medians with their ratios, healthy and with one fault per layer. Per symptom it prints
``diagnose S`` wall against the slowest single check of that run (goal <= 1.2x) and the targets of
issue 18.

With ``--rtt 0,20,80`` it does the same at each added round trip (``lab up --rtt MS``: every connection
of the doctor and of the manual walk to a lab server crosses the delay), prints both walls, CPU and peak
RSS, the ratio, the doctor's critical path (the chain of checks that set its wall, with their round
trips) and issue 28's targets: the doctor's wall at most start-up (its wall at 0 ms) + 8 round trips,
at most 1.0x the manual walk at 20 ms and 0.5x at 80 ms, start-up at most 0.6 s.

Run: .venv/bin/python benchmarks/vs_manual.py [--runs 5] [--up] [--faults] [--symptoms] [--rtt 0,20,80]
With --up it brings a lab up in a temporary STUDIODOCTOR_LAB_DIR and takes it down at the end;
otherwise it uses the running lab (``studiodoctor lab up``). ``--before CMD`` (with --rtt) times another
doctor (the tree before a change) in the same rotation; ``--doctor CMD``
times another doctor command against the same lab (before/after figures; no critical path then).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

BIN = Path(sys.executable).with_name("studiodoctor")
FAULT_PER_LAYER = {  # one fault per layer of the 502 walk, and the symptom it is diagnosed with
    "cloudflare": ("edge-522", "502"), "traefik": ("traefik-server-down", "502"),
    "kubernetes": ("pod-oomkilled", "502"), "nginx": ("nginx-stopped", "502"),
    "app": ("app-stopped", "502"), "postgres": ("postgres-down", "502"), "redis": ("redis-down", "publishing"),
}
SYMPTOMS = ("502", "dns", "ssl", "caching", "routing", "python-error", "publishing", "database", "slow")


def lab_profile() -> dict:
    from studiodoctor.lab.state import profile_path

    try:
        return json.loads(profile_path().read_text())
    except OSError:
        sys.exit("no lab is up: run `studiodoctor lab up` first, or pass --up")


def manual_script(p: dict) -> str:
    """The seed's 502 walk, one probe after another, as an on-call engineer would type it."""
    ca = p["http"]["ca_file"]
    host = p["dns"]["hostnames"][0]
    edge = p["http"]["resolve"][f"{host}:443"]
    origin = urlsplit(p["traefik"]["entrypoint"])
    kube, ns = p["kubernetes"]["api_url"], p["kubernetes"]["namespace"]
    curl = f"curl -fsS -o /dev/null -w '%{{http_code}} %{{time_total}}\\n' --max-time 10 --cacert {ca}"
    lines = [
        "set -u",
        f"{curl} --connect-to {host}:443:{edge} https://{host}/stealthz",
        f"{curl} --resolve {host}:{origin.port}:{origin.hostname} https://{host}:{origin.port}/stealthz",
        f"{curl} {p['nginx']['url']}/stealthz",
        f"{curl} {p['app']['url']}/stealthz",
        f"{curl} {p['app']['url']}/healthz",
        f"curl -fsS --max-time 10 {p['traefik']['api_url']}/api/http/routers > /dev/null",
        f"curl -fsS --max-time 10 {p['traefik']['api_url']}/api/http/services > /dev/null",
    ]
    for path in (f"/apis/apps/v1/namespaces/{ns}/deployments", f"/api/v1/namespaces/{ns}/pods",
                 f"/api/v1/namespaces/{ns}/events"):
        lines.append(f"kubectl --server {kube} --request-timeout=10s get --raw {path} > /dev/null")
    lines.append(f"psql {shlex.quote(p['postgres']['dsn'])} -Atc 'select 1' > /dev/null")
    redis = urlsplit(p["redis"]["url"])
    lines.append(f"redis-cli -h {redis.hostname} -p {redis.port} ping > /dev/null")
    lines.append(f"redis-cli -h {redis.hostname} -p {redis.port} info > /dev/null")
    return "\n".join(lines) + "\n"


def run(cmd: list[str]) -> tuple[float, float, float, str]:
    """(wall s, cpu s, peak RSS MiB, stdout) of one run, from the kernel's accounting of the child."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    wall = time.perf_counter() - t0
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out


def median(values):
    return statistics.median(values) if values else float("nan")


def side_by_side(a: list[str], b: list[str], runs: int):
    """A B A B ...: medians of (wall, cpu, rss) for each, and the median of the pairwise wall ratios."""
    run(a), run(b)  # warm-up: page cache, bytecode
    fa, fb, ratios = [], [], []
    for _ in range(runs):
        ra, rb = run(a)[:3], run(b)[:3]
        fa.append(ra), fb.append(rb), ratios.append(ra[0] / rb[0])
    pick = lambda rows, i: median([r[i] for r in rows])  # noqa: E731
    return [pick(fa, i) for i in range(3)], [pick(fb, i) for i in range(3)], median(ratios)


def print_pair(label: str, a, b, ratio):
    print(f"{label:<34} wall {a[0]:6.2f} s  cpu {a[1]:6.2f} s  rss {a[2]:6.0f} MiB")
    print(f"{'  manual script':<34} wall {b[0]:6.2f} s  cpu {b[1]:6.2f} s  rss {b[2]:6.0f} MiB")
    print(f"{'  ratio doctor/manual':<34} wall {ratio:6.2f}x cpu {a[1] / b[1]:6.2f}x")


def per_symptom(runs: int):
    print("\nper symptom: diagnose wall vs its slowest single check (goal <= 1.2x)")
    for symptom in SYMPTOMS:
        walls, slowest = [], []
        for _ in range(runs):
            wall, _, _, out = run([str(BIN), "diagnose", symptom, "--profile", "lab", "--format", "json"])
            report = json.loads(out)
            walls.append(wall)
            slowest.append(max((r["duration_ms"] for r in report["results"]), default=0) / 1000)
        w, s = median(walls), median(slowest)
        print(f"  diagnose {symptom:<13} wall {w:5.2f} s  slowest check {s:5.2f} s  ratio {w / max(s, 1e-3):5.2f}x")


def network_share(cmd: list[str]) -> None:
    """Issue 18's "no check's duration more than 2x its own network time", from one run's JSON: the checks
    that report ``network_ms`` (timed requests), those over 2x, and the worst ones."""
    report = json.loads(run(cmd)[3])
    timed = [r for r in report["results"] if r.get("network_ms")]
    over = sorted((r for r in timed if r["duration_ms"] > 2 * r["network_ms"]),
                  key=lambda r: r["duration_ms"] - r["network_ms"], reverse=True)
    worst = ", ".join(f"{r['id']} {r['duration_ms']:.0f}/{r['network_ms']:.0f} ms" for r in over[:3])
    print(f"network_ms: {len(timed)} of {len(report['results'])} checks timed; duration > 2x network in "
          f"{len(over)}{f' (worst: {worst})' if worst else ''}")


def critical_path() -> tuple[float, list]:
    """One ``diagnose 502`` in-process: (wall ms, the chain of results that set it). The chain ends at the
    result that finished last and walks back, from each link, to what it waited for: the dependency, or
    the check of its backend whose end freed its slot, that finished last before it started; the run's
    start-up inside it (SDK imports) is the first link's start."""
    from studiodoctor import engine
    from studiodoctor.config import load_profile
    from studiodoctor.registry import default_registry

    report = engine.diagnose(load_profile("lab"), "502")
    deps = {c.id: c.depends_on for c in default_registry.checks.values()}
    done = {r.id: r for r in report.results if r.start_ms is not None}
    end = lambda r: r.start_ms + r.duration_ms  # noqa: E731
    chain = [max(done.values(), key=end)]
    while True:
        link = chain[-1]
        waited = [done[d] for d in deps.get(link.id, ()) if d in done]
        waited += [r for r in done.values() if r.id.split(".")[0] == link.id.split(".")[0] and r is not link]
        before = [r for r in waited if link.start_ms - 5 <= end(r) <= link.start_ms + 5
                  and r.start_ms < link.start_ms and r not in chain]  # strictly earlier: no cycle
        if not before:
            break
        chain.append(max(before, key=end))
    return report.duration_ms, chain[::-1]


def print_critical_path(rtt: float) -> None:
    wall, chain = critical_path()
    links = " -> ".join(f"{r.id} {r.duration_ms:.0f} ms/{r.evidence.get('round_trips', '?')} RT" for r in chain)
    trips = sum(r.evidence.get("round_trips", 0) for r in chain)
    span = chain[-1].start_ms + chain[-1].duration_ms - chain[0].start_ms
    print(f"  critical path (in-process run, wall {wall:.0f} ms): start-up {chain[0].start_ms:.0f} ms -> {links}")
    print(f"    {trips} round trips counted on it; its checks took {span:.0f} ms"
          + (f" = {span / rtt:.1f} round trips of {rtt:g} ms" if rtt else ""))


def compile_bytecode() -> None:
    """Compile this tree's modules as ``pip install`` does: an editable install under
    PYTHONDONTWRITEBYTECODE=1 (as on this machine) would otherwise compile ~100 modules from source at
    every start (~0.15-0.35 s of CPU), a cost no installed doctor pays."""
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "studiodoctor"), str(root / "checks")],
                   check=True, capture_output=True)


def lab_rtt(rtt: float) -> None:
    subprocess.run([str(BIN), "lab", "up", "--rtt", f"{rtt:g}"], check=True, capture_output=True)


def rotate(cmds: list[list[str]], runs: int):
    """A B C A B C ...: per command the medians of (wall, cpu, rss), and the median of its pairwise wall
    ratios to the last command (the yardstick) of the same round."""
    for cmd in cmds:
        run(cmd)  # warm-up
    rounds = [[run(cmd)[:3] for cmd in cmds] for _ in range(runs)]
    out = []
    for i in range(len(cmds)):
        figures = [median([r[i][k] for r in rounds]) for k in range(3)]
        out.append((figures, median([r[i][0] / r[-1][0] for r in rounds])))
    return out


def over_rtts(doctor: list[str], rtts: list[float], runs: int, trace: bool, before: list[str] | None = None) -> None:
    """Issue 28: the doctor against the manual walk at each added round trip, and the targets; with
    ``before``, that doctor too, in the same rotation."""
    rows, before_rows = [], []
    for rtt in rtts:
        lab_rtt(rtt)
        script = Path(tempfile.mkstemp(suffix=".sh", prefix=f"manual-502-rtt{rtt:g}-")[1])
        script.write_text(manual_script(lab_profile()))
        manual = ["bash", str(script)]
        got = rotate([doctor, *([before] if before else []), manual], runs)
        (a, ratio), b = got[0], got[-1][0]
        print_pair(f"diagnose 502, +{rtt:g} ms round trip", a, b, ratio)
        if before:
            (pa, pratio) = got[1]
            print(f"{'  before (the same rotation)':<34} wall {pa[0]:6.2f} s  cpu {pa[1]:6.2f} s  rss {pa[2]:6.0f} MiB"
                  f"  ratio {pratio:.2f}x")
            before_rows.append((rtt, pa, pratio))
        if trace:
            print_critical_path(rtt)
        rows.append((rtt, a, b, ratio))
    if before_rows:
        print("\n| added RTT | before: doctor wall | ratio to manual | now: doctor wall | ratio to manual |")
        print("|---|---|---|---|---|")
        for (rtt, pa, pratio), (_, a, _, ratio) in zip(before_rows, rows):
            print(f"| {rtt:g} ms | {pa[0]:.2f} s | {pratio:.2f}x | {a[0]:.2f} s | {ratio:.2f}x |")
    lab_rtt(0)
    start = next((a[0] for rtt, a, _, _ in rows if rtt == 0), None)
    print("\n| added RTT | doctor wall | manual wall | ratio | doctor CPU | doctor peak RSS | target |")
    print("|---|---|---|---|---|---|---|")
    for rtt, a, b, ratio in rows:
        goals = []
        if start is not None and rtt:
            goals.append(f"<= start-up + 8 RT = {start + 8 * rtt / 1000:.2f} s "
                         f"{'met' if a[0] <= start + 8 * rtt / 1000 else 'NOT met'}")
        goal = {20: 1.0, 80: 0.5}.get(rtt)
        if goal:
            goals.append(f"<= {goal:g}x manual {'met' if ratio <= goal else 'NOT met'}")
        if rtt == 0:
            goals.append(f"start-up <= 0.6 s {'met' if a[0] <= 0.6 else 'NOT met'}")
        print(f"| {rtt:g} ms | {a[0]:.2f} s | {b[0]:.2f} s | {ratio:.2f}x | {a[1]:.2f} s | {a[2]:.0f} MiB | "
              f"{'; '.join(goals)} |")


def redis_layer(runs: int):
    walls = [run([str(BIN), "check", "--layer", "redis", "--profile", "lab"])[0] for _ in range(runs)]
    print(f"\ncheck --layer redis: wall median {median(walls):.2f} s (target <= 0.35 s)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--up", action="store_true", help="bring a lab up in a temporary directory for the run")
    ap.add_argument("--faults", action="store_true", help="also one fault per layer of the 502 walk")
    ap.add_argument("--symptoms", action="store_true", help="also every symptom's wall vs its slowest check")
    ap.add_argument("--rtt", default="", help="comma-separated added round trips in ms (issue 28), e.g. 0,20,80")
    ap.add_argument("--doctor", default="", help="the doctor's command instead of this venv's studiodoctor")
    ap.add_argument("--before", default="", help="with --rtt: another doctor's command (e.g. the tree before) "
                                                 "timed in the same rotation")
    ap.add_argument("--no-compile", action="store_true", help="time the tree without compiling its bytecode first")
    args = ap.parse_args()
    if not args.no_compile:
        compile_bytecode()
    tmp = None
    if args.up:
        tmp = tempfile.mkdtemp(prefix="vs-manual-")
        os.environ["STUDIODOCTOR_LAB_DIR"] = tmp
        subprocess.run([str(BIN), "lab", "up"], check=True, capture_output=True)
    try:
        if args.rtt:
            doctor = [*(shlex.split(args.doctor) or [str(BIN)]), "diagnose", "502", "--profile", "lab",
                      "--format", "json"]
            print(f"median of {args.runs} runs each, alternating doctor and manual walk; doctor: {doctor[:2]}")
            tail = ["diagnose", "502", "--profile", "lab", "--format", "json"]
            over_rtts(doctor, [float(x) for x in args.rtt.split(",")], args.runs, trace=not args.doctor,
                      before=[*shlex.split(args.before), *tail] if args.before else None)
            return
        script = Path(tempfile.mkstemp(suffix=".sh", prefix="manual-502-")[1])
        script.write_text(manual_script(lab_profile()))
        manual = ["bash", str(script)]
        walk = subprocess.run(manual, capture_output=True, text=True)
        if walk.returncode or walk.stderr.strip():  # a probe that fails fast makes the yardstick look fast
            sys.exit(f"the manual walk failed on the healthy lab: {walk.stderr.strip() or walk.returncode}")
        doctor = [str(BIN), "diagnose", "502", "--profile", "lab", "--format", "json"]
        print(f"median of {args.runs} runs each, alternating; manual walk: {script}")
        a, b, ratio = side_by_side(doctor, manual, args.runs)
        print_pair("diagnose 502 (healthy)", a, b, ratio)
        print(f"targets: wall <= 0.5x manual ({'met' if ratio <= 0.5 else 'NOT met'}), "
              f"cpu <= 1.5 s ({'met' if a[1] <= 1.5 else 'NOT met'}), "
              f"rss <= 120 MiB ({'met' if a[2] <= 120 else 'NOT met'})")
        network_share(doctor)
        redis_layer(args.runs)
        if args.faults:
            for layer, (fault, symptom) in FAULT_PER_LAYER.items():
                subprocess.run([str(BIN), "lab", "break", fault], check=True, capture_output=True)
                try:
                    cmd = [str(BIN), "diagnose", symptom, "--profile", "lab", "--format", "json"]
                    a, b, ratio = side_by_side(cmd, manual, max(1, args.runs // 2))
                    print_pair(f"diagnose {symptom} ({fault})", a, b, ratio)
                finally:
                    subprocess.run([str(BIN), "lab", "fix"], check=True, capture_output=True)
        if args.symptoms:
            per_symptom(max(1, args.runs // 2))
    finally:
        if tmp:
            subprocess.run([str(BIN), "lab", "down"], capture_output=True)


if __name__ == "__main__":
    main()
