"""The runner: concurrency, deadlines, dependencies, crashes."""

import threading
import time

from studiodoctor import engine
from studiodoctor.model import Reason, Status, fail, ok, skip, warn
from studiodoctor.registry import Registry

A, B, C = "demo.a", "demo.b", "demo.c"


def test_failed_dependency_blocks_and_names_blocker(make_profile):
    reg = Registry()
    reg.check(A, title="A")(lambda ctx: fail("A is down", evidence={"address": "127.0.0.1:1"}))
    reg.check(B, title="B", depends_on=[A])(lambda ctx: ok("never runs"))
    report = engine.check(make_profile(), registry=reg)
    res = {r.id: r for r in report.results}
    assert res[B].status is Status.BLOCKED
    assert res[B].blocked_by == [A]
    assert "A is down" in res[B].summary
    assert report.exit_code == 2


def test_dependencies_are_included_when_one_check_is_asked(make_profile):
    reg = Registry()
    reg.check(A, title="A")(lambda ctx: ok("up"))
    reg.check(B, title="B", depends_on=[A])(lambda ctx: ok(ctx.result_of(A).summary))
    report = engine.check(make_profile(), check_ids=[B], registry=reg)
    assert [r.id for r in report.results] == [A, B]
    assert report.results[1].summary == "up"


def test_checks_run_concurrently(make_profile):
    barrier = threading.Barrier(2, timeout=5)

    def meet(ctx):
        barrier.wait()  # raises BrokenBarrierError unless both checks run at the same time
        return ok("met")

    reg = Registry()
    reg.check(A, title="A")(meet)
    reg.check(B, title="B")(meet)
    report = engine.check(make_profile(), registry=reg)
    assert [r.status for r in report.results] == [Status.OK, Status.OK]


def test_hanging_check_fails_with_timed_out_within_the_deadline(make_profile):
    release = threading.Event()
    reg = Registry()
    reg.check(A, title="hangs")(lambda ctx: release.wait(30) and ok("late"))
    reg.check(B, title="quick")(lambda ctx: ok("quick"))
    started = time.monotonic()
    report = engine.check(make_profile(), registry=reg, timeout=1)
    elapsed = time.monotonic() - started
    release.set()
    res = {r.id: r for r in report.results}
    assert res[A].status is Status.FAIL and "timed out" in res[A].summary
    assert res[A].reason == Reason.TIMEOUT.value
    assert res[B].status is Status.OK
    assert elapsed < 2.5


def test_crash_is_an_error_with_one_line_and_traceback_only_with_debug(make_profile):
    def boom(ctx):
        raise ValueError("bad thing\nsecond line")

    reg = Registry()
    reg.check(A, title="crashes")(boom)
    plain = engine.check(make_profile(), registry=reg).results[0]
    assert plain.status is Status.ERROR
    assert plain.summary == "check crashed: ValueError: bad thing"
    assert "traceback" not in plain.evidence
    debug = engine.check(make_profile(), registry=reg, debug=True).results[0]
    assert "Traceback" in debug.evidence["traceback"]


def test_unconfigured_key_skips_naming_key_and_variable(make_profile):
    reg = Registry()
    reg.check(A, title="needs redis", needs=["redis.url"])(lambda ctx: ok("ran"))
    reg.check(B, title="after A", depends_on=[A])(lambda ctx: ok("ran"))
    report = engine.check(make_profile({"redis": {"url": "${NOT_SET_ANYWHERE}"}}), registry=reg)
    a, b = report.results
    assert a.status is Status.SKIP
    assert "redis.url" in a.summary and "${NOT_SET_ANYWHERE}" in a.summary
    assert b.status is Status.SKIP
    assert report.exit_code == 0


def _registry(*builders):
    reg = Registry()
    for i, build in enumerate(builders):
        reg.check(f"demo.c{i}", title="x")(lambda ctx, build=build: build("seen"))
    return reg


def _crash(summary):
    raise RuntimeError(summary)


def test_exit_codes_follow_the_worst_status(make_profile):
    assert engine.check(make_profile(), registry=_registry(ok, skip)).exit_code == 0
    assert engine.check(make_profile(), registry=_registry(ok, warn)).exit_code == 1
    assert engine.check(make_profile(), registry=_registry(warn, fail, _crash)).exit_code == 2
    assert engine.check(make_profile(), registry=_registry(warn, _crash)).exit_code == 3  # error, no fail


def test_report_status_counts_skips_as_ok_unless_all_skipped(make_profile):
    assert engine.check(make_profile(), registry=_registry(ok, skip)).status is Status.OK
    assert engine.check(make_profile(), registry=_registry(skip, skip)).status is Status.SKIP
    assert engine.check(make_profile(), registry=_registry(skip, warn)).status is Status.WARN


def test_a_check_starts_once_its_own_sdks_are_imported_not_everyone_s(make_profile, tmp_path, monkeypatch):
    """Over a real network a check's round trips overlap the other layers' SDK imports: a check whose
    SDKs are in starts at once; one whose SDK is still importing (here 0.6 s) starts after it, never before."""
    import sys
    import types

    from studiodoctor.runner import run_checks

    (tmp_path / "slow_sdk_for_runner_test.py").write_text("import time\ntime.sleep(0.6)\nLOADED = time.monotonic()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    started = {}
    for name, sdks in (("light_checks", ()), ("heavy_checks", ("slow_sdk_for_runner_test",))):
        module = types.ModuleType(name)
        module.SDK_IMPORTS = sdks
        monkeypatch.setitem(sys.modules, name, module)

    def body(ctx):
        started[ctx.check.id] = time.monotonic()
        return ok("ran")

    reg = Registry()
    for cid, module in ((A, "light_checks"), (B, "heavy_checks")):
        func = lambda ctx: body(ctx)  # noqa: E731
        func.__module__ = module
        reg.check(cid, title=cid)(func)
    t0 = time.monotonic()
    results = run_checks(list(reg.checks.values()), make_profile(), timeout=10)
    assert [r.status for r in results] == [Status.OK, Status.OK]
    assert started[A] - t0 < 0.4  # did not wait for the slow import
    assert started[B] >= sys.modules["slow_sdk_for_runner_test"].LOADED


def test_the_run_s_shared_clients_are_closed_when_the_run_returns(make_profile):
    """What lets a command leave without the interpreter's teardown (cli.main): the run's connections
    (closed by finalizers on its ``Shared``) are closed by the time the run returns, not at exit."""
    import weakref

    closed = []
    reg = Registry()

    def opens_a_client(ctx):
        ctx.shared.get("demo.client", lambda: weakref.finalize(ctx.shared, closed.append, "demo.client") and "client")
        return ok("opened")

    reg.check(A, title="A")(opens_a_client)
    reg.check(B, title="B", depends_on=[A])(lambda ctx: ok(ctx.shared.peek("demo.client")))
    report = engine.check(make_profile(), registry=reg)
    assert [r.summary for r in report.results] == ["opened", "client"]
    assert closed == ["demo.client"], "the run's Shared outlived the run: its clients would be dropped unclosed"
