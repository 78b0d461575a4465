"""The runner: checks run concurrently, each within its deadline; dependencies turn into `blocked`."""

from __future__ import annotations

import threading
import time
import traceback
from typing import Callable, Iterable

from .context import CheckContext, Shared
from .metrics import resolve as resolve_metrics
from .model import BROKEN, Reason, Result, Status, error, fail, skip
from .registry import Check

# How long past its deadline the runner waits for a check before abandoning it.
GRACE = 0.5
# With a run-wide deadline, a check is started only if at least this long is left for it.
MIN_START = 1.0


def _needs_skip(chk: Check, profile) -> Result | None:
    for key in chk.needs:
        value = profile.value(key)
        if value in (None, "", [], {}):
            var = getattr(value, "var", None)
            why = f"{key} is not set" + (f" (${{{var}}} is unset)" if var else "")
            return skip(why, reason=Reason.NOT_CONFIGURED, hint=f"set {key} in the profile's config")
    return None


def _call(chk: Check, ctx: CheckContext, debug: bool) -> Result:
    try:
        result = chk(ctx)
    except Exception as exc:  # a check must never take the run down
        first = (str(exc).strip().splitlines() or [""])[0]
        res = error(f"check crashed: {type(exc).__name__}: {first}"[:300], reason=Reason.BUG)
        if debug:
            res.evidence["traceback"] = traceback.format_exc()
        return res
    if not isinstance(result, Result):
        return error(f"check returned {type(result).__name__}, not a Result", reason=Reason.BUG)
    return result


def preload(checks: Iterable[Check]) -> None:
    """Import the SDKs the chosen checks use (their module's ``SDK_IMPORTS``) before any check starts.

    An SDK import costs up to half a second of CPU; done inside concurrent checks it would land in
    the latency other checks are measuring at that moment. A failed import is left for the check
    itself to report."""
    import importlib
    import sys

    modules = {c.func.__module__ for c in checks}
    for name in dict.fromkeys(m for mod in modules for m in getattr(sys.modules.get(mod), "SDK_IMPORTS", ())):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the check reports it, with its layer's hint
            pass


def run_checks(checks: Iterable[Check], profile, *, timeout: float | None = None, debug: bool = False,
               options: dict | None = None,
               on_start: Callable[[Check], None] | None = None,
               on_done: Callable[[Result], None] | None = None,
               run_deadline: float | None = None) -> list[Result]:
    """Run ``checks`` (their dependencies must be included) and return results in input order.

    ``run_deadline`` (time.monotonic()) bounds the whole run: no check's deadline passes it (plus
    GRACE), and a check that could not start in time is an `error` "not run", never a guess."""
    checks = list(checks)
    preload(checks)
    by_id = {c.id: c for c in checks}
    budget = float(timeout or profile.timeout)
    shared = Shared()
    results: dict[str, Result] = {}
    running: dict[str, tuple[threading.Thread, float, float, list]] = {}
    cond = threading.Condition()
    pending = list(checks)

    def finish(chk: Check, res: Result, started: float) -> None:
        res.id, res.layer, res.title = chk.id, chk.layer, chk.title
        res.duration_ms = (time.monotonic() - started) * 1000
        if chk.metrics and isinstance(res.evidence, dict):
            res.metrics = resolve_metrics(chk.metrics, res.evidence)
        results[chk.id] = res
        if on_done:
            on_done(res)

    def worker(chk: Check, ctx: CheckContext, box: list) -> None:
        res = _call(chk, ctx, debug)
        with cond:
            box.append(res)
            cond.notify_all()

    with cond:
        while pending or running:
            progressed = False
            for chk in list(pending):
                deps = [d for d in chk.depends_on if d in by_id]
                if any(d not in results for d in deps):
                    continue
                pending.remove(chk)
                progressed = True
                now = time.monotonic()
                broken = [d for d in deps if results[d].status in BROKEN]
                skipped = [d for d in deps if results[d].status is Status.SKIP]
                if broken:
                    res = Result(status=Status.BLOCKED, reason=Reason.DEPENDENCY.value, blocked_by=broken,
                                 summary=f"not run: {', '.join(broken)} did not pass "
                                         f"({results[broken[0]].summary})")
                    finish(chk, res, now)
                elif skipped:
                    res = skip(f"not run: {skipped[0]} was skipped ({results[skipped[0]].summary})",
                               reason=results[skipped[0]].reason or Reason.NOT_APPLICABLE)
                    finish(chk, res, now)
                elif (res := _needs_skip(chk, profile)) is not None:
                    finish(chk, res, now)
                elif run_deadline is not None and run_deadline - now < min(MIN_START, budget):
                    finish(chk, error("not run: the run's time budget ran out before it could start",
                                      reason=Reason.TIMEOUT), now)
                else:
                    deadline = now + budget if run_deadline is None else min(now + budget, run_deadline)
                    ctx = CheckContext(chk, profile, deadline, shared, options, results)
                    box: list = []
                    thread = threading.Thread(target=worker, args=(chk, ctx, box), daemon=True,
                                              name=f"check:{chk.id}")
                    running[chk.id] = (thread, now, deadline, box)
                    if on_start:
                        on_start(chk)
                    thread.start()
            for cid, (thread, started, deadline, box) in list(running.items()):
                if box:
                    del running[cid]
                    res = box[0]
                    if deadline < started + budget and res.status is Status.FAIL and res.reason == Reason.TIMEOUT.value:
                        # the run's budget left it less than its usual time: a timeout proves nothing
                        res = error(f"the run's time budget left it {deadline - started:.3g} s: {res.summary}"[:300],
                                    evidence=res.evidence, reason=Reason.TIMEOUT, hint=res.hint, commands=res.commands)
                    finish(by_id[cid], res, started)
                    progressed = True
                elif time.monotonic() > deadline + GRACE:
                    del running[cid]  # abandoned: its daemon thread cannot hold the run up
                    if deadline < started + budget:  # cut short by the run's budget: not proof of anything
                        res = error(f"the run's time budget ran out after {deadline - started:.3g} s "
                                    f"while it was running", reason=Reason.TIMEOUT)
                    else:
                        res = fail(f"timed out after {budget:g} s with no answer", reason=Reason.TIMEOUT)
                    finish(by_id[cid], res, started)
                    progressed = True
            if not progressed and running:
                next_deadline = min(d for _, _, d, _ in running.values()) + GRACE
                cond.wait(timeout=max(0.01, next_deadline - time.monotonic()))
            elif not progressed and pending:
                # dependencies that can never finish (a cycle): report, don't hang
                for chk in pending:
                    finish(chk, error("dependency cycle", reason=Reason.BUG), time.monotonic())
                pending.clear()
    return [results[c.id] for c in checks]
