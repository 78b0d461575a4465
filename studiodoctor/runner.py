"""The runner: checks run concurrently (capped), within one run deadline; dependencies turn into `blocked`."""

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
# Checks running at once, in the whole run and per backend (check-id prefix): a full run opens at most PER_BACKEND
# connections at a time to any one backend (production is what we are diagnosing: be gentle).
MAX_CONCURRENT = 32
PER_BACKEND = 3
# Backends whose checks share a pool of at most PER_BACKEND connections opened by the backend's module
# (``backends.postgres.POOL``): the pool is their cap, so their checks wait for a free connection, not
# for a slot here (a check's queries then never queue behind another check's Python).
POOLED = ("postgres",)
# The whole run ends by RUN_FACTOR x the per-check timeout: dependency chains cannot add up.
RUN_FACTOR = 2.0
# Most of the per-check budget the run waits for SDK imports before starting the checks anyway.
PRELOAD_SHARE = 0.5
# With a run-wide deadline, a check is started only if at least this long is left for it.
MIN_START = 1.0


def abandoned() -> list[str]:
    """Ids of checks the runner gave up on whose threads are still blocked (in a socket, an SDK's C code)."""
    return [t.name[len("check:"):] for t in threading.enumerate() if t.name.startswith("check:") and t.is_alive()]


def deadline_of_run(start: float, budget: float, run_deadline: float | None = None,
                    run_timeout: float | None = None) -> float:
    """The run's one deadline (time.monotonic()): ``run_timeout`` after ``start`` (default RUN_FACTOR x the
    per-check ``budget``), or ``run_deadline`` when that is sooner."""
    return min(start + float(run_timeout or RUN_FACTOR * budget),
               run_deadline if run_deadline is not None else float("inf"))


def leave(code: int) -> None:
    """End the process with ``code`` now that everything is written, without the interpreter's teardown."""
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be written anyway
            pass
    os._exit(code)


def exit_now(code: int) -> None:
    """End the process with ``code`` once everything is written, when abandoned checks are still blocked:
    finalizing the interpreter under daemon threads stuck in C code can abort it (SIGABRT, exit 134),
    which would turn a `fail` (2) into noise for the monitoring system reading the exit code."""
    if abandoned():
        leave(code)


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


# What the first use of an SDK imports lazily (inside the check, where its CPU would land in the
# latencies other checks are measuring): imported up front with the SDK.
WARM_IMPORTS = {
    "httpx": ("httpcore", "h11", "httpcore._sync.http11", "studiodoctor.probes.http", "studiodoctor.probes.tls"),
}
# What an SDK's ``__init__`` imports that no check uses, kept out (an ImportError it handles): httpx's own
# command-line client (click, rich, pygments: ~60 ms of CPU, a third of ``import httpx``).
UNUSED_SUBMODULES = {"httpx": ("httpx._main",)}


def _import_sdk(name: str) -> None:
    import importlib
    import sys

    if name not in sys.modules:
        for unused in UNUSED_SUBMODULES.get(name, ()):
            sys.modules.setdefault(unused, None)  # a None entry makes its import raise ImportError
    importlib.import_module(name)


# Whether a check may start once its own SDKs are in (True), or only once every SDK of the run is.
OVERLAP_IMPORTS = True
# What preload imports first: the SDKs of the checks that can start soonest and do the most round trips
# (a check starts as soon as its own SDKs are in, see run_checks).
PRELOAD_FIRST = ("httpx", "psycopg")


def sdk_imports(chk: Check) -> tuple[str, ...]:
    """The SDKs a check's module imports for it (its ``SDK_IMPORTS``)."""
    import sys

    return tuple(getattr(sys.modules.get(chk.func.__module__), "SDK_IMPORTS", ()))


def preload(checks: Iterable[Check], profile=None, ready: Callable[[str], None] | None = None) -> None:
    """Import the SDKs the chosen checks use (their module's ``SDK_IMPORTS``) before they start, and
    what their first use would import or build (httpcore, the TLS contexts with their CA bundle).

    An SDK import costs up to half a second of CPU; done inside concurrent checks it would land in
    the latency other checks are measuring at that moment. With ``profile``, a check that will be
    skipped (a needed key is unset) imports nothing. ``ready(name)`` is called once each SDK (with its
    warm-up) is in, first those of PRELOAD_FIRST. A failed import is left for the check itself to report."""
    checks = [c for c in checks if profile is None or _needs_skip(c, profile) is None]
    names = list(dict.fromkeys(m for c in checks for m in sdk_imports(c)))
    names.sort(key=lambda n: PRELOAD_FIRST.index(n) if n in PRELOAD_FIRST else len(PRELOAD_FIRST))
    for name in names:
        for module in (name, *WARM_IMPORTS.get(name, ())):
            try:
                _import_sdk(module)
            except Exception:  # noqa: BLE001 - the check reports it, with its layer's hint
                pass
        if name == "httpx" and profile is not None:
            try:
                from .probes.http import warm
                warm(profile)
            except Exception:  # noqa: BLE001 - a bad CA file is the checks' to report
                pass
        if ready is not None:
            ready(name)


def backend(chk) -> str:
    """The group of checks that talk to one backend: the id's prefix (``edge.*`` and ``cloudflare.*``
    share a layer but not an endpoint)."""
    return chk.id.split(".", 1)[0]


def _silent(res: Result) -> bool:
    """A result that got no answer within its whole deadline (it was sent)."""
    return res.status is Status.FAIL and res.reason == Reason.TIMEOUT.value and res.evidence.get("started") is not False


def _not_sent(chk: Check, silent: dict[str, Result]) -> Result | None:
    """A check not yet started whose layer already got no answer within a whole deadline (``silent``: the
    first such result per backend): sending it would only pile another connection onto a backend that
    does not answer (and hold the run up)."""
    first = silent.get(backend(chk))
    if first is None:
        return None
    return fail(f"no answer within the deadline: not sent, {first.id} got none from this layer "
                f"({first.summary})"[:300], reason=Reason.TIMEOUT, evidence={"started": False, "silent": first.id})


def _out_of_time() -> Result:
    return error("not run: the run's time budget ran out before it could start", reason=Reason.TIMEOUT,
                 evidence={"started": False})


def run_checks(checks: Iterable[Check], profile, *, timeout: float | None = None, debug: bool = False,
               options: dict | None = None,
               on_start: Callable[[Check], None] | None = None,
               on_done: Callable[[Result], None] | None = None,
               max_concurrent: int = MAX_CONCURRENT, per_backend: int = PER_BACKEND,
               run_timeout: float | None = None, run_deadline: float | None = None) -> list[Result]:
    """Run ``checks`` (their dependencies must be included) and return results in input order.

    Bounds for the run as a whole: at most ``max_concurrent`` checks at once and ``per_backend`` per
    backend (so a full run opens only a few connections to any one backend); each check ``timeout``
    seconds, and ONE deadline for the run, ``run_timeout`` (default RUN_FACTOR x ``timeout``) from the
    start, that no check outlives however long its dependency chain. Once a check of a backend got no
    answer within its whole deadline, that backend's checks not yet started are not sent (``fail``).
    ``run_deadline`` (time.monotonic()) may bound the run tighter (smoke, serve); a check cut short by
    the run's budget, or that could not start in time, is an `error`, never a guess."""
    run_start = time.monotonic()
    checks = list(checks)
    budget = float(timeout or profile.timeout)
    # SDK imports first (so their CPU does not land in latencies being measured): a check starts once its
    # own SDKs are in (an HTTP check need not wait for psycopg: over a real network its round trips
    # overlap the imports); on an overloaded machine every check starts anyway after PRELOAD_SHARE of the
    # budget (the run's deadline counts it).
    imported: set[str] = set()
    cond = threading.Condition()

    def ready(name: str) -> None:
        with cond:
            imported.add(name)
            cond.notify_all()

    loader = threading.Thread(target=preload, args=(checks, profile, ready), daemon=True, name="preload")
    loader.start()
    imports_until = run_start + PRELOAD_SHARE * budget

    def imports_in(chk: Check) -> bool:
        return not loader.is_alive() or time.monotonic() >= imports_until or \
            (OVERLAP_IMPORTS and all(name in imported for name in sdk_imports(chk)))

    by_id = {c.id: c for c in checks}
    run_deadline = deadline_of_run(run_start, budget, run_deadline, run_timeout)
    shared = Shared()
    results: dict[str, Result] = {}
    silent: dict[str, Result] = {}  # backend -> its first result that got no answer (see _not_sent)
    running: dict[str, tuple] = {}  # id -> (thread, started, deadline, box, ctx, clock, times)
    pending = list(checks)

    def finish(chk: Check, res: Result, started: float, ended: float | None = None) -> None:
        res.id, res.layer, res.title = chk.id, chk.layer, chk.title
        res.duration_ms = ((ended or time.monotonic()) - started) * 1000
        res.start_ms = (started - run_start) * 1000
        if chk.metrics and isinstance(res.evidence, dict):
            res.metrics = resolve_metrics(chk.metrics, res.evidence)
        results[chk.id] = res
        if _silent(res):
            silent.setdefault(backend(chk), res)
        if on_done:
            on_done(res)

    def worker(job: list) -> None:
        chk, ctx, box, times = job
        job.clear()  # the context (and the run's Shared) held by nothing of this thread once it reports
        # timed here, not when the scheduler gets round to it: its own start and end, never the queue's
        times.append(time.monotonic())
        res = _call(chk, ctx, debug)
        times.append(time.monotonic())
        res.network_ms = ctx.network_ms()
        if res.samples is None and ctx.sampled:
            from .probes.sampling import combined
            res.samples = combined(ctx.sampled)
        if ctx.round_trips and isinstance(res.evidence, dict):
            res.evidence.setdefault("round_trips", ctx.round_trips)
        if res.network_ms is None and isinstance(res.evidence, dict):  # a backend that times its own calls
            figure = res.evidence.get("network_ms")
            res.network_ms = float(figure) if isinstance(figure, (int, float)) else None
        del ctx
        with cond:
            box.append(res)
            cond.notify_all()

    busy: dict[str, int] = {}  # backend -> its checks running

    def has_slot(chk: Check) -> bool:
        if len(running) >= max_concurrent:
            return False
        return backend(chk) in POOLED or busy.get(backend(chk), 0) < per_backend

    def release(cid: str) -> None:
        del running[cid]
        busy[backend(by_id[cid])] -= 1

    with cond:
        while pending or running:
            progressed = False
            for cid, (thread, started, deadline, box, ctx, clock, times) in list(running.items()):
                if box:
                    release(cid)
                    res = box[0]
                    if deadline < clock + budget and res.status is Status.FAIL and res.reason == Reason.TIMEOUT.value:
                        # the run's budget left it less than its usual time: a timeout proves nothing
                        res = error(f"the run's time budget left it {deadline - started:.3g} s: {res.summary}"[:300],
                                    evidence=res.evidence, reason=Reason.TIMEOUT, hint=res.hint, commands=res.commands)
                    if ctx.retries:
                        res.evidence.setdefault("retried", list(ctx.retries))
                    finish(by_id[cid], res, times[0] if times else started, times[1] if len(times) > 1 else None)
                    progressed = True
                elif time.monotonic() > deadline + GRACE:
                    release(cid)  # abandoned: its daemon thread cannot hold the run up
                    if loader.is_alive():  # still importing SDKs: our machine was slow, not the backend
                        res = error(f"not answered in time: the SDK imports were still running after "
                                    f"{time.monotonic() - run_start:.3g} s (an overloaded machine?)",
                                    reason=Reason.TIMEOUT)
                    elif deadline < clock + budget:  # cut short by the run's budget: not proof of anything
                        res = error(f"the run's time budget ran out after {deadline - started:.3g} s "
                                    f"while it was running", reason=Reason.TIMEOUT)
                    else:
                        res = fail(f"no answer within {budget:g} s (timed out, abandoned)", reason=Reason.TIMEOUT)
                    finish(by_id[cid], res, started)
                    progressed = True
            for chk in list(pending):
                deps = [d for d in chk.depends_on if d in by_id]
                if any(d not in results for d in deps):
                    continue
                now = time.monotonic()
                broken = [d for d in deps if results[d].status in BROKEN]
                skipped = [d for d in deps if results[d].status is Status.SKIP]
                if broken:
                    res = Result(status=Status.BLOCKED, reason=Reason.DEPENDENCY.value, blocked_by=broken,
                                 summary=f"not run: {', '.join(broken)} did not pass "
                                         f"({results[broken[0]].summary})")
                elif skipped:
                    res = skip(f"not run: {skipped[0]} was skipped ({results[skipped[0]].summary})",
                               reason=results[skipped[0]].reason or Reason.NOT_APPLICABLE)
                elif (res := _needs_skip(chk, profile)) is not None:
                    pass
                elif (res := _not_sent(chk, silent)) is not None:
                    pass
                elif run_deadline - now < min(MIN_START, budget):
                    res = _out_of_time()
                elif not has_slot(chk) or not imports_in(chk):
                    continue
                else:
                    clock = now
                    ctx = CheckContext(chk, profile, min(clock + budget, run_deadline), shared, options, results)
                    box: list = []
                    times: list = []
                    thread = threading.Thread(target=worker, args=([chk, ctx, box, times],), daemon=True,
                                              name=f"check:{chk.id}")
                    running[chk.id] = (thread, now, ctx.deadline, box, ctx, clock, times)
                    busy[backend(chk)] = busy.get(backend(chk), 0) + 1
                    pending.remove(chk)
                    progressed = True
                    if on_start:
                        on_start(chk)
                    thread.start()
                    continue
                pending.remove(chk)
                progressed = True
                finish(chk, res, now)
            if not progressed and running:
                next_deadline = min(r[2] for r in running.values()) + GRACE
                if loader.is_alive():
                    next_deadline = min(next_deadline, imports_until)
                cond.wait(timeout=max(0.01, next_deadline - time.monotonic()))
            elif not progressed and pending and not all(imports_in(c) for c in pending):
                cond.wait(timeout=max(0.01, min(0.05, imports_until - time.monotonic())))  # or by ready()
            elif not progressed and pending:
                # dependencies that can never finish (a cycle): report, don't hang
                for chk in pending:
                    finish(chk, error("dependency cycle", reason=Reason.BUG), time.monotonic())
                pending.clear()
    return [results[c.id] for c in checks]
