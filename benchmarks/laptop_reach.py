"""Wall time of ``diagnose SYMPTOM`` from a laptop (``lab-laptop``: nginx and the app reached pod by pod through
the Kubernetes API server's pod proxy) against the same run with direct URLs (``lab``), with the API
stand-in ``--round-trip`` ms away (every request to it, proxied ones included, answered that much later).

Needs a running lab (``studiodoctor lab up``, ``STUDIODOCTOR_LAB_DIR``). Runs the engine in-process,
alternating the two profiles, and restores the stand-in's round trip afterwards. ``--without-doctor`` hides
the in-cluster doctor's Service meanwhile: the laptop then opens port-forwards itself (studiodoctor.tunnels).

    .venv/bin/python benchmarks/laptop_reach.py --round-trip 30 --runs 5 502
    .venv/bin/python benchmarks/laptop_reach.py --round-trip 30 --runs 5 --without-doctor 502
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    from studiodoctor import engine
    from studiodoctor.config import load_profile
    from studiodoctor.lab.manager import Lab

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("symptom", nargs="?", default="502")
    parser.add_argument("--round-trip", type=float, default=30.0, help="ms added to every Kubernetes API request")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--without-doctor", action="store_true", help="hide the in-cluster doctor's Service: "
                                                                         "the laptop opens port-forwards")
    args = parser.parse_args()
    kube = Lab.load()["kube-api"]
    state = kube.read_state()
    before, services = state.get("round_trip_ms", 0), {}
    state["round_trip_ms"] = args.round_trip
    if args.without_doctor:
        for ns, space in state["namespaces"].items():
            services[ns] = list(space.get("services", []))
            space["services"] = [s for s in services[ns]
                                 if "studiodoctor/doctor" not in (s["metadata"].get("labels") or {})]
    kube.write_state(state)
    walls: dict[str, list[float]] = {"lab": [], "lab-laptop": []}
    proxied: dict[str, int] = {}
    causes: dict[str, str] = {}
    try:
        for _ in range(args.runs):
            for name in walls:
                profile = load_profile(name)
                kube.reset_counts()
                t0 = time.perf_counter()
                report = engine.diagnose(profile, args.symptom)
                walls[name].append(time.perf_counter() - t0)
                proxied[name] = sum(n for path, n in kube.request_counts().items()
                                    if "/proxy" in path or path.endswith("/portforward"))
                cause = report.likely_cause or {}
                causes[name] = f"{cause.get('layer')} ({cause.get('check')})"
    finally:
        state = kube.read_state()
        state["round_trip_ms"] = before
        for ns, kept in services.items():
            state["namespaces"][ns]["services"] = kept
        kube.write_state(state)
    print(f"diagnose {args.symptom}, Kubernetes API {args.round_trip:g} ms away, {args.runs} runs each")
    for name, times in walls.items():
        print(f"  {name:<11} median {statistics.median(times):.2f} s (runs: {', '.join(f'{t:.2f}' for t in times)}); "
              f"{proxied[name]} requests through the API server's proxy or port-forwards; likely cause {causes[name]}")


if __name__ == "__main__":
    main()
