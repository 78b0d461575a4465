"""The API server's pod and service proxy: the stand-in answers as kube-apiserver does (URL forms, the query
passed on, its Status refusals, RBAC on ``pods/proxy`` and ``services/proxy``), forwarding to real HTTP
servers on loopback; ``studiodoctor.backends.kube_proxy`` reads through it with the run's credentials."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from studiodoctor.backends import kube_proxy as kp
from studiodoctor.context import CheckContext, Shared
from studiodoctor.lab.standins import kubernetes as K
from studiodoctor.lab.standins.kubernetes import KubeAPIServer
from studiodoctor.registry import default_registry

TOKEN = "proxy-test-token-5f1e"


class _Echo(BaseHTTPRequestHandler):
    """A pod's process: answers its own name, the path, query and the headers it got (``/fail``: 500)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802
        body = json.dumps({"pod": self.server.name, "path": self.path, "auth": self.headers.get("Authorization"),
                           "agent": self.headers.get("User-Agent"), "host": self.headers.get("Host")}).encode()
        self.send_response(500 if self.path.startswith("/fail") else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Set-Cookie", "a=1")
        self.send_header("Set-Cookie", "b=2")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def pods():
    servers = []
    for i in range(3):
        srv = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
        srv.name = f"pod-{i}"
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    yield servers
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    server = KubeAPIServer(tmp_path_factory.mktemp("kube-proxy")).start()
    yield server
    server.stop()


@pytest.fixture
def api(kube, pods):
    """A healthy Studio namespace whose three frontend pods' nginx port (8080) leads to the echo servers
    (pod 2's app port 8081 too); a bearer token required."""
    state = K.studio_state()
    fe = [p for p in state["namespaces"]["studio"]["pods"] if p["metadata"]["labels"].get("tier") == "frontend"]
    state["network"] = {f"{p['status']['podIP']}:8080": f"127.0.0.1:{srv.server_address[1]}"
                        for p, srv in zip(fe, pods)}
    state["network"][f"{fe[2]['status']['podIP']}:8081"] = f"127.0.0.1:{pods[2].server_address[1]}"
    state["token"] = TOKEN
    kube.write_state(state)
    kube.names = [p["metadata"]["name"] for p in fe]
    kube.echo = pods
    return kube


def _get(kube, path: str, token: str = TOKEN):
    req = urllib.request.Request(kube.url + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _edit(kube, change):
    state = kube.read_state()
    change(state)
    kube.write_state(state)
    time.sleep(0.01)  # a new mtime for the stand-in's one-second cache key


def test_pod_proxy_reaches_each_pod_with_the_query_and_without_our_token(api):
    for i, name in enumerate(api.names):
        code, body = _get(api, f"/api/v1/namespaces/studio/pods/{name}:8080/proxy/healthz?x=1&y=two")
        seen = json.loads(body)
        assert code == 200 and seen["pod"] == f"pod-{i}"
        assert seen["path"] == "/healthz?x=1&y=two"
        assert seen["auth"] is None  # the API server consumed our credentials
        assert seen["host"].startswith("10.8.1.")  # the pod's address, as the API server dials it
    # a backend's own 500 comes back as it is, not as a Status
    code, body = _get(api, f"/api/v1/namespaces/studio/pods/http:{api.names[1]}:8080/proxy/fail")
    assert code == 500 and json.loads(body)["pod"] == "pod-1"


def test_the_api_servers_own_refusals_are_its_status_objects(api):
    code, body = _get(api, "/api/v1/namespaces/studio/pods/nope:8080/proxy/")
    assert code == 404 and json.loads(body)["message"] == 'pods "nope" not found'
    code, body = _get(api, "/api/v1/namespaces/studio/services/nope:80/proxy/")
    assert code == 404 and json.loads(body)["details"] == {"name": "nope", "kind": "services"}
    # nothing listens on pod 0's 8081 in this test: the API server's dial fails
    code, body = _get(api, f"/api/v1/namespaces/studio/pods/{api.names[0]}:8081/proxy/healthz")
    status = json.loads(body)
    assert code == 503 and status["reason"] == "ServiceUnavailable"
    assert status["message"] == "error trying to reach service: dial tcp 10.8.1.10:8081: connect: connection refused"
    code, body = _get(api, "/api/v1/namespaces/studio/pods/a:b:c:d/proxy/")
    assert code == 400
    code, _ = _get(api, f"/api/v1/namespaces/studio/pods/{api.names[0]}:8080/proxy/", token="wrong")
    assert code == 401


def test_service_proxy_maps_the_port_number_to_its_name_and_picks_a_ready_endpoint(api):
    seen = set()
    for _ in range(20):
        code, body = _get(api, "/api/v1/namespaces/studio/services/master-studio-app:80/proxy/x")
        assert code == 200
        seen.add(json.loads(body)["pod"])
    assert seen == {"pod-0", "pod-1", "pod-2"}
    code, body = _get(api, "/api/v1/namespaces/studio/services/http:master-studio-app:http/proxy/x")
    assert code == 200
    # no port: the service port is named "http", so no endpoint port matches "" (as kube-apiserver answers)
    code, body = _get(api, "/api/v1/namespaces/studio/services/master-studio-app/proxy/x")
    assert code == 503 and "no endpoints available" in json.loads(body)["message"]
    code, body = _get(api, "/api/v1/namespaces/studio/services/master-studio-app:81/proxy/x")
    assert code == 503 and json.loads(body)["message"] == 'no service port 81 found for service "master-studio-app"'


def test_endpoints_follow_readiness_and_none_ready_is_no_endpoints(api):
    _edit(api, lambda s: s["faults"].append("deployment-unavailable"))
    code, body = _get(api, "/api/v1/namespaces/studio/endpoints/master-studio-app")
    subset = json.loads(body)["subsets"][0]
    assert code == 200 and "addresses" not in subset and len(subset["notReadyAddresses"]) == 3
    code, body = _get(api, "/api/v1/namespaces/studio/services/master-studio-app:80/proxy/")
    # subsets exist (not-ready ones): kube-apiserver's message then names the request's id, port and all
    assert code == 503 and json.loads(body)["message"] == 'no endpoints available for service "master-studio-app:80"'
    # a pod proxy still reaches a pod that is not Ready (the API server dials its IP)
    code, _ = _get(api, f"/api/v1/namespaces/studio/pods/{api.names[0]}:8080/proxy/")
    assert code == 200


def test_pod_readiness_is_its_own_probe_against_its_own_process(api):
    """Pod 2's app port leads to a server whose /healthz answers 200; pods 0 and 1 have no process on 8081
    at all: with the network map naming a readiness target, only played containers are probed."""
    def point_healthz_at_fail(state):
        for p in state["namespaces"]["studio"]["pods"]:
            for c in p["spec"]["containers"]:
                if c.get("readinessProbe"):
                    c["readinessProbe"]["httpGet"]["path"] = "/fail"
    _edit(api, point_healthz_at_fail)
    # the stand-in's kubelet takes the pod out after failureThreshold (3) failed probes: awaited from the API
    api.await_pods(False, f"127.0.0.1:{api.echo[2].server_address[1]}")
    code, body = _get(api, "/api/v1/namespaces/studio/endpoints/master-studio-app")
    subset = json.loads(body)["subsets"][0]
    assert [a["targetRef"]["name"] for a in subset["notReadyAddresses"]] == [api.names[2]]
    assert len(subset["addresses"]) == 2
    code, body = _get(api, "/api/v1/namespaces/studio/events")
    unhealthy = [e for e in json.loads(body)["items"] if e["reason"] == "Unhealthy"]
    assert unhealthy[0]["involvedObject"]["name"] == api.names[2]
    assert unhealthy[0]["message"] == "Readiness probe failed: HTTP probe failed with statuscode: 500"


def test_rbac_on_the_proxy_subresources_is_the_real_403(api):
    _edit(api, lambda s: s["deny"].extend([
        {"verb": "get", "resource": "pods/proxy", "group": "", "namespace": "studio"},
        {"verb": "get", "resource": "services/proxy", "group": "", "namespace": "studio",
         "except_names": ["studiodoctor"]}]))
    code, body = _get(api, f"/api/v1/namespaces/studio/pods/{api.names[0]}:8080/proxy/")
    status = json.loads(body)
    assert code == 403 and status["reason"] == "Forbidden"
    assert status["message"] == (f'pods "{api.names[0]}" is forbidden: User "system:serviceaccount:studio:'
                                 f'studiodoctor" cannot get resource "pods/proxy" in API group "" in the '
                                 f'namespace "studio"')
    code, _ = _get(api, "/api/v1/namespaces/studio/services/master-studio-app:80/proxy/")
    assert code == 403
    code, _ = _get(api, "/api/v1/namespaces/studio/services/studiodoctor:80/proxy/")
    assert code == 404  # allowed by name; this namespace just has no such Service
    # SelfSubjectAccessReview answers the same for the subresource
    req = urllib.request.Request(api.url + "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", method="POST",
                                 data=json.dumps({"spec": {"resourceAttributes": {
                                     "verb": "get", "resource": "pods", "subresource": "proxy",
                                     "namespace": "studio"}}}).encode(),
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert json.loads(resp.read())["status"]["allowed"] is False


def test_service_and_endpoints_shapes_validate_as_the_clients_models(api):
    from kubernetes import client

    state = K.effective_state(K.studio_state())
    ns = state["namespaces"]["studio"]
    svc = client.V1ServiceList.from_dict({"items": ns["services"]}).items[0]
    assert svc.spec.ports[0].target_port == 8080
    eps = client.V1EndpointsList.from_dict({"items": ns["endpoints"]}).items[0]
    assert len(eps.subsets[0].addresses) == 3


# -- the backend helper -----------------------------------------------------------------------------------

def _ctx(make_profile, kube, **kubernetes):
    profile = make_profile({"kubernetes": {"api_url": kube.url, "namespace": "studio", "token": TOKEN,
                                           **kubernetes}}, timeout=5)
    check = default_registry.load_plugins().get("kubernetes.api")
    return CheckContext(check, profile, time.monotonic() + 10, Shared())


def test_backend_reads_through_the_proxy_as_a_response(api, make_profile):
    ctx = _ctx(make_profile, api)
    target = kp.ProxyTarget("pods", "studio", api.names[1], "8080")
    resp = kp.proxy_request(ctx, target, "/healthz", query={"a": "b c"})
    data = resp.json()
    assert resp.status_code == 200 and data["pod"] == "pod-1" and data["path"] == "/healthz?a=b+c"
    assert data["auth"] is None and resp.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert resp.extensions["via"] == f"/api/v1/namespaces/studio/pods/{api.names[1]}:8080/proxy/healthz"
    assert resp.extensions["network_s"] > 0
    assert TOKEN not in repr(resp.request.headers)  # nothing secret rides on the answer
    head = kp.proxy_request(ctx, target, "/healthz", method="HEAD")
    assert head.status_code == 200 and head.content == b""
    assert kp.proxy_request(ctx, target, "/fail").status_code == 500  # the backend's own 500: an answer
    with pytest.raises(ValueError):
        kp.proxy_request(ctx, target, "/", method="POST")


def test_backend_names_each_refusal(api, make_profile):
    ctx = _ctx(make_profile, api)
    with pytest.raises(kp.ProxyRefused) as refused:
        kp.proxy_request(ctx, kp.ProxyTarget("pods", "studio", api.names[0], "8081"), "/healthz")
    assert refused.value.kind == "unreachable" and "10.8.1.10:8081" in str(refused.value)
    with pytest.raises(kp.ProxyRefused) as refused:
        kp.proxy_request(ctx, kp.ProxyTarget("pods", "studio", "gone", "8080"), "/")
    assert refused.value.kind == "notfound"
    with pytest.raises(kp.ProxyRefused) as refused:
        kp.proxy_request(ctx, kp.ProxyTarget("services", "studio", "master-studio-app"), "/")
    assert refused.value.kind == "no-endpoints"
    _edit(api, lambda s: s["deny"].append({"verb": "get", "resource": "services/proxy", "namespace": "studio"}))
    svc = kp.ProxyTarget("services", "studio", "master-studio-app", "80", scheme="https")
    assert svc.ident == "https:master-studio-app:80"
    with pytest.raises(kp.ProxyRefused) as refused:
        kp.proxy_request(ctx, svc, "/")
    assert refused.value.kind == "forbidden"
    assert refused.value.rule == ('Role in namespace studio: {apiGroups: [""], resources: ["services/proxy"], '
                                  'resourceNames: ["master-studio-app"], verbs: ["get"]}')
    bad = _ctx(make_profile, api, token="not-the-token")
    with pytest.raises(kp.ProxyRefused) as refused:
        kp.proxy_request(bad, kp.ProxyTarget("pods", "studio", api.names[0], "8080"), "/")
    assert refused.value.kind == "unauthorized" and "not-the-token" not in str(refused.value)
    with pytest.raises(kp.ProxyUnavailable):
        kp.proxy_request(_ctx(make_profile, api, api_url="", kubeconfig="/nonexistent/kubeconfig"),
                         kp.ProxyTarget("pods", "studio", "x", "1"), "/")


def test_a_slow_pod_is_cut_at_the_deadline(api, make_profile, pods):
    """The proxy path waits on the backend; our read stops at the check's timeout, never hangs."""
    ctx = _ctx(make_profile, api)
    ctx.profile  # noqa: B018
    import httpx

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            time.sleep(3)

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        _edit(api, lambda s: s["network"].update({"10.8.1.10:9999": f"127.0.0.1:{srv.server_address[1]}"}))
        started = time.monotonic()
        with pytest.raises((httpx.TransportError, OSError)):
            kp.proxy_request(ctx, kp.ProxyTarget("pods", "studio", api.names[0], "9999"), "/", timeout=0.5)
        assert time.monotonic() - started < 1.5
    finally:
        srv.shutdown()
        srv.server_close()
