"""The app, nginx and trace layers without app.url / nginx.url: every Ready frontend pod one by one through the
Kubernetes API stand-in's pod proxy, each pod a real gunicorn (the Studio stand-in app) behind a real nginx
configured like Studio's, the stand-in's pod network leading each pod's ports to its own processes."""

from __future__ import annotations

import json

import pytest

from studio_stack import BUCKET, seeded  # noqa: F401  (fixture)
from studiodoctor import engine
from studiodoctor.lab.servers.studio_app import StudioApp
from studiodoctor.lab.servers.studio_nginx import StudioNginx
from studiodoctor.lab.standins import kubernetes as K
from studiodoctor.lab.standins.kubernetes import KubeAPIServer
from studiodoctor.model import Status

PODS = 3
TOKEN = "pod-reach-token-9c1d"


@pytest.fixture(scope="module")
def cluster(seeded, tmp_path_factory):  # noqa: F811
    """Three frontend pods, each its own gunicorn and nginx; the stand-in's network leads to them."""
    pg, gcs = seeded
    root = tmp_path_factory.mktemp("pods")
    root.chmod(0o755)
    apps = [StudioApp(root, dsn=pg.dsn(), api_token="t", workers=1, threads=8, name=f"studio-app-{i}")
            for i in range(PODS)]
    nginxes = [StudioNginx(root, app_port=a.port, gcs_url=gcs.url, bucket=BUCKET, name=f"studio-nginx-{i}")
               for i, a in enumerate(apps)]
    kube = KubeAPIServer(root)
    started = []
    try:
        for server in [*apps, *nginxes]:
            started.append(server.start())
        state = K.studio_state(frontend=PODS)
        state["token"] = TOKEN
        kube.start(state=state)
        started.append(kube)
        kube.connect_pods("frontend", {"app": apps, "nginx-proxy": nginxes})
        kube.apps, kube.nginxes = apps, nginxes
        yield kube
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture
def api(cluster):
    """The cluster healthy again: no fault, no RBAC denial, every app without its fault."""
    state = cluster.read_state()
    state.update(faults=[], deny=[])
    cluster.write_state(state)
    for app in cluster.apps:
        if app.faults:
            app.clear_faults()
        if not app.alive():
            app.start()
    cluster.await_pods(True)  # the stand-in's kubelet brings a pod back at its first passing probe
    cluster.reset_counts()
    return cluster


def _run(make_profile, kube, layers=("app", "nginx", "trace"), timeout=5, **sections):
    kubernetes = {"api_url": kube.url, "namespace": "studio", "token": TOKEN, **sections.pop("kubernetes", {})}
    sections.setdefault("app", {"api_token": "t"})
    profile = make_profile({"kubernetes": kubernetes, "public_urls": [], **sections}, timeout=timeout)
    report = engine.check(profile, layers=list(layers))
    return report, {r.id: r for r in report.results}


def _pod_names(kube) -> list[str]:
    pods = kube.read_state()["namespaces"]["studio"]["pods"]
    return sorted(p["metadata"]["name"] for p in pods if p["metadata"]["labels"].get("tier") == "frontend")


def test_every_ready_pod_is_probed_through_the_api_server(api, make_profile):
    _, res = _run(make_profile, api)
    for cid in ("app.stealthz", "app.healthz", "app.login_page", "nginx.reachable", "nginx.app_proxy",
                "nginx.headers"):
        assert res[cid].status is Status.OK, (cid, res[cid].summary)
        assert res[cid].summary.startswith(f"{PODS} of {PODS} pods: "), res[cid].summary
        assert sorted(res[cid].evidence["pods"]) == _pod_names(api)
    assert res["trace.hops"].status is Status.OK and "3 pods through the API server" in res["trace.hops"].summary
    # the prober token cannot ride through the API server: said, not failed
    assert res["app.probers"].status is Status.SKIP and "Authorization" in res["app.probers"].summary
    # only reads went through the API server's proxy
    seen = {(m, p.split("/proxy")[0].rsplit("/", 1)[-1]) for m, p in api.methods().read() if "/proxy" in p}
    assert seen and {m for m, _ in seen} <= {"GET", "HEAD"}
    assert {pod.split(":")[0] for _, pod in seen} == set(_pod_names(api))


def test_one_pod_of_three_answering_500_is_a_fail_naming_it(api, make_profile):
    api.apps[1].set_fault(pages_error=True)
    report, res = _run(make_profile, api, layers=("app",))
    bad = api.read_state()["network"]  # which pod leads to app 1: the stand-in's network says, not the test
    pod_ip = next(k.split(":")[0] for k, v in bad.items() if v.endswith(f":{api.apps[1].port}"))
    name = next(p["metadata"]["name"] for p in api.read_state()["namespaces"]["studio"]["pods"]
                if p["status"].get("podIP") == pod_ip)
    login = res["app.login_page"]
    assert login.status is Status.FAIL
    assert login.summary.startswith(f"1 of {PODS} pods: /en/accounts/ answered 500 ({name})"), login.summary
    assert login.summary.endswith("2 ok")
    assert any(f"logs {name}" in c.text for c in login.commands)
    assert res["app.healthz"].status is Status.OK  # the pod stays Ready: its /healthz passes
    assert report.exit_code == 2


def test_the_profiles_url_keeps_priority(api, make_profile):
    api.apps[2].set_fault(pages_error=True)
    _, res = _run(make_profile, api, layers=("app",), app={"url": api.apps[0].url})
    assert res["app.login_page"].status is Status.OK and "pods" not in res["app.login_page"].evidence
    assert not [p for _, p in api.methods().read() if "/proxy" in p and "00000" not in p and "/app/" in p]


def test_no_pod_ready_probes_the_not_ready_ones_and_says_so(api, make_profile):
    for app in api.apps:
        app.stop()
    api.await_pods(False)  # out after failureThreshold (3) failed probes each, as a kubelet takes them out
    _, res = _run(make_profile, api, layers=("app",))
    stealthz = res["app.stealthz"]
    assert stealthz.status is Status.FAIL, stealthz.summary
    assert stealthz.summary.startswith(f"every pod ({PODS}): ") or stealthz.summary.startswith(f"{PODS} of {PODS}")
    assert "error trying to reach service" in json.dumps(stealthz.evidence)
    assert stealthz.evidence["note"] == "no pod is Ready: these are the not-Ready ones"


def test_a_denied_pod_proxy_is_an_error_naming_the_grant_never_a_fail(api, make_profile):
    state = api.read_state()
    state["deny"] = [{"verb": "get", "resource": "pods/proxy", "namespace": "studio"}]
    api.write_state(state)
    report, res = _run(make_profile, api, layers=("app", "nginx"))
    for cid in ("app.stealthz", "app.healthz", "nginx.reachable"):
        assert res[cid].status is Status.ERROR, (cid, res[cid].summary)
        assert 'resources: ["pods/proxy"]' in res[cid].summary and res[cid].reason == "forbidden"
    assert report.exit_code == 3  # could not look: unknown, not "the app is broken"


def test_api_server_down_is_not_the_apps_failure(api, make_profile):
    state = api.read_state()
    state["faults"] = ["api-down"]
    api.write_state(state)
    report, res = _run(make_profile, api, layers=("app",))
    assert {res[c].status for c in ("app.stealthz", "app.healthz", "app.login_page")} == {Status.ERROR}
    assert "cannot find the frontend Deployment" in res["app.stealthz"].summary
    assert report.exit_code == 3


def test_without_a_kubernetes_api_the_layers_skip_saying_both_ways(make_profile):
    profile = make_profile({"kubernetes": {"kubeconfig": "/nonexistent/kubeconfig"}, "public_urls": []})
    res = {r.id: r for r in engine.check(profile, layers=["app", "nginx"]).results}
    assert res["app.stealthz"].status is Status.SKIP
    assert res["app.stealthz"].summary.startswith("app.url is not set and no Kubernetes API")


def test_the_kubernetes_token_never_reaches_an_output(api, make_profile):
    """Not even before redaction: nothing of the proxy path puts our credentials into a result."""
    from studiodoctor.render import render
    from studiodoctor.secrets import Redactor

    api.apps[1].set_fault(pages_error=True)
    report, _ = _run(make_profile, api, layers=("app", "nginx", "trace"))
    data = report.to_dict(Redactor())
    for fmt in ("json", "table", "markdown"):
        assert TOKEN not in render(data, fmt), fmt


def test_a_slow_app_is_judged_against_the_timeout_nginx_is_seen_to_keep(api, make_profile):
    """No nginx.proxy_read_timeout in a laptop's profile: the app's 3 s answers are judged against what the
    same pod's nginx does with them (504 after its 2 s), not against Studio's 100 s."""
    for app, nginx in zip(api.apps, api.nginxes):
        app.set_fault(slow_s=3)
        nginx.set_timeout(2)
    api.await_pods(False)  # the slow app fails every probe: the pods leave the Service (the check asks them all)
    try:
        _, res = _run(make_profile, api, layers=("app",), timeout=12)
    finally:
        for nginx in api.nginxes:
            nginx.set_timeout(100)
    stealthz = res["app.stealthz"]
    assert stealthz.status is Status.FAIL, stealthz.summary
    assert "seen: nginx answered 504" in stealthz.summary
    assert stealthz.evidence["nginx_gave_up_after_s"] >= 1.9  # nginx cannot give up before its 2 s


def test_pods_not_ready_because_the_app_is_slower_than_their_probe_name_the_app(api, make_profile):
    """The app takes 2.5 s: only a warn against the limits a laptop knows (nginx keeps its 100 s here, so no 504
    is seen), but the pods' readiness probe (GET /healthz, timeoutSeconds 1) gives up first and the API server
    says no pod is Ready. The slow app takes the pods out of the Service: the app is named, whatever the race
    between the app's verdict and the pods' readiness, and the kubernetes step carries the link's evidence."""
    for app in api.apps:
        app.set_fault(slow_s=2.5)
    api.await_pods(False)  # three probes in a row each past the 1 s timeout: out of the Service
    kubernetes = {"api_url": api.url, "namespace": "studio", "token": TOKEN}
    profile = make_profile({"kubernetes": kubernetes, "public_urls": [], "app": {"api_token": "t"}}, timeout=15)
    # 502's walk from the cluster to the app (no Traefik, PostgreSQL or Redis behind this stand-in's pods)
    profile.symptoms = {"pods-502": {"steps": [{"layer": "kubernetes", "why": "pods Ready?"},
                                               {"layer": "app", "why": "gunicorn answers?"}]}}
    report = engine.diagnose(profile, "pods-502")
    res = {r.id: r for r in report.results}
    ready, healthz = res["kubernetes.pods_ready"], res["app.healthz"]
    assert ready.status is Status.FAIL, ready.summary
    assert healthz.status in (Status.WARN, Status.FAIL), healthz.summary
    assert report.likely_cause and report.likely_cause["layer"] == "app", (report.likely_cause, ready.summary,
                                                                           healthz.summary)
    kube = next(s for s in report.runbook if s["layer"] == "kubernetes")
    link = next((e for e in kube["explained_by"] if e["check"] == "kubernetes.pods_ready"
                 and e["rule"] == "app-slower-than-readiness-probe"), None)
    assert link is not None, (kube["explained_by"], healthz.summary)
    assert link["evidence"]["probe"] == "GET /healthz on :8081" and link["evidence"]["probe_timeout_s"] == 1.0
    assert link["evidence"]["app_latency_s"] >= 1.0, link
    assert link["evidence"]["pods_not_ready"] == PODS, link
