"""Two vantage points, one report: a laptop profile with no Redis or PostgreSQL URL asks the in-cluster
doctor (a real `studiodoctor serve` with the cluster's profile, behind the Kubernetes stand-in's services
proxy, as deploy/ runs it), and merges its results; when no way is open, those layers are `skip` with the
line that would open one, never `fail`."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from studiodoctor import engine
from studiodoctor.commands.serve import Exporter, make_server
from studiodoctor.lab.servers.postgres_server import PostgresServer
from studiodoctor.lab.standins import kubernetes as K
from studiodoctor.lab.standins.kubernetes import KubeAPIServer
from studiodoctor.lab.standins.kubernetes.doctor import with_doctor
from studiodoctor.model import Status
from studiodoctor.model import fail
from studiodoctor.registry import Registry, default_registry
from studiodoctor.render import render
from studiodoctor.secrets import Redactor

TOKEN = "vantage-token-3c9a"


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    server = KubeAPIServer(tmp_path_factory.mktemp("kube-vantage")).start()
    yield server
    server.stop()


@pytest.fixture
def doctor(make_profile):
    """doctor(sections, registry=None) -> "127.0.0.1:PORT" of a real serve with that in-cluster profile (its
    smoke loop run once, so /healthz, the pod's readiness probe, answers 200)."""
    started = []

    def start(sections: dict, registry=None, env=None) -> str:
        exporter = Exporter(make_profile(sections, name="in-cluster", timeout=5, env=env),
                            registry=registry or default_registry.load_plugins(), layers=["redis"], interval=300,
                            budget=10, probe_budget=8, probe_cache=0)
        server = make_server(exporter, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        exporter.start()
        assert exporter.ran.wait(30)
        started.append((server, exporter))
        return f"127.0.0.1:{server.server_address[1]}"

    yield start
    for server, exporter in started:
        exporter.stop.set()
        server.shutdown()
        server.server_close()


def laptop(make_profile, kube, **kubernetes):
    """What a laptop has: the API server and a token; no Redis, PostgreSQL or Traefik API URL."""
    return make_profile({"kubernetes": {"api_url": kube.url, "namespace": "studio", "token": TOKEN, **kubernetes}},
                        name="laptop", timeout=8)


def put(kube, state):
    state["token"] = TOKEN
    kube.write_state(state)
    time.sleep(0.01)


def by_id(report):
    return {r.id: r for r in report.results}


def test_the_laptop_asks_the_in_cluster_doctor_for_redis_and_postgres(kube, doctor, make_profile,
                                                                        redis_server, postgres_server):
    address = doctor({"redis": {"url": redis_server.url()}, "postgres": {"dsn": postgres_server.dsn()}})
    put(kube, with_doctor(K.studio_state(), address))
    report = engine.check(laptop(make_profile, kube), layers=["redis", "postgres"])
    results = by_id(report)
    assert {r.vantage for r in results.values()} == {"cluster"}
    assert results["redis.reachable"].status is Status.OK, results["redis.reachable"].summary
    assert results["postgres.reachable"].status is Status.OK, results["postgres.reachable"].summary
    assert "service studio/studiodoctor:9842" in results["redis.reachable"].evidence["seen_from"]
    assert "label studiodoctor/doctor=report" in results["redis.reachable"].evidence["seen_from"]
    data = report.to_dict(Redactor(set()))
    assert {r["vantage"] for r in data["results"]} == {"cluster"}
    assert "redis.reachable (seen from the cluster)" in render(data, "table")
    assert "`redis.reachable` (seen from the cluster)" in render(data, "markdown")


class _Healthz(BaseHTTPRequestHandler):
    """Studio's app with its database gone: /healthz 500 (the frontend pods' readiness probe)."""

    def do_GET(self):  # noqa: N802
        code = 500 if self.path.startswith("/healthz") else 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_postgres_down_seen_from_the_cluster_explains_pods_not_ready_seen_from_here(kube, doctor, make_profile,
                                                                                      redis_server, tmp_path):
    pg = PostgresServer(tmp_path / "pg").start()
    pg.stop()                                                    # the database is down
    app = ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    try:
        address = doctor({"redis": {"url": redis_server.url()}, "postgres": {"dsn": pg.dsn()}})
        state = with_doctor(K.studio_state(), address)
        for p in state["namespaces"]["studio"]["pods"]:          # every frontend pod's app (and nginx in front
            if p["metadata"]["labels"].get("tier") == "frontend":  # of it) answers /healthz 500
                for port in (8080, 8081):
                    state["network"][f"{p['status']['podIP']}:{port}"] = f"127.0.0.1:{app.server_address[1]}"
        put(kube, state)
        kube.await_pods(False, f"127.0.0.1:{app.server_address[1]}")  # the kubelet's third failed probe
        report = engine.diagnose(laptop(make_profile, kube), "502")
    finally:
        app.shutdown()
        app.server_close()
    results = by_id(report)
    assert results["postgres.reachable"].status is Status.FAIL and results["postgres.reachable"].vantage == "cluster"
    not_ready = [r for r in results.values() if r.layer == "kubernetes" and r.status is Status.FAIL]
    assert not_ready and all(r.vantage == "local" for r in not_ready), [(r.id, r.summary) for r in not_ready]
    assert report.likely_cause["layer"] == "postgres", report.likely_cause
    kube_step = next(s for s in report.runbook if s["layer"] == "kubernetes")
    assert "postgres" in kube_step["consequence_of"], kube_step   # (and app: /healthz fails, itself postgres's)


@pytest.mark.parametrize("deny, expected", [
    ("no-doctor", "kubectl --server"),
    ("proxy", "services/proxy"),
])
def test_no_way_in_is_a_skip_with_the_line_that_opens_one(kube, make_profile, deny, expected):
    state = K.studio_state()
    if deny == "proxy":
        state = with_doctor(state, "127.0.0.1:1")
        state["deny"] = [{"verb": "get", "resource": "services/proxy", "group": "", "namespace": "studio"}]
    put(kube, state)
    report = engine.check(laptop(make_profile, kube), layers=["redis", "postgres", "celery"])
    results = by_id(report)
    assert results and all(r.status is Status.SKIP for r in results.values()), \
        [(r.id, r.status, r.summary) for r in results.values()]
    reach = results["redis.reachable"]
    assert reach.summary.startswith("redis.url is not set and ")
    text = reach.hint + " ".join(c.text for c in reach.commands)
    assert expected in text, (reach.summary, reach.hint, [c.text for c in reach.commands])


def test_a_profile_url_keeps_priority(kube, make_profile, redis_server):
    put(kube, with_doctor(K.studio_state(), "127.0.0.1:1"))
    profile = make_profile({"kubernetes": {"api_url": kube.url, "namespace": "studio", "token": TOKEN},
                            "redis": {"url": redis_server.url()}}, timeout=5)
    results = by_id(engine.check(profile, layers=["redis"]))
    assert results["redis.reachable"].status is Status.OK and results["redis.reachable"].vantage == "local"


def test_no_secret_of_the_cluster_reaches_the_laptops_outputs(kube, make_profile, doctor):
    """The doctor redacts its own secrets before they leave it: a check that echoes the cluster profile's API
    token (as a hostile answer would) shows it in none of the laptop's formats."""
    secret = "Cl5ster-Token-9f2e71"
    reg = Registry()
    reg.check("redis.echo", title="echo", needs=("redis.url",))(
        lambda ctx: fail(f"echo {ctx.profile.value('app.api_token')}", evidence={"token": ctx.profile.value("app.api_token")}))
    address = doctor({"redis": {"url": "redis://127.0.0.1:1/0"}, "app": {"api_token": "${DOCTOR_TOKEN}"}},
                     registry=reg, env={"DOCTOR_TOKEN": secret})
    put(kube, with_doctor(K.studio_state(), address))
    report = engine.check(laptop(make_profile, kube), layers=["redis"], registry=reg)
    data = report.to_dict(Redactor(set()))
    [echo] = data["results"]
    assert echo["vantage"] == "cluster" and echo["status"] == "fail" and echo["summary"].startswith("echo ")
    for fmt in ("json", "table", "markdown", "junit", "nagios", "prometheus", "html"):
        assert secret not in render(data, fmt), fmt
