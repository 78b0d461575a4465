"""kubernetes layer against the API stand-in (a real process serving the API's JSON shapes), read by
the doctor's own client (studiodoctor.backends.kubernetes)."""

from __future__ import annotations

import json

import pytest

from checks import kubernetes as kc
from studiodoctor import engine
from studiodoctor.lab import kube_api as K
from studiodoctor.lab.kube_api import KubeAPIServer
from studiodoctor.backends import kube_pods as kp
from studiodoctor.backends import kubernetes as kb
from studiodoctor.lab.launcher import free_port
from studiodoctor.model import Reason, Status

HOST = "studio.localtest"


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    server = KubeAPIServer(tmp_path_factory.mktemp("kube"), hostnames=[HOST]).start()
    yield server
    server.stop()


@pytest.fixture
def cluster(kube):
    """The stand-in reset to a healthy Studio namespace; tests add faults or edit the state."""
    kube.write_state(K.studio_state(hostnames=(HOST,)))
    kube.reset_counts()
    return kube


@pytest.fixture
def run(make_profile, cluster):
    def go(*faults, kubernetes=None, **top):
        state = cluster.read_state()
        state["faults"] = list(faults)
        cluster.write_state(state)
        section = {"api_url": cluster.url, "namespace": "studio", **(kubernetes or {})}
        profile = make_profile({"kubernetes": section, "dns": {"hostnames": [HOST]}}, timeout=5, **top)
        report = engine.check(profile, layers=["kubernetes"])
        return {r.id: r for r in report.results}

    return go


def test_healthy_namespace_is_all_ok(run):
    res = run()
    bad = {i: (r.status.value, r.summary) for i, r in res.items() if r.status is not Status.OK}
    assert not bad
    assert res[kc.DEPLOYMENTS].evidence["deployments"]["master-studio"] == {"desired": 3, "available": 3, "ready": 3,
                                                                          "updated": 3}
    assert res[kc.PODS_READY].evidence["pods"] == 5
    assert res[kc.INGRESS_CONTROLLER].evidence["routes"][HOST][0]["controller"] == "Traefik"
    assert res[kc.MEMORY].evidence["top"][0]["percent"] == pytest.approx(40.0, abs=0.1)


def test_crashloop_names_pod_container_and_last_exit(run):
    res = run("crashloop")
    crash = res[kc.PODS_CRASHING]
    assert crash.status is Status.FAIL
    assert "CrashLoopBackOff" in crash.summary
    first = crash.evidence["containers"][0]
    assert first["container"] == "app" and first["restarts"] == 7 and first["last_exit_code"] == 1
    assert any("--previous" in c.text and first["pod"] in c.text for c in crash.commands)
    assert res[kc.PODS_READY].status is Status.FAIL
    assert "no Ready pod in master-studio" in res[kc.PODS_READY].summary
    assert res[kc.DEPLOYMENTS].status is Status.FAIL
    assert res[kc.EVENTS].status is Status.WARN
    assert res[kc.EVENTS].evidence["by_reason"]["BackOff"]["count"] == 3 * 31


def test_oomkilled_in_last_state_is_a_fail_with_the_limit(run):
    res = run("oomkilled")
    oom = res[kc.PODS_OOMKILLED]
    assert oom.status is Status.FAIL
    entry = oom.evidence["oomkilled"][0]
    assert entry["container"] == "app" and entry["memory_limit"] == "2Gi" and entry["exit_code"] == 137
    assert "limit 2Gi" in oom.summary
    restarts = res[kc.PODS_RESTARTS]
    assert restarts.status is Status.WARN and restarts.evidence["restarts"][0]["last_reason"] == "OOMKilled"
    assert res[kc.PODS_READY].status is Status.OK  # it restarted and is Ready again


def test_old_oomkill_outside_window_is_only_a_warning(run):
    res = run("oomkilled", kubernetes={"restart_window_minutes": 2})
    assert res[kc.PODS_OOMKILLED].status is Status.WARN
    assert res[kc.PODS_RESTARTS].status is Status.OK


def test_pending_pod_carries_the_schedulers_reason(run):
    res = run("pending")
    pend = res[kc.PODS_PENDING]
    assert pend.status is Status.FAIL
    assert "Insufficient memory" in pend.summary
    assert pend.evidence["pending"][0]["reason"] == "Unschedulable"
    assert res[kc.DEPLOYMENTS].status is Status.WARN  # 3 of 4 available: degraded, not down
    assert "FailedScheduling" in res[kc.EVENTS].evidence["by_reason"]


def test_deployment_unavailable_and_rollout_stuck(run):
    res = run("deployment-unavailable")
    dep = res[kc.DEPLOYMENTS]
    assert dep.status is Status.FAIL
    assert "master-studio 0/3 available" in dep.summary and "ProgressDeadlineExceeded" in dep.summary
    assert dep.evidence["deployments"]["master-studio-workers"]["available"] == 2
    ready = res[kc.PODS_READY]
    assert ready.status is Status.FAIL
    assert "readiness probe failing" in ready.evidence["not_ready"][0]["why"][0]
    # the logs command names the container that is not ready, read from the pod (not a fixed "app")
    assert any(f"logs {ready.evidence['not_ready'][0]['pod']} -c app " in c.text for c in ready.commands)


def test_logs_command_names_the_not_ready_container_not_a_fixed_app(run, cluster):
    """Before: `kubectl logs POD -c app` whatever the pod's containers were called."""
    state = K.studio_state(hostnames=(HOST,), frontend=1)
    fe = state["namespaces"]["studio"]["pods"][0]
    for c in fe["spec"]["containers"] + fe["status"]["containerStatuses"]:
        c["name"] = {"app": "django", "nginx-proxy": "web"}[c["name"]]
    fe["status"]["containerStatuses"][1]["ready"] = False
    K._set_ready(fe, False)
    cluster.write_state(state)
    ready = run()[kc.PODS_READY]
    assert ready.status is Status.FAIL, ready.summary
    assert any(f"logs {fe['metadata']['name']} -c web " in c.text for c in ready.commands), ready.commands


def test_image_pull_backoff(run):
    res = run("image-pull")
    crash = res[kc.PODS_CRASHING]
    assert crash.status is Status.FAIL and "ImagePullBackOff" in crash.summary
    assert crash.evidence["containers"][0]["image"].endswith(":v2026.11.99")


def test_forbidden_pod_list_is_an_error_naming_the_permission(run):
    res = run("forbidden-pods")
    for cid in (kc.PODS_READY, kc.PODS_CRASHING, kc.PODS_OOMKILLED, kc.PODS_RESTARTS, kc.PODS_PENDING, kc.MEMORY):
        r = res[cid]
        assert r.status is Status.ERROR, cid
        assert r.reason == Reason.FORBIDDEN.value
        assert r.summary.startswith("cannot list pods in namespace studio: forbidden (grant Role in namespace studio")
        assert 'resources: ["pods"], verbs: ["list"]' in r.summary
        assert "no pods" not in r.summary
    perm = res[kc.PERMISSIONS]
    assert perm.status is Status.ERROR
    assert perm.evidence["denied"] == ["list pods in studio"]
    assert any("auth can-i list pods" in c.text for c in perm.commands)
    assert res[kc.DEPLOYMENTS].status is Status.OK  # other rights still work


def test_missing_optional_permission_is_a_warning(run, cluster):
    state = cluster.read_state()
    state["deny"] = [{"verb": "list", "resource": "ingressclasses", "group": "networking.k8s.io", "namespace": ""}]
    cluster.write_state(state)
    res = run()
    assert res[kc.PERMISSIONS].status is Status.WARN
    assert "ClusterRole" in res[kc.PERMISSIONS].evidence["rules_to_grant"][0]
    ing = res[kc.INGRESS_CONTROLLER]  # falls back to class names, says so
    assert ing.status is Status.OK and "inferred" in ing.evidence["note"]


def test_metrics_api_absent_skips_memory_and_high_memory_warns(run):
    assert run("no-metrics")[kc.MEMORY].status is Status.SKIP
    high = run("memory-high")[kc.MEMORY]
    assert high.status is Status.WARN
    assert high.evidence["top"][0]["percent"] == pytest.approx(97.2, abs=0.1)


def test_ingress_nginx_detected_and_unrouted_host_warns(run, cluster):
    cluster.write_state(K.studio_state(hostnames=(HOST,), ingress_class_name="nginx"))
    res = run()
    assert res[kc.INGRESS_CONTROLLER].evidence["controllers"] == ["ingress-nginx"]
    res = run(**{"public_urls": ["https://other.localtest"]})
    ing = res[kc.INGRESS_CONTROLLER]
    assert ing.status is Status.WARN and "other.localtest" in ing.summary


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


def test_metrics_api_with_no_usage_for_our_pods_is_an_error(run, cluster):
    """An empty PodMetricsList (metrics-server starting or failing to scrape) is "could not look", not ok."""
    state = cluster.read_state()
    state["metrics"]["studio"] = []
    cluster.write_state(state)
    mem = run()[kc.MEMORY]
    assert mem.status is Status.ERROR, mem.summary
    assert "no memory usage for any of the 5 pods in studio" in mem.summary


POD_CHECKS = (kc.PODS_READY, kc.PODS_CRASHING, kc.PODS_OOMKILLED, kc.PODS_RESTARTS, kc.PODS_PENDING, kc.MEMORY)


def test_wrong_namespace_is_an_error_naming_the_key_never_ok_among_0_pods(run):
    """Before: ok "no container crash-looping among 0 pods" (and a warn for pods_ready)."""
    res = run(kubernetes={"namespace": "nowhere"})
    for cid in POD_CHECKS:
        r = res[cid]
        assert r.status is Status.ERROR, (cid, r.summary)
        assert "no pods in namespace nowhere" in r.summary and "kubernetes.namespace" in r.summary
        assert "among 0" not in r.summary


def test_wrong_selector_is_an_error_naming_the_selector(run):
    res = run(kubernetes={"app_selector": "tier=web"})
    for cid in POD_CHECKS:
        assert res[cid].status is Status.ERROR and "kubernetes.app_selector" in res[cid].summary, cid
    assert run(kubernetes={"app_selector": "tier=frontend"})[kc.PODS_CRASHING].status is Status.OK


def test_ingress_nginx_controller_pods_are_found_by_what_they_run(run, cluster):
    cluster.write_state(K.studio_state(hostnames=(HOST,), ingress_class_name="nginx"))
    res = run()
    pods = res[kc.INGRESS_PODS]
    assert pods.status is Status.OK, pods.summary
    assert pods.evidence["controllers"]["ingress-nginx"]["namespaces"] == ["ingress-nginx"]
    assert "Traefik" not in pods.evidence["controllers"]  # the idle Traefik in kube-system routes nothing


def test_ingress_controller_crashing_fails_the_ingress_pods_check(run, cluster):
    state = K.studio_state(hostnames=(HOST,), ingress_class_name="nginx")
    controller = state["namespaces"]["ingress-nginx"]["pods"][0]
    K._crash(controller, "controller")
    cluster.write_state(state)
    pods = run()[kc.INGRESS_PODS]
    assert pods.status is Status.FAIL and "ingress-nginx" in pods.summary and "CrashLoopBackOff" in pods.summary


def test_ingress_in_another_namespace_is_found_cluster_wide(run, cluster):
    state = K.studio_state(hostnames=(HOST,), ingress_class_name="nginx")
    ing = state["namespaces"]["studio"]["ingresses"].pop()
    ing["metadata"]["namespace"] = "edge"
    state["namespaces"]["edge"] = {"pods": [], "deployments": [], "events": [], "ingresses": [ing]}
    cluster.write_state(state)
    r = run()[kc.INGRESS_CONTROLLER]
    assert r.status is Status.OK, r.summary
    assert r.evidence["routes"][HOST][0]["ingress"] == "edge/master-studio"


def test_controller_pods_not_readable_anywhere_is_an_error_not_ok(run, cluster):
    state = K.studio_state(hostnames=(HOST,), ingress_class_name="nginx")
    state["deny"] = [{"verb": "list", "resource": "pods", "group": "", "namespace": ns}
                     for ns in ("", "ingress-nginx")]
    cluster.write_state(state)
    r = run()[kc.INGRESS_PODS]
    assert r.status is Status.ERROR and r.reason == Reason.NOT_CONFIGURED.value, r.summary
    assert "cannot tell where ingress-nginx runs" in r.summary


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


def test_pods_that_are_not_objects_are_an_error_not_a_crash(run, cluster):
    state = cluster.read_state()
    state["namespaces"]["studio"]["pods"] = ["master-studio-1", "master-studio-2"]
    cluster.write_state(state)
    res = run()
    for cid in POD_CHECKS:
        r = res[cid]
        assert r.status is Status.ERROR and "crashed" not in r.summary, (cid, r.summary)
        assert "items are not objects" in r.summary


def test_runbook_commands_use_the_deployments_found_by_what_they_run(run, cluster, make_profile):
    """Before: `deploy/studio-studio`, `-l tier=frontend`, `-c app` whatever the cluster called them."""
    from studiodoctor.symptoms import load_catalogue, render_command, template_values

    state = K.studio_state(hostnames=(HOST,), frontend=1, workers=1)
    ns = state["namespaces"]["studio"]
    rename = {"master-studio": "web", "master-studio-workers": "jobs"}
    for d in ns["deployments"]:
        d["metadata"]["name"] = rename[d["metadata"]["name"]]
        tier = d["spec"]["selector"]["matchLabels"].pop("tier")
        d["spec"]["selector"]["matchLabels"] = {"app.kubernetes.io/component": tier}
        for c in d["spec"]["template"]["spec"]["containers"]:
            c["name"] = {"app": "django", "nginx-proxy": "proxy", "worker": "celery"}[c["name"]]
    cluster.write_state(state)
    res = run()
    roles = res[kc.DEPLOYMENTS].evidence["roles"]
    assert roles["app"] == {"deployment": "web", "selector": "app.kubernetes.io/component=frontend",
                            "container": "django", "nginx_container": "proxy"}
    assert roles["workers"]["deployment"] == "jobs"
    values = template_values(make_profile({"kubernetes": {"namespace": "studio"}}), list(res.values()))
    texts = [render_command(c, values).text for layer in ("nginx", "celery", "app")
             for c in load_catalogue().layer_commands(layer)]
    assert any("exec deploy/web -c proxy -- nginx -T" in t for t in texts)
    assert any("logs -l app.kubernetes.io/component=frontend -c django" in t for t in texts)
    assert any("exec deploy/jobs -- celery" in t for t in texts)
    assert not any("tier=" in t or "studio-studio" in t for t in texts)
