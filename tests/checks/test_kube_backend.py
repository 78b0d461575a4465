"""studiodoctor.backends.kubernetes (the connection, kubeconfig, lists, what a failed list means) and the
API stand-in itself (routes, method log)."""

from __future__ import annotations

import json

import pytest

from kube_standin import *  # noqa: F401,F403  (fixtures: kube, cluster, run)
from kube_standin import HOST
from checks import kubernetes as kc
from studiodoctor import engine
from studiodoctor.backends import kube_pods as kp
from studiodoctor.backends import kubernetes as kb
from studiodoctor.lab.launcher import free_port
from studiodoctor.lab.standins import kubernetes as K
from studiodoctor.lab.standins.kubernetes import KubeAPIServer
from studiodoctor.model import Reason, Status


def test_api_unreachable_fails_and_blocks_the_rest(make_profile):
    port = free_port()
    profile = make_profile({"kubernetes": {"api_url": f"http://127.0.0.1:{port}"}}, timeout=5)
    res = {r.id: r for r in engine.check(profile, layers=["kubernetes"]).results}
    assert res[kc.API].status is Status.FAIL and "unreachable from here: connection refused" in res[kc.API].summary
    assert res[kc.PODS_READY].status is Status.BLOCKED


def test_rejected_token_is_an_auth_error(run, cluster):
    state = cluster.read_state()
    state["token"] = "right-token"
    cluster.write_state(state)
    res = run(kubernetes={"token": "wrong-token"})
    assert res[kc.API].status is Status.ERROR and res[kc.API].reason == Reason.AUTH.value
    res = run(kubernetes={"token": "right-token"})
    assert res[kc.PODS_READY].status is Status.OK


def test_kubeconfig_with_context(make_profile, cluster, tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster: {{server: "{cluster.url}"}}
users:
- name: doctor
  user: {{token: abc}}
contexts:
- name: other
  context: {{cluster: nowhere, user: doctor}}
- name: studio-lab
  context: {{cluster: lab, user: doctor, namespace: studio}}
current-context: other
""")
    profile = make_profile({"kubernetes": {"kubeconfig": str(path), "context": "studio-lab"}}, timeout=5)
    res = {r.id: r for r in engine.check(profile, check_ids=[kc.PODS_READY]).results}
    assert res[kc.PODS_READY].status is Status.OK
    missing = make_profile({"kubernetes": {"kubeconfig": str(tmp_path / "nope")}}, timeout=5)
    res = {r.id: r for r in engine.check(missing, layers=["kubernetes"]).results}
    assert res[kc.API].status is Status.SKIP and "no kubeconfig" in res[kc.API].summary


def test_one_list_call_per_namespace_and_kind_for_1000_pods(run, cluster):
    cluster.write_state(K.studio_state(hostnames=(HOST,), frontend=700, workers=300))
    res = run("oomkilled", "pending")
    assert res[kc.PODS_READY].evidence["pods"] == 1001
    assert res[kc.PODS_OOMKILLED].status is Status.FAIL
    counts = cluster.request_counts()
    assert counts["/api/v1/namespaces/studio/pods"] == 3  # paginated: limit=500, then continue twice
    assert counts["/apis/apps/v1/namespaces/studio/deployments"] == 1
    assert counts["/api/v1/namespaces/studio/events"] == 1
    assert counts["/apis/metrics.k8s.io/v1beta1/namespaces/studio/pods"] == 2  # 1000 usages: 2 pages of 500
    assert not any("/pods/" in path for path in counts)  # never a call per pod


def test_standin_shapes_validate_as_the_clients_models(cluster):
    """kubernetes 37.x models (pydantic v2) reject objects missing required fields."""
    from kubernetes import client

    state = K.effective_state({**K.studio_state(), "faults": ["crashloop", "pending", "oomkilled", "image-pull"]})
    ns = state["namespaces"]["studio"]
    assert len(client.V1PodList.from_dict({"items": ns["pods"]}).items) == 6
    assert client.V1DeploymentList.from_dict({"items": ns["deployments"]}).items[0].spec.replicas == 4
    assert client.CoreV1EventList.from_dict({"items": ns["events"]}).items[-1].reason == "Failed"
    assert client.V1IngressList.from_dict({"items": ns["ingresses"]}).items[0].spec.rules[0].host == "studio.localtest"
    assert client.V1IngressClassList.from_dict({"items": state["ingressclasses"]}).items
    assert client.VersionInfo.from_dict(K.VERSION).git_version.startswith("v1.31")


def test_rule_text_and_quantities():
    assert kb.rbac_rule("deployments", "studio") == \
        'Role in namespace studio: {apiGroups: ["apps"], resources: ["deployments"], verbs: ["list"]}'
    assert kp.parse_quantity("2Gi") == 2 * 2**30 and kp.parse_quantity("500m") == 0.5
    assert kp.mib(kp.parse_quantity("512Mi")) == "512Mi"


def test_faults_switch_from_a_reconstructed_launcher(run, cluster):
    other = KubeAPIServer.from_state(json.loads(json.dumps(cluster.to_state())))
    assert other.alive() and other.profile()["kubernetes"]["api_url"] == cluster.url
    other.set_fault("workers-crashloop")
    state = cluster.read_state()
    res = run(*state["faults"])
    assert res[kc.PODS_CRASHING].status is Status.FAIL
    assert {c["container"] for c in res[kc.PODS_CRASHING].evidence["containers"]} == {"worker"}
    assert "master-studio-workers 0/2 available" in res[kc.DEPLOYMENTS].summary
    other.set_fault("workers-crashloop", False)
    assert other.faults() == []


def test_an_answer_that_is_not_the_kubernetes_api_is_an_error_not_unreachable(make_profile):
    """Something answers at kubernetes.api_url, but not with JSON: we could not look, it is not down."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Html(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html><body>Sign in</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        profile = make_profile({"kubernetes": {"api_url": f"http://127.0.0.1:{server.server_port}"}}, timeout=5)
        api = engine.check(profile, check_ids=[kc.API]).results[0]
        listing = kb.Listing("pods", "studio")
        kb.classify(ValueError("Expecting value: line 1 column 1 (char 0)"), listing)
    finally:
        server.shutdown()
        server.server_close()
    assert api.status is Status.ERROR, api.summary
    assert "unreachable" not in api.summary and "unreadable answer" in api.summary
    assert listing.status == "error"
    problem = kb.listing_problem(None, listing)
    assert problem.status is Status.ERROR and "cannot list pods in namespace studio: unreadable answer" in problem.summary


@pytest.mark.parametrize("data, words", [
    ([{"metadata": {"name": "x"}}], "a JSON list, not a List object"),
    ({"kind": "PodList", "items": {"x": 1}}, "`items` is a dict"),
    ({"kind": "PodList", "items": ["pod-a", "pod-b"]}, "2 of 2 items are not objects"),
    ({"kind": "Status", "message": "too old resource version"}, "a Status instead of a list"),
])
def test_list_answers_of_an_undocumented_shape_are_named(data, words):
    with pytest.raises(kb.UnexpectedAnswer, match=words.replace("(", r"\(").replace("`", "`")):
        kb.list_items(data)


def test_empty_and_null_items_are_an_empty_list():
    assert kb.list_items({"kind": "PodList", "items": None}) == []
    assert kb.list_items({"kind": "PodList", "metadata": {}}) == []


def test_a_run_imports_no_kubernetes_sdk_and_says_its_network_time(cluster):
    """The SDK's client and API classes cost ~1 s of CPU to import (under the GIL, next to every other
    check): the backend speaks HTTP itself. Each result says its time on the wire (network_ms)."""
    import subprocess
    import sys

    code = f"""
import json, sys
from studiodoctor import engine
from studiodoctor.config import profile_from_data
p = profile_from_data("t", {{"kubernetes": {{"api_url": "{cluster.url}", "namespace": "studio"}},
                            "dns": {{"hostnames": ["{HOST}"]}}, "timeout": 10}}, env={{}})
rs = engine.check(p, layers=["kubernetes"]).results
print(json.dumps({{"sdk": sorted(m for m in sys.modules if m == "kubernetes" or m.startswith("kubernetes.")),
                  "results": {{r.id: [r.status.value, r.evidence.get("network_ms"), r.evidence.get("cpu_ms")]
                              for r in rs}}}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["sdk"] == []
    assert all(status == "ok" for status, *_ in seen["results"].values()), seen["results"]
    assert all(isinstance(net, (int, float)) for _, net, _cpu in seen["results"].values()), seen["results"]
    assert all(isinstance(cpu, (int, float)) for _, _net, cpu in seen["results"].values()), seen["results"]
    assert seen["results"][kc.API][1] > 0 and seen["results"][kc.PERMISSIONS][1] > 0


def test_the_standin_records_every_method_and_the_doctor_only_reads(run, cluster):
    import urllib.error
    import urllib.request

    log = cluster.methods()
    log.clear()
    run("crashloop")
    seen = log.read()
    assert seen and {m for m, _ in seen} == {"GET", "POST"}
    assert {p for m, p in seen if m == "POST"} == {"/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"}
    req = urllib.request.Request(f"{cluster.url}/api/v1/namespaces/studio/pods/x", data=b"{}", method="DELETE")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=5)
    assert refused.value.code == 405
    assert ("DELETE", "/api/v1/namespaces/studio/pods/x") in log.read()


def test_every_list_route_of_the_standin_is_one_the_backend_asks_for():
    """The stand-in's routes are a table; the backend builds the same paths from RESOURCES."""
    served = {r.path for r in K.ROUTES}
    for resource, (_g, _n, cluster_scoped, _w) in kb.RESOURCES.items():
        assert kb.list_path(resource, "studio").replace("/studio/", "/{ns}/") in served, resource
        if resource in ("pods", "ingresses"):
            assert kb.list_path(resource, kb.ALL_NAMESPACES) in served


def _kubeconfig(path, cluster: dict, user: dict, name: str = "lab") -> str:
    import yaml

    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": name, "cluster": cluster}], "users": [{"name": "doctor", "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": "doctor"}}]}))
    return str(path)


def test_kubeconfig_token_file_and_exec_plugin(tmp_path):
    import sys

    from studiodoctor.backends import kubeconfig

    (tmp_path / "token").write_text("from-a-file\n")
    ep = kubeconfig.from_kubeconfig(_kubeconfig(tmp_path / "a", {"server": "https://k8s.test:6443/"},
                                                {"tokenFile": "token"}))
    assert ep.host == "https://k8s.test:6443" and ep.headers["Authorization"] == "Bearer from-a-file"
    plugin = tmp_path / "plugin.py"
    plugin.write_text("import json, os\nprint(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', "
                      "'kind': 'ExecCredential', 'status': {'token': 'exec-' + os.environ['WHO']}}))\n")
    ep = kubeconfig.from_kubeconfig(_kubeconfig(tmp_path / "b", {"server": "https://k8s.test"}, {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable, "args": [str(plugin)],
        "env": [{"name": "WHO", "value": "doctor"}]}}))
    assert ep.headers["Authorization"] == "Bearer exec-doctor"
    with pytest.raises(kubeconfig.KubeconfigError, match="exec plugin .* exited 3"):
        kubeconfig.from_kubeconfig(_kubeconfig(tmp_path / "c", {"server": "https://k8s.test"}, {"exec": {
            "command": sys.executable, "args": ["-c", "import sys; sys.exit(3)"]}}))
    with pytest.raises(kubeconfig.KubeconfigError, match="context 'nope' is not in the kubeconfig"):
        kubeconfig.from_kubeconfig(str(tmp_path / "a"), "nope")


def test_kubeconfig_tls_with_ca_and_client_certificate_data(tmp_path, make_profile):
    """TLS as a GKE kubeconfig gives it: the cluster's CA and a client certificate, both as base64 data,
    against a server that requires the client certificate; a wrong CA is refused, skip-verify is not."""
    import base64
    import ssl
    import threading

    import trustme

    from studiodoctor.lab.standins.kubernetes import server as standin

    ca, other_ca = trustme.CA(), trustme.CA()
    state = tmp_path / "state.json"
    state.write_text(json.dumps(K.studio_state(hostnames=(HOST,))))
    httpd = standin._make_server(0, str(state))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    ca.configure_trust(tls)
    tls.verify_mode = ssl.CERT_REQUIRED
    httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    client = ca.issue_cert("doctor@studio")
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    user = {"client-certificate-data": b64(client.cert_chain_pems[0].bytes()),
            "client-key-data": b64(client.private_key_pem.bytes())}
    server = f"https://127.0.0.1:{httpd.server_port}"

    def api(cluster_entry):
        path = _kubeconfig(tmp_path / f"kc{len(list(tmp_path.iterdir()))}", {"server": server, **cluster_entry}, user)
        profile = make_profile({"kubernetes": {"kubeconfig": path, "namespace": "studio"}}, timeout=5)
        return {r.id: r for r in engine.check(profile, check_ids=[kc.PODS_READY]).results}

    try:
        good = api({"certificate-authority-data": b64(ca.cert_pem.bytes())})
        assert good[kc.API].status is Status.OK and good[kc.PODS_READY].status is Status.OK, good[kc.API].summary
        wrong = api({"certificate-authority-data": b64(other_ca.cert_pem.bytes())})[kc.API]
        # our CA does not sign the server's certificate: nothing proves the cluster broken -> error, not fail
        assert wrong.status is Status.ERROR and "certificate" in wrong.summary.lower(), wrong.summary
        assert "certificate-authority" in wrong.hint and any("openssl s_client" in c.text for c in wrong.commands)
        assert api({"insecure-skip-tls-verify": True})[kc.API].status is Status.OK
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_result_network_ms_counts_only_the_lists_a_check_fetched_or_waited_for(run):
    """The runner's network_ms (ctx.add_network): the check that fetched the pod list has it; a check
    that found the list already fetched made no request: 0."""
    res = run()
    timed = [r for r in res.values() if r.network_ms]
    assert res[kc.API].network_ms and res[kc.PERMISSIONS].network_ms
    assert all(r.network_ms <= r.duration_ms + 1 for r in timed)
    pod_checks = [res[c] for c in (kc.PODS_READY, kc.PODS_CRASHING, kc.PODS_OOMKILLED, kc.PODS_RESTARTS,
                                   kc.PODS_PENDING)]
    assert any(r.network_ms for r in pod_checks)  # one of them fetched the list
    assert any(r.network_ms == 0 and r.evidence["network_ms"] == 0 for r in pod_checks)
