"""Runbook ordering and the likely cause, on registries of synthetic checks."""

import pytest

from studiodoctor import engine
from studiodoctor.model import Reason, error, fail, ok, warn
from studiodoctor.registry import Registry


def symptom(*layers):
    return {"steps": [{"layer": layer, "why": f"why {layer}"} for layer in layers], "aliases": ["Alias-X"]}


def run(make_profile, reg, layers, word="walk"):
    prof = make_profile()
    prof.symptoms = {"walk": symptom(*layers)}
    return engine.diagnose(prof, word, registry=reg)


def test_fail_before_warn_before_inconclusive_before_manual_before_ok(make_profile):
    reg = Registry()
    reg.check("first.up", title="ok")(lambda ctx: ok("fine"))
    reg.check("second.up", title="broken")(lambda ctx: error("could not look"))
    reg.check("third.up", title="fails")(lambda ctx: fail("down"))
    reg.check("fourth.up", title="warns")(lambda ctx: warn("close to the limit"))
    reg.check("sixth.up", title="fails too")(lambda ctx: fail("down too"))
    report = run(make_profile, reg, ["first", "second", "third", "fourth", "fifth", "sixth"])
    order = [(s["layer"], s["verdict"]) for s in report.runbook]
    assert order == [("third", "fail"), ("sixth", "fail"), ("fourth", "warn"), ("second", "inconclusive"),
                     ("fifth", "manual"), ("first", "ok")]
    assert [s["step"] for s in report.runbook] == [1, 2, 3, 4, 5, 6]
    assert report.likely_cause["layer"] == "third"  # first failure in walk order
    assert report.likely_cause["summary"] == "down"


def test_blocked_step_names_its_blocker(make_profile):
    reg = Registry()
    reg.check("broker.reachable", title="broker")(lambda ctx: fail("refused at 127.0.0.1:1",
                                                                   evidence={"address": "127.0.0.1:1"}))
    reg.check("workers.ping", title="ping", depends_on=["broker.reachable"])(lambda ctx: ok("pong"))
    report = run(make_profile, reg, ["workers", "broker"])
    steps = {s["layer"]: s for s in report.runbook}
    assert steps["workers"]["verdict"] == "inconclusive"
    assert steps["workers"]["blocked_by"] == ["broker.reachable"]
    assert report.likely_cause["check"] == "broker.reachable"
    assert report.likely_cause["evidence"] == {"address": "127.0.0.1:1"}


def test_failure_explained_by_a_deeper_layer_is_a_consequence(make_profile):
    reg = Registry()
    reg.check("web.healthz", title="healthz", explained_by=["db"])(lambda ctx: fail("healthz 500"))
    reg.check("web.stealthz", title="stealthz")(lambda ctx: ok("200"))
    reg.check("db.reachable", title="db")(lambda ctx: fail("connection refused at 127.0.0.1:5"))
    report = run(make_profile, reg, ["web", "db"])
    assert report.likely_cause["layer"] == "db"
    assert report.likely_cause["check"] == "db.reachable"
    web = next(s for s in report.runbook if s["layer"] == "web")
    assert web["verdict"] == "fail" and web["consequence_of"] == ["db"]
    # walk order is kept among the failing steps: web is still listed first
    assert [s["layer"] for s in report.runbook] == ["web", "db"]


def test_explanation_only_counts_when_the_deeper_layer_fails(make_profile):
    reg = Registry()
    reg.check("web.healthz", title="healthz", explained_by=["db"])(lambda ctx: fail("healthz 500"))
    reg.check("db.reachable", title="db")(lambda ctx: ok("connected"))
    report = run(make_profile, reg, ["web", "db"])
    assert report.likely_cause["check"] == "web.healthz"


def test_nothing_failing_says_so_and_lists_what_was_ruled_out(make_profile):
    reg = Registry()
    reg.check("web.up", title="up")(lambda ctx: ok("fine"))
    report = run(make_profile, reg, ["web", "mail"])
    assert report.likely_cause is None
    assert report.notes == ["Nothing failed. Ruled out: web. Still to check by hand: mail."]
    assert report.exit_code == 0


def test_aliases_are_case_insensitive_and_unknown_symptom_suggests(make_profile):
    reg = Registry()
    reg.check("web.up", title="up")(lambda ctx: ok("fine"))
    assert run(make_profile, reg, ["web"], word="alias-x").symptom == "walk"
    with pytest.raises(engine.UsageError, match=r"unknown symptom 'wakl' \(did you mean walk"):
        run(make_profile, reg, ["web"], word="wakl")


def test_diagnose_runs_only_the_walk_and_its_dependencies(make_profile):
    reg = Registry()
    reg.check("base.reachable", title="base")(lambda ctx: ok("up"))
    reg.check("web.up", title="up", depends_on=["base.reachable"])(lambda ctx: ok("fine"))
    reg.check("other.up", title="elsewhere")(lambda ctx: pytest.fail("a layer outside the walk ran"))
    report = run(make_profile, reg, ["web"])
    assert [r.id for r in report.results] == ["base.reachable", "web.up"]


def walk_steps(make_profile, reg, steps):
    prof = make_profile()
    prof.symptoms = {"walk": {"steps": steps}}
    return engine.diagnose(prof, "walk", registry=reg)


# --- warns: never the likely cause unless the catalogue says so ------------------------------------

def test_a_cosmetic_warn_is_not_the_likely_cause(make_profile):
    reg = Registry()
    reg.check("kube.pods", title="pods")(lambda ctx: error("pods are forbidden", reason=Reason.FORBIDDEN))
    reg.check("web.login", title="login")(lambda ctx: warn("unsupported-browser page"))
    reg.check("db.up", title="db")(lambda ctx: ok("fine"))
    report = walk_steps(make_profile, reg, [{"layer": "kube", "why": "k"}, {"layer": "web", "why": "w"},
                                          {"layer": "db", "why": "d"}])
    assert report.likely_cause is None
    assert report.notes == ["Nothing failed. Ruled out: db. Could not check: kube (kube.pods: forbidden). "
                            "Warnings that do not explain this symptom: web (web.login)."]


def test_a_warn_the_catalogue_says_explains_the_symptom_is_named(make_profile):
    reg = Registry()
    reg.check("web.login", title="login")(lambda ctx: warn("unsupported-browser page"))
    reg.check("web.latency", title="latency")(lambda ctx: warn("3.0 s, above 2 s"))
    report = walk_steps(make_profile, reg, [{"layer": "web", "why": "w", "warn_explains": ["web.latency"]}])
    assert report.likely_cause["check"] == "web.latency"
    assert report.likely_cause["status"] == "warn"
    assert "explains `walk`" in report.likely_cause["because"]


def test_a_failure_wins_over_a_warn_that_explains(make_profile):
    reg = Registry()
    reg.check("web.latency", title="latency")(lambda ctx: warn("3.0 s"))
    reg.check("db.up", title="db")(lambda ctx: fail("refused"))
    report = walk_steps(make_profile, reg, [{"layer": "web", "why": "w", "warn_explains": ["web.latency"]},
                                          {"layer": "db", "why": "d"}])
    assert report.likely_cause["check"] == "db.up"
