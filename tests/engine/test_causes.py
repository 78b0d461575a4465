"""The causal rules (studiodoctor.diagnosis.causes) and the warn policy of the likely cause, on synthetic results.

The checks here carry the real check ids so that the real rules apply; their results are made up.
"""

import pytest

from studiodoctor import engine
from studiodoctor.diagnosis.causes import RULES
from studiodoctor.model import Reason, error, fail, ok, warn
from studiodoctor.registry import Registry
from studiodoctor.diagnosis.symptoms import CatalogueError, load_catalogue


def diagnose(make_profile, reg, steps):
    prof = make_profile()
    prof.symptoms = {"walk": {"steps": steps}}
    return engine.diagnose(prof, "walk", registry=reg)


def step_of(report, layer):
    return next(s for s in report.runbook if s["layer"] == layer)


def gateway_timeout(waited=2):
    return fail(f"nginx answers 504 Gateway Timeout after {waited + 0.01:.1f} s",
                evidence={"status": 504, "latency_s": waited + 0.01, "inferred_proxy_read_timeout_s": waited})


def test_every_rule_names_checks_that_exist():
    engine.default_registry.load_plugins()
    for rule in RULES:
        assert rule.consequence in engine.default_registry.checks, rule.name
        assert rule.cause in engine.default_registry.checks, rule.name


# --- the app slower than nginx's proxy_read_timeout ------------------------------------------------

def behind_nginx(make_profile, proxy, stealthz):
    reg = Registry()
    reg.check("nginx.app_proxy", title="proxy")(lambda ctx: proxy)
    reg.check("app.stealthz", title="stealthz")(lambda ctx: stealthz)
    return diagnose(make_profile, reg, [{"layer": "nginx", "why": "n"}, {"layer": "app", "why": "a"}])


def test_nginx_504_with_an_app_slower_than_the_timeout_names_the_app(make_profile):
    report = behind_nginx(make_profile, gateway_timeout(2),
                          warn("/stealthz answered <3, but slowly: 3.0 s", evidence={"status": 200, "latency_s": 3.0}))
    assert report.likely_cause["check"] == "app.stealthz"
    assert report.likely_cause["status"] == "warn"
    nginx = step_of(report, "nginx")
    assert nginx["consequence_of"] == ["app"]
    [link] = nginx["explained_by"]
    assert (link["check"], link["cause"], link["rule"]) == ("nginx.app_proxy", "app.stealthz", "app-slower-than-proxy")
    assert link["evidence"] == {"nginx_status": 504, "nginx_waited_s": 2.0, "app_latency_s": 3.0,
                                "nginx": "gave up after 2 s (504)"}
    assert link["because"] == "nginx gave up after 2 s (504) and the app, asked directly, took 3.0 s"
    assert report.likely_cause["explains"][0]["check"] == "nginx.app_proxy"


def test_nginx_504_with_a_fast_app_stays_nginx(make_profile):
    """The link is absent (the app answers directly in 50 ms): the 504 is nginx's own, not demoted."""
    report = behind_nginx(make_profile, gateway_timeout(2),
                          warn("/stealthz answered 200 but not Studio's '<3'", evidence={"status": 200, "latency_s": 0.05}))
    assert report.likely_cause["check"] == "nginx.app_proxy"
    assert step_of(report, "nginx")["explained_by"] == []
    assert step_of(report, "nginx")["consequence_of"] == []


def test_nginx_502_is_not_a_matter_of_time(make_profile):
    report = behind_nginx(make_profile, fail("nginx answers 502", evidence={"status": 502, "latency_s": 0.01}),
                          warn("slow", evidence={"status": 200, "latency_s": 3.0}))
    assert report.likely_cause["check"] == "nginx.app_proxy"


def test_nginx_slow_200_with_an_app_as_slow_names_the_app(make_profile):
    report = behind_nginx(make_profile, fail("/stealthz through nginx took 85.0 s, near proxy_read_timeout 100 s",
                                             evidence={"status": 200, "latency_s": 85.0}),
                          fail("/stealthz answered <3, but slowly: 84.2 s", evidence={"status": 200, "latency_s": 84.2}))
    assert report.likely_cause["check"] == "app.stealthz"
    [link] = step_of(report, "nginx")["explained_by"]
    assert link["because"] == "nginx took 85 s and the app, asked directly, took 84.2 s"


def test_a_proved_cause_also_explains_plain_explained_by(make_profile):
    """trace.hops is plainly explained by the app layer: once the rule proves the app broken, it counts."""
    reg = Registry()
    reg.check("trace.hops", title="trace", explained_by=["app", "nginx"])(lambda ctx: fail("504 at nginx"))
    reg.check("nginx.app_proxy", title="proxy")(lambda ctx: gateway_timeout(2))
    reg.check("app.stealthz", title="stealthz")(
        lambda ctx: warn("slow", evidence={"status": 200, "latency_s": 2.5}))
    report = diagnose(make_profile, reg, [{"layer": "trace", "why": "p"}, {"layer": "nginx", "why": "n"},
                                          {"layer": "app", "why": "a"}])
    assert report.likely_cause["check"] == "app.stealthz"
    assert step_of(report, "trace")["consequence_of"] == ["app", "nginx"]
    assert {e["check"] for e in report.likely_cause["explains"]} == {"nginx.app_proxy", "trace.hops"}


# --- Redis at maxmemory and the Celery workers ----------------------------------------------------

def memory(status, used, limit, policy="noeviction", **extra):
    return lambda ctx: status(f"{used} of {limit}", evidence={"used_memory": used, "maxmemory": limit,
                                                              "maxmemory_policy": policy, **extra})


def publishing(make_profile, workers, redis_memory):
    reg = Registry()
    reg.check("celery.workers", title="ping")(workers)
    reg.check("redis.memory", title="memory")(redis_memory)
    return diagnose(make_profile, reg, [{"layer": "celery", "why": "c"}, {"layer": "redis", "why": "r"}])


def test_workers_silent_with_redis_at_maxmemory_names_redis(make_profile):
    report = publishing(make_profile, lambda ctx: fail("no Celery worker answered a ping within 2 s"),
                        memory(fail, 2_100_000, 2_000_000))
    assert report.likely_cause["check"] == "redis.memory"
    [link] = step_of(report, "celery")["explained_by"]
    assert link["cause"] == "redis.memory" and "noeviction" in link["because"]
    assert step_of(report, "celery")["consequence_of"] == ["redis"]


def test_an_oom_error_in_the_ping_links_even_below_the_limit(make_profile):
    oom = "OOM command not allowed when used memory > 'maxmemory'."
    report = publishing(make_profile, lambda ctx: fail(f"Celery broker at 127.0.0.1:1 unreachable from here: {oom}"),
                        memory(warn, 1_900_000, 2_000_000))
    assert report.likely_cause["check"] == "redis.memory"
    assert "OOM command not allowed" in step_of(report, "celery")["explained_by"][0]["because"]


@pytest.mark.parametrize("redis_memory", [
    memory(warn, 1_700_000, 2_000_000),                       # close, but writes still succeed
    memory(fail, 2_100_000, 2_000_000, policy="allkeys-lru"),  # evicts instead of refusing
    memory(ok, 100, 0),                                        # no limit at all
])
def test_workers_silent_without_the_oom_link_stays_celery(make_profile, redis_memory):
    report = publishing(make_profile, lambda ctx: fail("no Celery worker answered a ping within 2 s"), redis_memory)
    assert step_of(report, "celery")["explained_by"] == []
    if report.likely_cause["layer"] == "redis":   # redis failing on its own is a second root, after celery
        pytest.fail("celery was demoted without a link")
    assert report.likely_cause["check"] == "celery.workers"


# --- our PostgreSQL login rejected while /healthz fails --------------------------------------------

def healthz_fails(stealthz_status):
    return lambda ctx: fail("/healthz answered 500", evidence={"status": 500, "stealthz_status": stealthz_status})


def database(make_profile, healthz, login):
    reg = Registry()
    reg.check("app.healthz", title="healthz", explained_by=["postgres"])(healthz)
    reg.check("postgres.reachable", title="login")(login)
    return diagnose(make_profile, reg, [{"layer": "app", "why": "a"}, {"layer": "postgres", "why": "p"}])


def rejected(ctx):
    return error("PostgreSQL at 127.0.0.1:5 rejected our login (stage auth, user studio): password "
                 "authentication failed for user \"studio\"", evidence={"stage": "auth"}, reason=Reason.AUTH)


def test_login_rejected_with_healthz_failing_names_postgres(make_profile):
    report = database(make_profile, healthz_fails(200), rejected)
    assert report.likely_cause["check"] == "postgres.reachable"
    assert report.likely_cause["status"] == "error"
    [link] = step_of(report, "app")["explained_by"]
    assert link["rule"] == "login-rejected-breaks-app"
    assert "password authentication failed" in link["because"]


def test_login_rejected_but_the_app_itself_down_stays_app(make_profile):
    report = database(make_profile, healthz_fails(None), rejected)
    assert report.likely_cause["check"] == "app.healthz"


def test_an_inconclusive_login_of_another_kind_does_not_demote_the_app(make_profile):
    report = database(make_profile, healthz_fails(200),
                      lambda ctx: error("permission denied for pg_stat_activity", evidence={"stage": "ok"},
                                        reason=Reason.FORBIDDEN))
    assert report.likely_cause["check"] == "app.healthz"


def test_warn_explains_must_be_a_list_of_ids():
    with pytest.raises(CatalogueError, match=r"symptoms.x.steps\[1\].warn_explains: expected a list"):
        load_catalogue({"x": {"steps": [{"layer": "app", "warn_explains": "app.stealthz"}]}})


def test_built_in_warn_explains_name_checks_of_their_symptom():
    reg = engine.default_registry.load_plugins()
    from studiodoctor.diagnosis.runbook import checks_for

    cat = load_catalogue()
    for sym in cat.symptoms.values():
        ran = {c.id for c in checks_for(sym, reg)}
        for step in sym.steps:
            assert set(step.warn_explains) <= ran, (sym.name, step.layer)


def test_an_app_abandoned_by_the_runner_links_by_the_time_waited(make_profile):
    """The runner gave up on the app's check (no evidence): the time it waited is the app's latency."""
    import time

    reg = Registry()
    reg.check("nginx.app_proxy", title="proxy")(lambda ctx: gateway_timeout(1))
    reg.check("app.stealthz", title="stealthz")(lambda ctx: time.sleep(5) or ok("late"))
    prof = make_profile(timeout=1.5)
    prof.symptoms = {"walk": {"steps": [{"layer": "nginx", "why": "n"}, {"layer": "app", "why": "a"}]}}
    report = engine.diagnose(prof, "walk", registry=reg)
    stealthz = next(r for r in report.results if r.id == "app.stealthz")
    assert stealthz.reason == "timeout" and stealthz.evidence == {}
    assert report.likely_cause["check"] == "app.stealthz"
    assert step_of(report, "nginx")["explained_by"][0]["evidence"]["app_latency_s"] >= 1.5


def test_explain_prints_the_rules_of_a_check(capsys):
    from studiodoctor.cli import main

    assert main(["explain", "celery.workers"]) == 0
    assert "explained by redis.memory (rule redis-full-blocks-workers) when: Celery's ping failed" in capsys.readouterr().out
    assert main(["explain", "postgres.reachable"]) == 0
    assert "explains app.healthz (rule login-rejected-breaks-app)" in capsys.readouterr().out
    assert main(["explain", "nginx.content_listing"]) == 0
    assert "can cause: permissions\n" in capsys.readouterr().out
    assert main(["explain", "nginx.content_methods"]) == 0
    assert "can cause: no symptom users report (an exposure)" in capsys.readouterr().out
    assert main(["explain", "postgres.locks"]) == 0
    out = capsys.readouterr().out
    assert "can cause" not in out and "explains app.healthz (rule lock-waits-hang-app)" in out


# --- the public error page and the hop trace ------------------------------------------------------

def edge_and_trace(make_profile, first_bad_hop, first_bad_layer):
    reg = Registry()
    reg.check("edge.error_pages", title="pages")(
        lambda ctx: fail("https://studio/ answers 502, the origin's page, passed through CloudFlare",
                         evidence={"responses": {}}))
    reg.check("trace.hops", title="trace", explained_by=("traefik", "nginx", "app"))(
        lambda ctx: fail(f"first bad hop: {first_bad_hop}",
                         evidence={"first_bad_hop": first_bad_hop, "first_bad_layer": first_bad_layer}))
    return diagnose(make_profile, reg, [{"layer": "cloudflare", "why": "c", "also": ["trace.hops"]},
                                        {"layer": "traefik", "why": "t"}])


def test_an_origin_502_passed_through_the_edge_names_the_hop_the_trace_found(make_profile):
    # an ingress the doctor cannot ask (no Traefik API): only the trace localizes it
    report = edge_and_trace(make_profile, "origin", "traefik")
    assert report.likely_cause["check"] == "trace.hops"
    assert report.likely_cause["layer"] == "traefik"
    assert report.likely_cause["explains"][0]["check"] == "edge.error_pages"


def test_a_trace_that_goes_bad_at_the_edge_names_the_edge(make_profile):
    report = edge_and_trace(make_profile, "edge", "edge")
    assert report.likely_cause["check"] == "edge.error_pages"
    assert report.likely_cause["layer"] == "edge"
    assert report.likely_cause["explains"][0]["check"] == "trace.hops"


# --- requests queued behind a lock -----------------------------------------------------------------

def behind_a_lock(make_profile, stealthz, locks):
    reg = Registry()
    reg.check("nginx.app_proxy", title="proxy", explained_by=["app"])(lambda ctx: gateway_timeout(5))
    reg.check("app.stealthz", title="stealthz")(lambda ctx: stealthz)
    reg.check("postgres.locks", title="locks")(lambda ctx: locks)
    return diagnose(make_profile, reg, [{"layer": "nginx", "why": "n"}, {"layer": "app", "why": "a"},
                                        {"layer": "postgres", "why": "p"}])


WAITS = {"waiting": 4, "blockers": [4242], "locks": [{"pid": 7, "relation": "contentcuration_channel",
                                                      "blocked_by": [4242]}]}


def test_every_app_worker_stuck_behind_a_lock_names_postgres(make_profile):
    """The holder is working (a long migration): locks only warn, yet the app's hang is theirs."""
    report = behind_a_lock(make_profile,
                           fail("the app at http://x/stealthz timed out", reason=Reason.TIMEOUT),
                           warn("4 lock requests waiting longer than 10 s", evidence=WAITS))
    assert report.likely_cause["check"] == "postgres.locks"
    app = step_of(report, "app")
    [link] = app["explained_by"]
    assert link["rule"] == "lock-waits-hang-app"
    assert link["because"] == ("4 session(s) wait on a lock on contentcuration_channel held by pid 4242: the app's "
                               "workers are stuck behind it")
    assert {e["check"] for e in report.likely_cause["explains"]} == {"app.stealthz", "nginx.app_proxy"}


def test_a_login_page_that_hangs_behind_a_lock_names_the_lock(make_profile):
    """Every worker stuck behind the lock: the login page times out too (from a laptop, each pod through the
    API server's proxy), and its hang is the lock's, not a second root in the app."""
    reg = Registry()
    reg.check("app.login_page", title="login")(
        lambda ctx: fail("3 of 3 pods: /en/accounts/ timed out", reason=Reason.TIMEOUT))
    reg.check("postgres.locks", title="locks")(lambda ctx: warn("4 lock requests waiting", evidence=WAITS))
    report = diagnose(make_profile, reg, [{"layer": "app", "why": "a"}, {"layer": "postgres", "why": "p"}])
    assert report.likely_cause["check"] == "postgres.locks"
    assert [e["check"] for e in report.likely_cause["explains"]] == ["app.login_page"]


def test_pods_not_ready_behind_a_lock_name_the_lock(make_profile):
    """/healthz (the readiness probe) waits behind the lock: the pods not Ready are the lock's consequence."""
    from checks.kubernetes.common import READINESS_EXPLAINERS

    reg = Registry()
    reg.check("kubernetes.pods_ready", title="ready", explained_by=READINESS_EXPLAINERS)(
        lambda ctx: fail("no Ready pod in master-studio (0/3 ready)"))
    reg.check("postgres.locks", title="locks")(lambda ctx: fail("12 session(s) wait", evidence=WAITS))
    report = diagnose(make_profile, reg, [{"layer": "kubernetes", "why": "k"}, {"layer": "postgres", "why": "p"}])
    assert report.likely_cause["check"] == "postgres.locks"
    assert step_of(report, "kubernetes")["consequence_of"] == ["postgres"]


def test_an_app_that_refuses_connections_is_not_explained_by_lock_waits(make_profile):
    report = behind_a_lock(make_profile,
                           fail("the app at http://x/stealthz unreachable from here", reason=Reason.UNREACHABLE),
                           warn("4 lock requests waiting longer than 10 s", evidence=WAITS))
    assert report.likely_cause["check"] == "app.stealthz"


def test_nginx_gives_up_on_an_app_slowed_by_a_lock_names_the_lock(make_profile):
    """nginx waited 5 s (504), the app asked directly took 6 s (a warn to us), sessions have been waiting
    on a lock for 8 s: the chain nginx <- app <- lock ends at the database."""
    waits = {**WAITS, "locks": [{**WAITS["locks"][0], "waiting_s": 8.0}]}
    slow = warn("/stealthz answered <3, but slowly: 6.0 s", evidence={"status": 200, "latency_s": 6.0})
    report = behind_a_lock(make_profile, slow, warn("4 lock requests waiting", evidence=waits))
    assert report.likely_cause["check"] == "postgres.locks", report.likely_cause
    assert [e["rule"] for e in step_of(report, "app")["explained_by"]] == ["lock-waits-hang-app"]
    # waits younger than the app's slowness do not explain it: the app stays the root
    young = {**WAITS, "locks": [{**WAITS["locks"][0], "waiting_s": 2.0}]}
    report = behind_a_lock(make_profile, slow, warn("4 lock requests waiting", evidence=young))
    assert report.likely_cause["check"] == "app.stealthz"


# --- pods not Ready because the app is slower than their readiness probe -------------------------------

def unready(pods=("web-0", "web-1"), timeout_s=1.0):
    return fail(f"no Ready pod in web (0/{len(pods)} ready)", evidence={"not_ready": [
        {"pod": p, "probe_failing": ["app"], "containers": ["app"],
         "readiness": [{"container": "app", "path": "/healthz", "port": 8081, "timeout_s": timeout_s}]}
        for p in pods]})


def app_at(latency_s, pods=("web-0", "web-1"), path="/healthz"):
    endpoint = f"https://api:6443/api/v1/namespaces/studio/pods/{pods[0]}:8081/proxy/{path}"
    return warn(f"{path} answered, but slowly: {latency_s} s", evidence={
        "status": 200, "latency_s": latency_s, "sampled": {"endpoint": endpoint},
        "pods": {p: f"warn: slowly: {latency_s} s" for p in pods}})


def before_the_app(make_profile, pods_ready, healthz=None, stealthz=None):
    from checks.kubernetes.common import READINESS_EXPLAINERS

    reg = Registry()
    reg.check("kubernetes.pods_ready", title="ready", explained_by=READINESS_EXPLAINERS)(lambda ctx: pods_ready)
    for cid, res in (("app.healthz", healthz), ("app.stealthz", stealthz)):
        if res is not None:
            reg.check(cid, title=cid)(lambda ctx, res=res: res)
    return diagnose(make_profile, reg, [{"layer": "kubernetes", "why": "k"}, {"layer": "app", "why": "a"}])


def test_pods_not_ready_behind_an_app_slower_than_their_probe_name_the_app(make_profile):
    """/healthz takes 3 s (a warn to us: nginx's timeout not seen) and the probe gives up after 1 s."""
    report = before_the_app(make_profile, unready(), healthz=app_at(3.0))
    assert report.likely_cause["check"] == "app.healthz"
    [link] = [e for e in step_of(report, "kubernetes")["explained_by"] if e["check"] == "kubernetes.pods_ready"]
    assert link["rule"] == "app-slower-than-readiness-probe"
    assert link["because"] == ("2 pod(s) not Ready (web-0, web-1): their readiness probe GET /healthz on :8081 "
                               "gives up after 1 s, and the app took 3.0 s there")


def test_stealthz_links_by_the_probes_port_and_a_timed_out_check_by_the_time_waited(make_profile):
    """/healthz abandoned by the runner (no evidence): the time it waited is the app's; /stealthz, another
    path, links by the port the probe asks (the pod's app port in its proxy endpoint)."""
    import time

    from checks.kubernetes.common import READINESS_EXPLAINERS

    reg = Registry()
    reg.check("kubernetes.pods_ready", title="ready", explained_by=READINESS_EXPLAINERS)(lambda ctx: unready())
    reg.check("app.healthz", title="healthz")(lambda ctx: time.sleep(5) or ok("late"))
    reg.check("app.stealthz", title="stealthz")(lambda ctx: app_at(3.0, path="/stealthz"))
    prof = make_profile(timeout=1.5)
    prof.symptoms = {"walk": {"steps": [{"layer": "kubernetes", "why": "k"}, {"layer": "app", "why": "a"}]}}
    report = engine.diagnose(prof, "walk", registry=reg)
    assert report.likely_cause["layer"] == "app"
    links = {e["cause"]: e for e in step_of(report, "kubernetes")["explained_by"]}
    assert links["app.healthz"]["evidence"]["app_answered"] == "did not answer within"
    assert links["app.stealthz"]["evidence"]["probe"] == "GET /healthz on :8081"


@pytest.mark.parametrize("pods_ready, app", [
    (unready(), app_at(0.6)),                                  # the app answers within the probe's timeout
    (unready(timeout_s=5.0), app_at(3.0)),                     # a probe more patient than the app is slow
    (unready(pods=("web-2",)), app_at(3.0, pods=("web-0", "web-1"))),  # not the pods the app was asked at
])
def test_no_link_without_the_evidence_stays_kubernetes(make_profile, pods_ready, app):
    report = before_the_app(make_profile, pods_ready, healthz=app)
    assert report.likely_cause["check"] == "kubernetes.pods_ready"
