"""``studiodoctor smoke``: the checks marked ``smoke=True``, within a total time budget, with optional
state for hysteresis (a check alerts after ``fail_after`` bad runs in a row; recovery is said once).

The state file is JSON (schema ``studiodoctor.smoke-state/1``), written atomically (temp file + rename)
so a run killed mid-write never leaves half a file:

    {"schema": ..., "profile": "production", "runs": [{"started_at", "status", "exit_code"}, ...],
     "checks": {"redis.latency": {"status": "fail", "bad_runs": 2, "alerting": true, "since": "..."}},
     "baseline": {...}}    # the last all-ok run's evidence, for `diagnose --since-good`
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Iterable

from .diagnosis import baseline
from .config import Profile
from .engine import UsageError, now_iso, run, select_checks
from .model import Status
from .registry import Check, Registry, default_registry
from .report import Report
from .runner import preload
from .secrets import Redactor

STATE_SCHEMA = "studiodoctor.smoke-state/1"
DEFAULT_BUDGET = 20.0
DEFAULT_FAIL_AFTER = 2
KEEP_RUNS = 20
# Kept back from the budget: the runner may wait GRACE past a deadline, then the report is rendered.
RESERVE = 0.8
MIN_BUDGET = 3.0  # the reserve, the runner's grace and one check's start (runner.MIN_START)
GOOD = (Status.OK, Status.SKIP)


class StateError(Exception):
    """The state file cannot be read or does not belong to this profile: one line, exit 3."""


def process_started(now: float | None = None) -> float:
    """When this process started, on the time.monotonic() clock (Linux: /proc; elsewhere ``now``)."""
    now = time.monotonic() if now is None else now
    try:
        with open("/proc/self/stat") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        age = uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return now
    return now - age if 0 <= age < 600 else now


def smoke_checks(registry: Registry, layers: Iterable[str] = ()) -> list[Check]:
    """The smoke checks (of ``layers``, if given) and what they depend on."""
    layers = list(layers)
    select_checks(registry, layers, [])  # validates the layer names
    chosen = [c for c in registry.checks.values() if c.smoke and (not layers or c.layer in layers)]
    return registry.with_dependencies(chosen)


def load_state(path: str, profile: str) -> dict:
    if not os.path.exists(path):
        return {"schema": STATE_SCHEMA, "profile": profile, "runs": [], "checks": {}}
    try:
        with open(path, encoding="utf-8") as fh:
            state = json.load(fh)
    except (OSError, ValueError) as exc:
        raise StateError(f"--state {path}: cannot read it ({type(exc).__name__}: {exc}); "
                         f"move it away to start afresh") from None
    if not isinstance(state, dict) or state.get("schema") != STATE_SCHEMA:
        raise StateError(f"--state {path}: not a studiodoctor smoke state file ({STATE_SCHEMA})")
    if state.get("profile") != profile:
        raise StateError(f"--state {path} belongs to profile {state.get('profile')!r}, not {profile!r}: "
                         f"use one state file per profile")
    state.setdefault("runs", [])
    state.setdefault("checks", {})
    return state


def save_state(path: str, state: dict) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".studiodoctor-state-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=1, default=str)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def apply_hysteresis(report: Report, state: dict, fail_after: int) -> dict[str, list[str]]:
    """Update ``state`` with this run; set ``report.transitions``; return the lists for the JSON.

    new: bad for ``fail_after`` runs in a row, alerting from this run on; still-bad: alerting before and
    now; recovered: alerting before, good now (said once); pending: bad, not yet ``fail_after`` times."""
    lists: dict[str, list[str]] = {"new": [], "still_bad": [], "recovered": [], "pending": []}
    checks = state["checks"]
    for r in report.results:
        before = checks.get(r.id, {})
        bad = r.status not in GOOD
        streak = before.get("bad_runs", 0) + 1 if bad else 0
        alerting = bad and streak >= fail_after
        was = bool(before.get("alerting"))
        if alerting:
            transition = "still-bad" if was else "new"
        elif bad:
            transition = "pending"
        else:
            transition = "recovered" if was else "ok"
        if transition != "ok":
            lists[transition.replace("-", "_")].append(r.id)
        report.transitions[r.id] = transition
        same = before and bad == (before.get("bad_runs", 0) > 0)  # still good, or still bad
        checks[r.id] = {"status": r.status.value, "bad_runs": streak, "alerting": alerting,
                        "since": before.get("since") if same else report.started_at}
    for gone in set(checks) - {r.id for r in report.results}:
        if not checks[gone].get("alerting"):  # forget checks no longer run, unless still alerting
            del checks[gone]
    return lists


def smoke(profile: Profile, layers: Iterable[str] = (), *, registry: Registry | None = None,
          budget: float = DEFAULT_BUDGET, state_path: str | None = None, fail_after: int = DEFAULT_FAIL_AFTER,
          timeout: float | None = None, debug: bool = False, on_start=None, on_done=None,
          started: float | None = None, options: dict | None = None) -> Report:
    """Run the smoke checks within ``budget`` seconds (from ``started``, default now), apply the state."""
    started = time.monotonic() if started is None else started
    if budget < MIN_BUDGET:
        raise UsageError(f"--budget must be at least {MIN_BUDGET:g} s")
    if fail_after < 1:
        raise UsageError("--fail-after must be at least 1")
    registry = registry or default_registry.load_plugins()
    chosen = smoke_checks(registry, layers)
    state = None
    if state_path:
        try:
            state = load_state(state_path, profile.name)
        except StateError as exc:
            raise UsageError(str(exc)) from None
    per_check = min(float(timeout or profile.timeout), budget - RESERVE)
    t0 = time.monotonic()
    preload(chosen, profile)  # the SDKs' import CPU, timed apart from the checks (the runner's own call is then free)
    imports_ms = (time.monotonic() - t0) * 1000
    report = run(profile, chosen, command="smoke", timeout=per_check, debug=debug, options=options,
                 on_start=on_start, on_done=on_done, run_deadline=started + budget - RESERVE - 0.5)
    info = {"budget_s": budget, "imports_ms": round(imports_ms, 1), "checks": len(chosen), "state": state_path,
            "fail_after": fail_after if state else None}
    if state is not None:
        info.update(apply_hysteresis(report, state, fail_after))
        state["runs"] = (state["runs"] + [{"started_at": report.started_at, "status": report.status.value,
                                           "exit_code": int(report.exit_code),
                                           "duration_ms": round(report.duration_ms, 1)}])[-KEEP_RUNS:]
        state["updated_at"] = now_iso()
        data = report.to_dict(Redactor(profile.secrets))
        if baseline.is_good(data):  # the last good run, for `diagnose --since-good --baseline STATE`
            state["baseline"] = baseline.snapshot(data)
        try:
            save_state(state_path, state)
        except OSError as exc:
            raise UsageError(f"--state {state_path}: cannot write it: {exc}") from None
    report.smoke = info
    return report
