"""Baselines: the evidence of the last good run, and what changed since (``diagnose --since-good``).

``--save-baseline`` writes the redacted evidence of a run with nothing broken (no fail, error or
blocked) to ``--baseline FILE`` (default ``$XDG_STATE_HOME/studiodoctor/baseline-<profile>.json``);
``smoke --state`` keeps one in its state file too, and ``--baseline`` may point at either.
The comparison walks each check's evidence and reports the values that changed, leaving out what
moves on every run anyway (timings, percentages, ages, counters of days, timestamps): certificate
serials and issuers, DNS answers, header sets, image tags, restarts, queue depths and CloudFlare
settings stay. Changes come ordered by layer along the request path.

Sampled probes are compared too (``regressions``): a p95 several times the good run's, or a larger share of
failed samples, leads the changes with a sentence ("p95 12x the good run's (15 -> 180 ms)"), so a degraded,
not down, stack says what got worse since it was good.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

SCHEMA = "studiodoctor.baseline/1"
MAX_CHANGES = 200
# evidence keys whose values change on every run: never news
VOLATILE = re.compile(r"(^|_)(ms|s|seconds|latency|duration|percent|age|samples|trips|waited|elapsed|uptime|human|"
                      r"remaining|days_left|at|since|date|time|timestamp|request_id|ray|traceback|"
                      r"used_memory|used_memory_peak|mem_fragmentation_ratio|connected_clients)$|^cf-ray$|^date$")


class BaselineError(Exception):
    """A baseline that cannot be read, or belongs to another profile."""


def default_path(profile: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "studiodoctor" / f"baseline-{profile}.json"


def is_good(data: dict) -> bool:
    """Nothing broken: no fail, error or blocked result (warnings and skips are fine)."""
    return bool(data["results"]) and not any(r["status"] in ("fail", "error", "blocked") for r in data["results"])


def snapshot(data: dict) -> dict:
    """What a baseline keeps of a (redacted) report."""
    return {"schema": SCHEMA, "profile": data["profile"], "command": data["command"], "saved_at": data["started_at"],
            "results": {r["id"]: {"layer": r["layer"], "status": r["status"], "evidence": r["evidence"],
                                  **({"samples": r["samples"]} if r.get("samples") else {})}
                        for r in data["results"]}}


def save(path: str | Path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(snapshot(data), indent=1, default=str))
    os.replace(tmp, path)


def load(path: str | Path, profile: str) -> dict | None:
    """The baseline in ``path`` (a baseline file or a smoke state file); None if there is none yet."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BaselineError(f"--baseline {path}: cannot read it ({type(exc).__name__})") from None
    if isinstance(raw, dict) and raw.get("schema", "").startswith("studiodoctor.smoke-state/"):
        raw = raw.get("baseline")
        if raw is None:
            return None
    if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
        raise BaselineError(f"--baseline {path}: not a studiodoctor baseline ({SCHEMA}) nor a smoke state file")
    if raw.get("profile") != profile:
        raise BaselineError(f"--baseline {path} is for profile {raw.get('profile')!r}, not {profile!r}")
    return raw


def _leaves(value: Any, path: str = ""):
    """(path, value) for every leaf; lists of scalars compare as sets, lists of rows by position."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not VOLATILE.search(str(k)):
                yield from _leaves(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        yield path, sorted(map(str, value))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, value


def changes(baseline: dict, data: dict, layer_order: list[str]) -> list[dict]:
    """What changed per check between the baseline and this run, ordered by layer then check."""
    out = []
    order = {layer: i for i, layer in enumerate(layer_order)}
    for r in sorted(data["results"], key=lambda r: (order.get(r["layer"], len(order)), r["id"])):
        before = baseline["results"].get(r["id"])
        if before is None:
            continue  # not in the baseline's run: nothing to compare with
        if before["status"] != r["status"]:
            out.append({"layer": r["layer"], "check": r["id"], "key": "status", "before": before["status"],
                        "now": r["status"]})
        old, new = dict(_leaves(before["evidence"])), dict(_leaves(r["evidence"]))
        if r["status"] in ("blocked", "skip") or not new:
            continue  # nothing observed now: the status line says it all
        for key in dict.fromkeys([*old, *new]):
            if old.get(key) != new.get(key):
                out.append({"layer": r["layer"], "check": r["id"], "key": key, "before": old.get(key),
                            "now": new.get(key)})
    return out[:MAX_CHANGES]


# A sampled probe regressed against the good run when its p95 is this many times the good run's (and at
# least REGRESSION_FLOOR_MS: a few ms more on loopback is no news), or when its share of failed samples
# grew by REGRESSION_FAILED_SHARE.
REGRESSION_RATIO = 3.0
REGRESSION_FLOOR_MS = 200.0
REGRESSION_FAILED_SHARE = 0.2


def regressions(baseline: dict, data: dict, layer_order: list[str]) -> list[dict]:
    """Latency and error-rate regressions of the sampled probes (JSON ``samples``) against the good run:
    changes with a ``regression`` sentence, ordered by layer. The figures move on every run, so the plain
    comparison leaves them out; a several-fold change is news."""
    out = []
    order = {layer: i for i, layer in enumerate(layer_order)}
    for r in sorted(data["results"], key=lambda r: (order.get(r["layer"], len(order)), r["id"])):
        now, before = r.get("samples") or {}, (baseline["results"].get(r["id"]) or {}).get("samples") or {}
        if not now.get("sent") or not before.get("sent"):
            continue
        p95, p95_0 = float(now.get("p95_ms") or 0), float(before.get("p95_ms") or 0)
        if p95 >= REGRESSION_FLOOR_MS and p95 >= REGRESSION_RATIO * max(p95_0, 1.0):
            out.append({"layer": r["layer"], "check": r["id"], "key": "samples.p95_ms", "before": p95_0, "now": p95,
                        "regression": f"p95 {p95 / max(p95_0, 1.0):.0f}x the good run's ({p95_0:.0f} -> {p95:.0f} ms)"})
        share, share_0 = now["failed"] / now["sent"], before.get("failed", 0) / before["sent"]
        if share - share_0 >= REGRESSION_FAILED_SHARE:
            out.append({"layer": r["layer"], "check": r["id"], "key": "samples.failed",
                        "before": f"{before.get('failed', 0)} of {before['sent']}",
                        "now": f"{now['failed']} of {now['sent']}",
                        "regression": f"{now['failed']} of {now['sent']} samples failed "
                                      f"({before.get('failed', 0)} of {before['sent']} in the good run)"})
    return out


def since_good(baseline: dict | None, data: dict, layer_order: list[str], path: str) -> dict:
    if baseline is None:
        return {"baseline": path, "saved_at": None, "changes": [],
                "note": f"no good run saved yet in {path} (use --save-baseline, or smoke --state)"}
    worse = regressions(baseline, data, layer_order)
    found = (worse + changes(baseline, data, layer_order))[:MAX_CHANGES]
    note = f"{len(found)} change(s) since the good run of {baseline['saved_at']}"
    if worse:
        note += f"; {len(worse)} regression(s): " + "; ".join(f"{c['check']} {c['regression']}" for c in worse[:3])
    return {"baseline": path, "saved_at": baseline["saved_at"], "changes": found, "regressions": len(worse),
            "note": note}
