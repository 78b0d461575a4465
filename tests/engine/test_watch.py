"""`diagnose --watch`: the timeline of status changes, when a watch ends, and its options (the whole loop
against the lab is in tests/lab/test_watch_lab.py)."""

from __future__ import annotations

import pytest

from studiodoctor.cli import _watch_default, main
from studiodoctor.render import render
from studiodoctor.diagnosis.watch import Watch, parse_duration, recovered


def run_data(**statuses) -> dict:
    return {"results": [{"id": cid.replace("_", "."), "layer": cid.split("_")[0], "status": st,
                         "summary": f"{cid} is {st}"} for cid, st in statuses.items()]}


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_timeline_records_where_it_stands_then_each_change():
    clock = Clock()
    w = Watch(interval=5, clock=clock)
    first = w.observe(run_data(app_up="fail", redis_up="ok", db_up="error"))
    assert [(e["check"], e["before"], e["now"]) for e in first] == [("app.up", None, "fail"), ("db.up", None, "error")]
    clock.now += 12
    assert w.observe(run_data(app_up="fail", redis_up="ok", db_up="error")) == []   # nothing changed: no event
    clock.now += 6
    second = w.observe(run_data(app_up="ok", redis_up="warn", db_up="error"))
    assert [(e["check"], e["before"], e["now"], e["elapsed_s"]) for e in second] == [
        ("app.up", "fail", "ok", 18.0), ("redis.up", "ok", "warn", 18.0)]
    assert w.runs == 3 and len(w.events) == 4


def test_recovered_means_nothing_bad_except_what_cannot_produce_the_symptom():
    assert recovered(run_data(app_up="ok", gcs_x="warn", mail_x="skip"))
    assert not recovered(run_data(app_up="ok", db_up="error"))          # could not look: not a recovery
    assert not recovered(run_data(app_up="blocked"))
    data = run_data(app_up="ok", gcs_listing="fail")
    assert not recovered(data)
    data["unrelated_failures"] = [{"check": "gcs.listing"}]
    assert recovered(data)
    assert not recovered({"results": []})


def test_loop_ends_on_recovery_at_the_limit_or_when_stopped():
    clock = Clock()
    runs = iter([run_data(app_up="fail"), run_data(app_up="fail"), run_data(app_up="ok")])

    def once():
        clock.now += 1
        return "report", next(runs)

    w = Watch(interval=2, clock=clock)
    w.stop.wait = lambda seconds: (setattr(clock, "now", clock.now + seconds), False)[1]
    assert w.loop(once, lambda *a: None)[0] == "report"
    assert w.ended == "recovered" and w.runs == 3 and [e["now"] for e in w.events] == ["fail", "ok"]

    clock2 = Clock()
    limited = Watch(interval=10, until=15, clock=clock2)
    limited.stop.wait = lambda seconds: (setattr(clock2, "now", clock2.now + seconds), False)[1]
    limited.loop(lambda: ("r", run_data(app_up="fail")), lambda *a: None)
    assert limited.ended == "until" and limited.runs == 3   # at 0, 10 and the limit (15)

    stopped = Watch(interval=10)
    stopped.stop.set()
    stopped.loop(lambda: ("r", run_data(app_up="fail")), lambda *a: None)
    assert stopped.ended == "interrupted" and stopped.runs == 1


def test_the_timeline_in_markdown_and_html():
    w = Watch(interval=5)
    w.observe(run_data(app_up="fail"))
    w.observe(run_data(app_up="ok"))
    w.ended = "recovered"
    data = {"schema": "studiodoctor.report/1", "tool": {"name": "studiodoctor", "version": "0"}, "command": "diagnose",
            "symptom": "502", "profile": "p", "started_at": "t", "duration_ms": 1.0, "status": "ok", "exit_code": 0,
            "runbook": [], "likely_cause": None, "notes": [], "watch": w.summary(),
            "results": [{"id": "app.up", "layer": "app", "title": "t", "status": "ok", "summary": "app.up is ok",
                         "evidence": {}, "hint": "", "commands": [], "duration_ms": 1, "blocked_by": []}]}
    md = render(data, "markdown")
    assert "## Incident timeline" in md and "2 runs every 5 s): recovered" in md
    assert "app.up: first seen -> fail" in md and "app.up: fail -> ok" in md
    html = render(data, "html")
    assert "<h2>Incident timeline</h2>" in html and html.count('<li data-check="app.up">') == 2
    assert "Incident timeline:" in render(data, "table")


def test_watch_takes_an_optional_value():
    assert _watch_default(["diagnose", "502", "--watch"]) == ["diagnose", "502", "--watch", "5"]
    assert _watch_default(["diagnose", "502", "--watch", "--until", "1m"])[3] == "5"
    assert _watch_default(["diagnose", "502", "--watch", "10"]) == ["diagnose", "502", "--watch", "10"]
    assert [parse_duration(x) for x in ("90", "90s", "15m", "2h", "1.5")] == [90, 90, 900, 7200, 1.5]
    for bad in ("", "soon", "-3", "0", "inf"):
        with pytest.raises(ValueError):
            parse_duration(bad)


@pytest.mark.parametrize("args, text", [(["--until", "1m"], "--until needs --watch"),
                                        (["--watch", "soon"], "--watch 'soon'"),
                                        (["--watch", "0.5"], "at least 1 s"),
                                        (["--watch", "--until", "later"], "--until 'later'")])
def test_bad_watch_options_are_one_line_usage_errors(args, text, capsys):
    assert main(["diagnose", "502", *args]) == 3
    err = capsys.readouterr().err
    assert text in err and len(err.strip().splitlines()) == 1
