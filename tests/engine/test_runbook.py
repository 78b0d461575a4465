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


def test_a_failure_that_cannot_produce_the_symptom_is_listed_as_unrelated(make_profile):
    """An exposure found first in walk order is no 502's cause: the deeper outage is named."""
    reg = Registry()
    reg.check("web.listing", title="listing", produces=("permissions",))(lambda ctx: fail("the bucket lists"))
    reg.check("web.proxy", title="proxy", explained_by=["app"])(lambda ctx: fail("502 from upstream"))
    reg.check("app.up", title="app")(lambda ctx: fail("connection refused"))
    report = run(make_profile, reg, ["web", "app"])
    assert report.likely_cause["check"] == "app.up"
    assert [u["check"] for u in report.unrelated_failures] == ["web.listing"]
    assert next(s for s in report.runbook if s["layer"] == "web")["unrelated"] == ["web.listing"]
    # the exposure explains nothing either: the proxy's 502 stays the app's consequence
    assert [e["check"] for e in report.likely_cause["explains"]] == ["web.proxy"]


def test_only_unrelated_failures_name_no_cause_and_say_so(make_profile):
    reg = Registry()
    reg.check("web.listing", title="listing", produces=())(lambda ctx: fail("the bucket lists"))
    report = run(make_profile, reg, ["web"])
    assert report.likely_cause is None and report.likely_causes == []
    assert report.notes[0].startswith("Nothing that can cause this symptom failed (also failing, not its cause: "
                                      "web.listing)")
    assert report.exit_code == 2     # still a failure of the stack: the exit code says so


def test_a_user_symptom_step_may_widen_or_narrow_what_causes_it(make_profile):
    reg = Registry()
    reg.check("web.listing", title="listing", produces=("permissions",))(lambda ctx: fail("the bucket lists"))
    reg.check("web.cache", title="cache")(lambda ctx: fail("cacheable"))
    prof = make_profile()
    prof.symptoms = {"walk": {"steps": [{"layer": "web", "why": "w", "causes": ["web.listing"],
                                         "unrelated": ["web.cache"]}]}}
    report = engine.diagnose(prof, "walk", registry=reg)
    assert report.likely_cause["check"] == "web.listing"
    assert [u["check"] for u in report.unrelated_failures] == ["web.cache"]


def test_independent_roots_are_all_named_in_walk_order(make_profile):
    """nginx down and Redis down: two roots, one cause per layer; likely_cause stays the first."""
    reg = Registry()
    reg.check("trace.hops", title="trace", explained_by=["nginx"])(
        lambda ctx: fail("goes bad at nginx", evidence={"first_bad_layer": "nginx"}))
    reg.check("nginx.reachable", title="nginx")(lambda ctx: fail("refused"))
    reg.check("nginx.static", title="static")(lambda ctx: fail("refused too"))
    reg.check("app.up", title="app")(lambda ctx: ok("fine"))
    reg.check("redis.reachable", title="redis")(lambda ctx: fail("refused"))
    report = run(make_profile, reg, ["trace", "nginx", "app", "redis"])
    assert [c["layer"] for c in report.likely_causes] == ["nginx", "redis"]
    assert report.likely_cause == report.likely_causes[0]
    assert report.likely_causes[0]["check"] == "nginx.reachable"
    assert report.likely_causes[0]["also"] == ["nginx.static"]
    from studiodoctor.render import render
    from studiodoctor.secrets import Redactor

    data = report.to_dict(Redactor())
    assert "Also a likely cause: redis (redis.reachable)" in render(data, "table", width=200)
    assert "Also a likely cause: **redis**" in render(data, "markdown")
    assert sum(line.startswith("likely cause:") for line in render(data, "nagios").splitlines()) == 2


def test_every_declared_produces_names_a_symptom_of_the_catalogue():
    from studiodoctor.registry import default_registry
    from studiodoctor.diagnosis.symptoms import load_catalogue

    names = set(load_catalogue().names())
    declared = {c.id: c.produces for c in default_registry.load_plugins().checks.values() if c.produces}
    assert declared, "no check declares what it can produce"
    bad = {cid: sorted(set(p) - names) for cid, p in declared.items() if set(p) - names}
    assert not bad, bad
