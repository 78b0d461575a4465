"""The run on two cores (studiodoctor.forked): which checks go apart, and that the runner's promises hold
across the fork — results in order, dependencies, deadlines, and a child that dies or hangs reported, never
guessed. The forking runs are real processes (a fresh interpreter: forking pytest's threads is undefined)."""

import json
import subprocess
import sys
import textwrap
import types

import pytest

from studiodoctor import forked
from studiodoctor.config import profile_from_data
from studiodoctor.model import ok
from studiodoctor.registry import Registry


def _module(name: str, sdks: tuple) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.SDK_IMPORTS = sdks
    sys.modules[name] = mod
    return mod


def _check(reg: Registry, cid: str, module: str, depends_on=(), needs=()):
    def body(ctx):
        return ok(cid)

    body.__module__ = module
    reg.check(cid, title=cid, depends_on=depends_on, needs=needs)(body)


def test_a_group_goes_apart_whole_with_its_dependencies_and_its_backend():
    _module("demo_http_checks", ("httpx",))
    _module("demo_pg_checks", ("psycopg",))
    reg = Registry()
    _check(reg, "web.a", "demo_http_checks")
    _check(reg, "pg.reachable", "demo_pg_checks")
    _check(reg, "pg.size", "demo_pg_checks", depends_on=["pg.reachable"])
    _check(reg, "pg.plain", "demo_http_checks")                           # same backend: goes with it
    _check(reg, "queue.depth", "demo_http_checks", depends_on=["pg.reachable"])  # depends on it: goes too
    _check(reg, "web.b", "demo_http_checks", depends_on=["web.a"])
    here, apart = forked.split(list(reg.checks.values()))
    assert [c.id for c in here] == ["web.a", "web.b"]
    assert [c.id for c in apart] == ["pg.reachable", "pg.size", "pg.plain", "queue.depth"]


def test_checks_the_profile_leaves_unconfigured_stay_here():
    _module("demo_redis_checks", ("redis",))
    reg = Registry()
    _check(reg, "rd.reachable", "demo_redis_checks", needs=("redis.url",))
    _check(reg, "web.a", "demo_http_checks_2")
    profile = profile_from_data("t", {}, env={})
    here, apart = forked.split(list(reg.checks.values()), profile)
    assert apart == [] and len(here) == 2  # it would only say `skip`: no process for it


def test_an_in_process_caller_never_forks():
    assert forked.ALLOWED is False and forked.can_fork() is False


SCRIPT = textwrap.dedent('''
    import json, os, sys, time, types
    from studiodoctor import engine, forked
    from studiodoctor.config import profile_from_data
    from studiodoctor.model import fail, ok
    from studiodoctor.registry import Registry

    MODE, TIMEOUT = sys.argv[1], float(sys.argv[2])
    heavy = types.ModuleType("demo_heavy"); heavy.SDK_IMPORTS = ("redis",); sys.modules["demo_heavy"] = heavy
    light = types.ModuleType("demo_light"); light.SDK_IMPORTS = (); sys.modules["demo_light"] = light
    reg = Registry()

    def add(cid, module, body, depends_on=()):
        body.__module__ = module
        reg.check(cid, title=cid, depends_on=depends_on)(body)

    def reachable(ctx):
        if MODE == "child-dies":
            os._exit(7)
        if MODE == "child-fails":
            return fail("down", evidence={"pid": os.getpid()})
        import redis  # noqa: F401 - uses its SDK, as a real check does
        return ok("up", evidence={"pid": os.getpid()})

    def hangs(ctx):
        time.sleep(60 if MODE == "child-hangs" else 0)
        return ok("answered", evidence={"pid": os.getpid()})

    add("web.first", "demo_light", lambda ctx: ok("web", evidence={"pid": os.getpid()}))
    add("rd.reachable", "demo_heavy", reachable)
    add("rd.slow", "demo_heavy", hangs, depends_on=["rd.reachable"])
    add("web.second", "demo_light", lambda ctx: ok("web2", evidence={"pid": os.getpid()}), depends_on=["web.first"])
    forked.ALLOWED = True
    seen = []
    profile = profile_from_data("t", {}, env={})
    t0 = time.monotonic()
    report = engine.check(profile, registry=reg, timeout=TIMEOUT, on_done=lambda r: seen.append(r.id))
    print(json.dumps({"pid": os.getpid(), "wall": time.monotonic() - t0, "seen": sorted(seen),
                      "redis_here": "redis" in sys.modules,
                      "results": [dict(r.to_dict(), start_ms=r.start_ms) for r in report.results]}))
''')


TIMEOUT = 2.0  # per check; the run's deadline is twice that (runner.RUN_FACTOR)


def run_script(tmp_path, mode: str) -> dict:
    path = tmp_path / "split_run.py"
    path.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(path), mode, str(TIMEOUT)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


ONE_CORE = pytest.mark.skipif(forked.usable_cores() < 2, reason="one usable core: a run never forks there")


@ONE_CORE
def test_the_heavy_checks_run_in_a_child_and_come_back_in_order(tmp_path):
    out = run_script(tmp_path, "ok")
    res = {r["id"]: r for r in out["results"]}
    assert [r["id"] for r in out["results"]] == ["web.first", "rd.reachable", "rd.slow", "web.second"]
    assert all(r["status"] == "ok" for r in out["results"]), out["results"]
    assert res["web.first"]["evidence"]["pid"] == res["web.second"]["evidence"]["pid"] == out["pid"]
    assert res["rd.reachable"]["evidence"]["pid"] == res["rd.slow"]["evidence"]["pid"] != out["pid"]
    assert not out["redis_here"], "the parent imported the child's SDK"
    assert out["seen"] == sorted(res), "every result, the child's too, went through on_done"
    assert all(r["start_ms"] is not None and 0 <= r["start_ms"] < 5000 for r in out["results"]), out["results"]


@ONE_CORE
def test_a_failure_in_the_child_blocks_its_dependents_as_in_one_process(tmp_path):
    res = {r["id"]: r for r in run_script(tmp_path, "child-fails")["results"]}
    assert res["rd.reachable"]["status"] == "fail"
    assert res["rd.slow"]["status"] == "blocked" and res["rd.slow"]["blocked_by"] == ["rd.reachable"], res["rd.slow"]
    assert res["web.second"]["status"] == "ok", res["web.second"]


@ONE_CORE
def test_a_child_that_dies_is_an_error_for_each_of_its_checks(tmp_path):
    res = {r["id"]: r for r in run_script(tmp_path, "child-dies")["results"]}
    for cid in ("rd.reachable", "rd.slow"):
        assert res[cid]["status"] == "error" and "ended early" in res[cid]["summary"], res[cid]
    assert res["web.first"]["status"] == res["web.second"]["status"] == "ok"


@ONE_CORE
def test_a_check_hanging_in_the_child_is_abandoned_at_the_deadline(tmp_path):
    """The child's runner abandons it as one process would (`fail` timed out at its own deadline, or an
    `error` when a slow start left it less than its timeout), reports it, and the run ends in time."""
    out = run_script(tmp_path, "child-hangs")
    res = {r["id"]: r for r in out["results"]}
    slow = res["rd.slow"]
    assert res["rd.reachable"]["status"] == "ok", res["rd.reachable"]
    assert (slow["status"], "timed out" in slow["summary"]) == ("fail", True) or \
        (slow["status"], "time budget" in slow["summary"]) == ("error", True), slow
    assert slow["reason"] == "timeout", slow
    assert out["wall"] < 2 * TIMEOUT + 2 * 0.5 + 1, f"the run took {out['wall']:.1f} s with a {TIMEOUT} s timeout"


# checks whose verdict does not hang on this machine's speed (redis.latency's would, under load)
NOT_TIMED = ["redis.reachable", "redis.version", "redis.memory", "redis.evictions", "redis.role", "local.control"]


@pytest.mark.parametrize("args", [[arg for cid in NOT_TIMED for arg in ("--check", cid)]])
def test_the_command_line_run_on_two_cores_says_what_one_process_says(tmp_path, redis_server, control_listener,
                                                                        args, capsys):
    """The console script forks (redis apart, local here); the same run on one core and in-process does not:
    same verdicts, and the same order as a fresh process on one core (in-process, the order of the checks is
    the registry's, which the tests run before this one in the same process decide)."""
    from pathlib import Path

    from studiodoctor.cli import main

    config = tmp_path / "sd.toml"
    config.write_text(f'[profiles.t.redis]\nurl = "{redis_server.url()}"\n'
                      f'[profiles.t.local]\ncontrol_urls = ["{control_listener}"]\n')
    exe = Path(sys.executable).with_name("studiodoctor")
    cmd = ["check", "--config", str(config), "--profile", "t", *args, "--format", "json"]
    proc = subprocess.run([str(exe), *cmd], capture_output=True, text=True, timeout=60)
    split = json.loads(proc.stdout)
    one_core = ("import os, sys; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
                "from studiodoctor.cli import main; sys.exit(main(sys.argv[1:]))")
    alone = subprocess.run([sys.executable, "-c", one_core, *cmd], capture_output=True, text=True, timeout=60)
    code = main(cmd)
    whole = json.loads(capsys.readouterr().out)
    verdicts = [(r["id"], r["status"]) for r in whole["results"]]
    assert ("redis.reachable", "ok") in verdicts and ("local.control", "ok") in verdicts, whole["results"][:3]
    shown = lambda report: [(r["id"], r["status"], r["summary"]) for r in report["results"]]  # noqa: E731
    assert sorted((r["id"], r["status"]) for r in split["results"]) == sorted(verdicts), (shown(split), shown(whole))
    assert len(split["results"]) == len(verdicts), (shown(split), shown(whole))
    assert [(r["id"], r["status"]) for r in split["results"]] == \
        [(r["id"], r["status"]) for r in json.loads(alone.stdout)["results"]], (shown(split), alone.stdout[-800:])
    assert proc.returncode == code == alone.returncode, proc.stderr[-500:]
