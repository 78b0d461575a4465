"""How many requests one `studiodoctor diagnose SYMPTOM` sends to each backend of the running lab.

Reads every counterpart's own access log (``Launcher.method_logs``: gunicorn's, nginx's, the stand-ins'
``*.requests.jsonl``) before and after one in-process diagnosis, so the figures are what the servers
saw, not what the doctor believes it sent. Production must be treated gently: this is the figure to
watch when a check starts sampling.

    STUDIODOCTOR_LAB_DIR=/tmp/lab-x studiodoctor lab up
    python benchmarks/requests_per_backend.py 502 [--samples N] [--runs 3]
"""

from __future__ import annotations

import argparse
import collections
import sys


def _logs(lab) -> dict[str, list]:
    out = {}
    for kind in lab.order:
        try:
            svc = lab[kind]
        except Exception:  # noqa: BLE001 - a counterpart this variant does not run
            continue
        out[kind] = list(getattr(svc, "method_logs", []))
    return out


def measure(symptom: str, samples: int | None, runs: int) -> dict[str, list[int]]:
    from studiodoctor import engine
    from studiodoctor.config import load_profile
    from studiodoctor.lab.manager import Lab
    from studiodoctor.lab.methodlog import log_size, read_methods

    lab = Lab.load()
    logs = _logs(lab)
    counts: dict[str, list[int]] = collections.defaultdict(list)
    paths: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for _ in range(runs):
        start = {str(p): log_size(p) for files in logs.values() for p in files}
        options = {"samples": samples} if samples else {}
        engine.diagnose(load_profile("lab"), symptom, options=options)
        for kind, files in logs.items():
            seen = [m for p in files for m in read_methods(p, start[str(p)])]
            counts[kind].append(len(seen))
            paths[kind].update(f"{m} {path}" for m, path in seen)
    return {"counts": dict(counts), "paths": {k: dict(v.most_common(6)) for k, v in paths.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("symptom")
    parser.add_argument("--samples", type=int, default=None, help="--samples of the diagnosis (default: the profile's)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    found = measure(args.symptom, args.samples, args.runs)
    print(f"diagnose {args.symptom}: requests per backend over {args.runs} runs (each run's count)")
    for kind, per_run in sorted(found["counts"].items()):
        if any(per_run):
            print(f"  {kind:14} {per_run}   {found['paths'][kind]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
