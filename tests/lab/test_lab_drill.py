"""The whole lab on loopback: healthy means no false alarm; every fault is localized and reversible."""

from contextlib import contextmanager

import pytest

from conftest import whole_lab
from studiodoctor import engine
from studiodoctor.cli import main
from studiodoctor.config import load_profile
from studiodoctor.lab import drill
from studiodoctor.lab.faults import FAULTS, skipped
from studiodoctor.lab.manager import Lab
from studiodoctor.lab.variants import VARIANTS
from studiodoctor.model import Status
from studiodoctor.diagnosis.symptoms import load_catalogue


@pytest.fixture(scope="module", params=[v.name for v in VARIANTS.values() if not v.runs_studio])
def lab(tmp_path_factory, request):
    """The whole lab, once per variant (the tests of one variant run before the next lab starts). The variant
    that runs Studio's own code has its own module (tests/lab/test_studio_variant.py)."""
    yield from whole_lab(tmp_path_factory, f"fullstack-{request.param}", request.param)


@pytest.fixture
def lab_env(lab, monkeypatch):
    monkeypatch.setenv("STUDIODOCTOR_LAB_DIR", str(lab.root))
    return lab


def test_every_symptom_has_a_fault_to_drill():
    drilled = {s for f in FAULTS.values() for s in f.symptoms}
    cat = load_catalogue()
    assert {cat.lookup(s).name for s in drilled} == set(cat.symptoms)


# Checks that still lean on the default lab on the other variant, each a known gap of a named part
# (reported; remove the entry once that part no longer depends on what only our lab has).
KNOWN_GAPS: dict[str, dict[str, str]] = {}  # sentry.release, email.app_key_env now discover the app Deployment


def test_healthy_lab_has_no_false_alarm(lab_env):
    report = engine.check(load_profile("lab"))
    gaps = KNOWN_GAPS.get(lab_env.variant.name, {})
    alarms = [(r.id, r.status.value, r.summary) for r in report.results
              if r.status not in (Status.OK, Status.SKIP) and r.id not in gaps]
    assert alarms == [], alarms
    assert {r.layer for r in report.results if r.status is Status.OK} >= {
        "dns", "cloudflare", "edge", "traefik", "kubernetes", "nginx", "app", "redis", "celery", "gcs", "postgres",
        "trace", "sentry", "newrelic", "email"}
    # every server the lab started runs, in order (the latency relay only with `lab up --rtt`)
    assert [s["kind"] for s in lab_env.status() if s["running"]] == [k for k in lab_env.order
                                                                      if k in lab_env.services]
    assert {"doctor", "kube-api", "redis", "postgres"} <= set(lab_env.services)


# CI time: the other variant drills the faults whose parts differ there (ingress, cluster, Redis,
# PostgreSQL, static files, cache rules) plus one per remaining layer; `lab drill --all` drills them all.
OTHER_VARIANT_FAULTS = {
    "app-stopped", "nginx-stopped", "static-missing", "redis-down", "redis-full", "postgres-down",
    "worker-stopped", "private-content", "traefik-missing-service", "traefik-server-down", "traefik-default-cert",
    "traefik-expired-cert", "traefik-oom", "pod-crashloop", "deployment-unavailable", "databases-hit", "record-missing",
    "nginx-databases-public", "nginx-storage-headers", "sentry-error-spike", "postmark-stream-paused",
    # issue 29: a young lock behind an idle transaction, every worker slot busy, one replica of three
    # unready, two faults at once
    "lock-idle-transaction", "workers-saturated", "replica-unready", "nginx-and-redis-down",
    "app-intermittent"}


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_is_localized_then_fixed(lab_env, name):
    why = skipped(lab_env, name) or drill.unreached(name, load_profile("lab"))
    if why:
        pytest.skip(f"{name} on the {lab_env.variant.name} lab: {why}")
    if lab_env.variant.name != "default" and name not in OTHER_VARIANT_FAULTS:
        pytest.skip("drilled on the other variant by `lab drill --all`, not in CI (time)")
    results = drill.drill_fault(Lab.load(lab_env.root), FAULTS[name])
    for r in results:
        assert r.localized, f"{name}: named {r.named} ({r.check}: {r.summary}), expected {r.expected} ({r.expect}); " \
                            f"inconclusive: {r.inconclusive}"
        assert r.healthy_after, f"{name}: still failing after the fix: {r.problems}"
    assert Lab.load(lab_env.root).extra.get("faults") == []


# From a laptop (lab-laptop: public URLs, a kubeconfig, tokens), the layers reached through the API server's
# pod proxy and the public ones localize as they do with every address; Redis, PostgreSQL and Celery come
# with the in-cluster doctor (issue 27's second way in): a stopped worker by its broker connections
# (celery.consumers, read-only), every slot busy by the workers' heartbeats (celery.busy_slots, read-only),
# since the doctor never runs Celery's broadcast ping or inspect for a caller.
LAPTOP_FAULTS = ["pod-500", "app-stopped", "nginx-stopped", "static-missing", "nginx-databases-public",
                 "traefik-server-down", "deployment-unavailable", "pod-crashloop", "edge-522", "worker-stopped",
                 "workers-saturated"]
# the check that must name the layer from a laptop, where it is not the same as with every address
LAPTOP_NAMING_CHECK = {"worker-stopped": "celery.consumers", "workers-saturated": "celery.busy_slots"}


def test_the_laptop_profile_holds_only_what_a_laptop_has(lab_env):
    prof = load_profile("lab-laptop")
    for key in ("app.url", "nginx.url", "redis.url", "postgres.dsn", "celery.broker_url", "traefik.api_url",
                "nginx.proxy_read_timeout", "kubernetes.api_url", "kubernetes.app_deployment"):
        assert not prof.value(key), key
    assert prof.value("kubernetes.kubeconfig") and prof.value("public_urls")
    # the database's credentials, as on-call holds them, but no address (a port-forward fills it in)
    assert "@/" in prof.value("postgres.port_forward_dsn") and "127.0.0.1" not in prof.value("postgres.port_forward_dsn")


@pytest.mark.parametrize("name", LAPTOP_FAULTS)
def test_fault_is_localized_from_a_laptop(lab_env, name):
    why = skipped(lab_env, name)
    if why:
        pytest.skip(f"{name} on the {lab_env.variant.name} lab: {why}")
    for r in drill.drill_fault(Lab.load(lab_env.root), FAULTS[name], profile="lab-laptop"):
        assert r.localized, f"{name} from a laptop: named {r.named} ({r.check}: {r.summary}), expected {r.expected}"
        assert r.check == LAPTOP_NAMING_CHECK.get(name, r.check), \
            f"{name} from a laptop: named by {r.check}: {r.summary}"
        assert r.healthy_after, f"{name}: still failing after the fix: {r.problems}"


@contextmanager
def no_doctor(lab_env):
    """The in-cluster doctor's Service gone from the Kubernetes stand-in for the block: no doctor is deployed."""
    kube = Lab.load(lab_env.root)["kube-api"]
    saved = kube.read_state()
    state = kube.read_state()
    space = state["namespaces"][lab_env.variant.namespace]
    space["services"] = [s for s in space["services"] if "studiodoctor/doctor" not in (s["metadata"].get("labels") or {})]
    kube.write_state(state)
    try:
        yield
    finally:
        kube.write_state(saved)


def test_without_the_doctor_the_laptop_localizes_redis_down_through_a_port_forward(lab_env):
    """No in-cluster doctor deployed (its Service gone): Redis is reached through a port-forward the run opens
    to the pod that runs it, and redis-down is named from the laptop as from every address."""
    with no_doctor(lab_env):
        [r] = drill.drill_fault(Lab.load(lab_env.root), FAULTS["redis-down"], profile="lab-laptop")
        report = engine.check(load_profile("lab-laptop"), layers=["redis"])
    assert r.localized, f"redis-down from a laptop without the doctor: named {r.named} ({r.check})"
    assert r.healthy_after, f"redis-down: still failing after the fix: {r.problems}"
    reach = next(x for x in report.results if x.id == "redis.reachable")
    assert reach.status is Status.OK and reach.evidence.get("via", "").startswith("port-forward pod "), \
        (reach.status, reach.summary, reach.evidence)


def test_without_the_doctor_the_laptop_hears_the_workers_heartbeats_through_a_port_forward(lab_env):
    """celery.busy_slots from the laptop itself: its SUBSCRIBE goes through the run's port-forward to Redis."""
    with no_doctor(lab_env):
        report = engine.check(load_profile("lab-laptop"), check_ids=["celery.busy_slots"])
    r = next(x for x in report.results if x.id == "celery.busy_slots")
    assert r.status is Status.OK and r.vantage == "local", (r.status, r.summary)
    assert r.evidence["via"].startswith("port-forward pod ") and r.evidence["workers_heard"] == 1, r.evidence


def test_a_standing_unrelated_failure_is_listed_not_named_under_a_502_fault(lab_env):
    """The stack is never clean: the bucket left listable (it shows at nginx's /content/) while gunicorn
    stops. The app is named; the listing is 'also failing, not the cause'."""
    lab = Lab.load(lab_env.root)
    with drill.standing_fault(lab, "public-listing") as standing:
        assert "nginx.content_listing" in standing.failing, standing
        [result] = drill.drill_fault(lab, FAULTS["app-stopped"], standing=standing)
    assert result.standing == "public-listing" and result.standing_missed == []
    assert result.localized and result.named == "app", (result.named, result.check)
    assert result.healthy_after, result.problems
    assert Lab.load(lab_env.root).extra.get("faults") == []


def test_lab_cli_break_status_fix(lab_env, capsys):
    assert main(["lab", "break", "worker-stopped"]) == 0
    assert main(["lab", "status"]) == 0
    out = capsys.readouterr().out
    assert "faults in force: worker-stopped" in out and "STOPPED" in out
    assert main(["diagnose", "publishing", "--profile", "lab", "--format", "json"]) == 2
    assert '"check": "celery.workers"' in capsys.readouterr().out
    assert main(["lab", "fix"]) == 0
    assert "fixed worker-stopped" in capsys.readouterr().out
    assert main(["lab", "break", "wokrer-stopped"]) == 3
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("studiodoctor: unknown fault 'wokrer-stopped' (did you mean worker-stopped")


def test_other_variant_differs_where_real_deployments_differ(lab_env):
    """Seen from the live servers, not from the lab's own data: the other variant really runs
    ingress-nginx, no metrics API, a Redis that rejects HELLO, a PostgreSQL that refuses plain TCP."""
    import httpx
    import psycopg
    import redis

    if lab_env.variant.name != "other":
        pytest.skip("checks the other variant")
    prof = load_profile("lab")
    kube = prof.section("kubernetes")["api_url"]
    assert httpx.get(f"{kube}/apis/metrics.k8s.io/v1beta1/namespaces/{lab_env.variant.namespace}/pods").status_code == 404
    classes = httpx.get(f"{kube}/apis/networking.k8s.io/v1/ingressclasses").json()["items"]
    assert [c["spec"]["controller"] for c in classes] == ["k8s.io/ingress-nginx"]
    assert not prof.section("traefik").get("api_url")
    with pytest.raises(redis.ResponseError, match="unknown command"):
        redis.Redis.from_url(prof.section("redis")["url"], protocol=2).execute_command("HELLO", "3")
    plain = prof.section("postgres")["dsn"].split("?")[0] + "?sslmode=disable"
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(plain, connect_timeout=5)
    with psycopg.connect(prof.section("postgres")["dsn"], connect_timeout=5) as conn:
        assert conn.info.pgconn.ssl_in_use
    nginx = prof.section("nginx")["url"]
    assert httpx.get(nginx + "/static/img/kolibri_placeholder.png").status_code == 404
    assert httpx.get(nginx + "/static/bundles/app.8c1e2f90.js").status_code == 200
    assert "static_path" not in prof.section("nginx")
