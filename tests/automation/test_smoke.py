"""`studiodoctor smoke`: the smoke subset, a budget it never exceeds, hysteresis through --state."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from studiodoctor import smoke as smoke_mod
from studiodoctor.cli import main
from studiodoctor.engine import UsageError
from studiodoctor.model import READ_ONLY, Status, fail, ok
from studiodoctor.registry import Registry, default_registry


def test_smoke_checks_are_read_only_and_bring_their_dependencies():
    reg = default_registry.load_plugins()
    chosen = smoke_mod.smoke_checks(reg)
    marked = [c for c in chosen if c.smoke]
    assert len(marked) >= 20 and all(c.safety == READ_ONLY for c in chosen)
    ids = {c.id for c in chosen}
    assert all(d in ids for c in chosen for d in c.depends_on)          # dependencies come along
    assert "gcs.public_read" not in ids and "trace.hops" not in ids      # listings and traces are not smoke
    assert [c.id for c in smoke_mod.smoke_checks(reg, ["redis"])] == ["redis.reachable", "redis.latency",
                                                                      "redis.memory"]


def test_the_budget_is_never_exceeded(make_profile):
    release = threading.Event()
    reg = Registry()
    reg.check("slow.hangs", title="hangs", smoke=True)(lambda ctx: release.wait(60) and ok("late"))
    reg.check("slow.after", title="after", smoke=True, depends_on=["slow.hangs"])(lambda ctx: ok("never"))
    reg.check("slow.quick", title="quick", smoke=True)(lambda ctx: ok("quick"))
    reg.check("slow.not_smoke", title="not smoke")(lambda ctx: ok("never asked"))
    t0 = time.monotonic()
    report = smoke_mod.smoke(make_profile(timeout=30), registry=reg, budget=3)
    elapsed = time.monotonic() - t0
    release.set()
    assert elapsed < 3
    res = {r.id: r for r in report.results}
    assert set(res) == {"slow.hangs", "slow.after", "slow.quick"}
    assert res["slow.hangs"].status is Status.ERROR and "budget ran out" in res["slow.hangs"].summary
    assert res["slow.after"].status is Status.BLOCKED
    assert res["slow.quick"].status is Status.OK
    assert report.command == "smoke" and report.smoke["budget_s"] == 3


def test_a_check_that_cannot_start_in_time_is_an_error_not_a_guess(make_profile):
    reg = Registry()
    reg.check("chain.first", title="first", smoke=True)(lambda ctx: time.sleep(max(0, ctx.remaining() - 0.3))
                                                        or ok("took all the time"))
    reg.check("chain.second", title="second", smoke=True, depends_on=["chain.first"])(lambda ctx: ok("late"))
    report = smoke_mod.smoke(make_profile(timeout=30), registry=reg, budget=3.5)
    res = {r.id: r for r in report.results}
    assert res["chain.first"].status is Status.OK
    assert res["chain.second"].status is Status.ERROR and "not run" in res["chain.second"].summary


class Toggle:
    def __init__(self):
        self.bad = False

    def __call__(self, ctx):
        return fail("down", evidence={"address": "127.0.0.1:1"}) if self.bad else ok("up")


def test_hysteresis_alerts_after_n_bad_runs_and_reports_recovery_once(make_profile, tmp_path):
    toggle = Toggle()
    reg = Registry()
    reg.check("svc.up", title="up", smoke=True)(toggle)
    reg.check("svc.other", title="other", smoke=True)(lambda ctx: ok("fine"))
    state = str(tmp_path / "state.json")
    prof = make_profile(name="prod")

    def run(bad):
        toggle.bad = bad
        report = smoke_mod.smoke(prof, registry=reg, budget=5, state_path=state, fail_after=2)
        return report.transitions["svc.up"], int(report.exit_code), report.smoke

    assert run(False)[:2] == ("ok", 0)
    assert run(True)[:2] == ("pending", 0)          # one bad run does not alert
    transition, code, info = run(True)
    assert (transition, code, info["new"]) == ("new", 2, ["svc.up"])
    assert run(True)[:2] == ("still-bad", 2)
    transition, code, info = run(False)
    assert (transition, code, info["recovered"]) == ("recovered", 0, ["svc.up"])
    transition, code, info = run(False)
    assert (transition, code, info["recovered"]) == ("ok", 0, [])  # said once
    saved = json.loads(open(state).read())
    assert saved["profile"] == "prod" and len(saved["runs"]) == 6
    assert saved["checks"]["svc.up"] == {"status": "ok", "bad_runs": 0, "alerting": False,
                                         "since": saved["runs"][4]["started_at"]}
    assert os.listdir(tmp_path) == ["state.json"]  # written through a temp file, nothing left over


def test_without_state_a_bad_result_counts_at_once(make_profile):
    reg = Registry()
    reg.check("svc.up", title="up", smoke=True)(lambda ctx: fail("down"))
    report = smoke_mod.smoke(make_profile(), registry=reg, budget=5)
    assert int(report.exit_code) == 2 and report.transitions == {}
    assert report.smoke["state"] is None


def test_state_of_another_profile_or_unreadable_is_refused(make_profile, tmp_path):
    reg = Registry()
    reg.check("svc.up", title="up", smoke=True)(lambda ctx: ok("up"))
    state = tmp_path / "state.json"
    smoke_mod.smoke(make_profile(name="a"), registry=reg, budget=5, state_path=str(state))
    with pytest.raises(UsageError, match="belongs to profile 'a'"):
        smoke_mod.smoke(make_profile(name="b"), registry=reg, budget=5, state_path=str(state))
    state.write_text("{not json")
    with pytest.raises(UsageError, match="cannot read it"):
        smoke_mod.smoke(make_profile(name="a"), registry=reg, budget=5, state_path=str(state))


# -- through the CLI, against a real redis-server -----------------------------------------------------

@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.delenv("STUDIODOCTOR_CONFIG", raising=False)

    def write(redis_url: str) -> str:
        path = tmp_path / "sd.toml"
        path.write_text(f'default_profile = "t"\n[profiles.t]\ntimeout = 5\n[profiles.t.redis]\nurl = "{redis_url}"\n')
        return str(path)

    return write


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_smoke_on_redis_then_redis_down_twice(capsys, config, redis_server, tmp_path):
    path, state = config(redis_server.url()), str(tmp_path / "s.json")
    code, out, err = cli(capsys, "smoke", "--config", path, "-l", "redis", "--state", state, "-f", "json")
    report = json.loads(out)
    assert code == 0, err
    assert report["command"] == "smoke" and [r["id"] for r in report["results"]] == [
        "redis.reachable", "redis.latency", "redis.memory"]
    assert all(r["transition"] == "ok" for r in report["results"])
    redis_server.stop()
    code, out, _ = cli(capsys, "smoke", "--config", path, "-l", "redis", "--state", state, "-f", "nagios")
    assert code == 0 and out.startswith("STUDIODOCTOR OK - ") and "bad but not yet alerting: redis.reachable" in out
    code, out, _ = cli(capsys, "smoke", "--config", path, "-l", "redis", "--state", state, "-f", "json")
    report = json.loads(out)
    assert code == 2 and report["smoke"]["new"] == ["redis.reachable", "redis.latency", "redis.memory"]


@pytest.mark.parametrize("args,message", [(["--budget", "2"], "--budget must be at least 3 s"),
                                          (["--fail-after", "0"], "--fail-after must be at least 1"),
                                          (["--layer", "rediss"], "unknown layer 'rediss'")])
def test_cli_smoke_bad_input_is_one_line_exit_3(capsys, config, args, message):
    code, out, err = cli(capsys, "smoke", "--config", config("redis://127.0.0.1:1/0"), *args)
    assert code == 3 and out == "" and message in err and len(err.strip().splitlines()) == 1


def test_explain_and_list_say_which_checks_are_smoke_and_their_metrics(capsys):
    assert main(["explain", "redis.latency"]) == 0
    out = capsys.readouterr().out
    assert "metrics: median_ms, max_ms" in out and "smoke: yes" in out
    assert main(["list", "--format", "json"]) == 0
    listed = {c["id"]: c for c in json.loads(capsys.readouterr().out)}
    assert listed["redis.latency"]["smoke"] is True and listed["gcs.public_read"]["smoke"] is False


def test_a_timeout_inside_a_deadline_the_budget_cut_short_is_an_error_not_a_failure(make_profile):
    from studiodoctor.model import unreachable

    def slow(ctx):  # waits for an answer until its deadline, like a real network call with ctx.timeout()
        time.sleep(max(0.0, ctx.remaining() - 0.2))
        return unreachable("demo", "127.0.0.1:9", "timed out", timed_out=True)

    reg = Registry()
    reg.check("net.slow", title="slow", smoke=True)(slow)
    full = smoke_mod.smoke(make_profile(timeout=1.5), registry=reg, budget=10)    # its own 1.5 s: proof enough
    cut = smoke_mod.smoke(make_profile(timeout=30), registry=reg, budget=3)       # the budget left it ~1.7 s
    assert full.results[0].status is Status.FAIL
    assert cut.results[0].status is Status.ERROR and "time budget left it" in cut.results[0].summary
    assert cut.results[0].evidence["address"] == "127.0.0.1:9"


def test_the_command_stays_within_its_budget_against_a_server_that_never_answers(tmp_path):
    """A real process (start-up included) against a socket that accepts and never answers."""
    import socket
    import subprocess
    import sys
    from pathlib import Path

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes the handshake; nobody ever reads or answers
    try:
        port = silent.getsockname()[1]
        config = tmp_path / "sd.toml"
        config.write_text(f'default_profile = "t"\n[profiles.t]\ntimeout = 60\n'
                          f'[profiles.t.redis]\nurl = "redis://127.0.0.1:{port}/0"\n')
        exe = Path(sys.executable).with_name("studiodoctor")
        t0 = time.monotonic()
        proc = subprocess.run([str(exe), "smoke", "--config", str(config), "-l", "redis", "--budget", "4", "-f", "json"],
                              capture_output=True, text=True, timeout=60)
        wall = time.monotonic() - t0
    finally:
        silent.close()
    report = json.loads(proc.stdout)
    assert wall < 4, f"smoke took {wall:.1f} s with --budget 4"
    res = {r["id"]: r for r in report["results"]}
    assert res["redis.reachable"]["status"] == "error" and "budget" in res["redis.reachable"]["summary"]
    assert proc.returncode == 3
