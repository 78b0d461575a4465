"""kubernetes layer (workloads, pods, access, events, memory) against the API stand-in (a real process
serving the API's JSON shapes), read by the doctor's own client (studiodoctor.backends.kubernetes)."""

from __future__ import annotations

import pytest

from kube_standin import *  # noqa: F401,F403  (fixtures: kube, cluster, run)
from kube_standin import HOST
from checks import kubernetes as kc
from studiodoctor.lab.standins import kubernetes as K
from studiodoctor.model import Reason, Status


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


def test_one_replica_of_three_failing_its_readiness_probe_fails_at_once(run):
    """A running container that keeps failing its readiness probe is broken now, even one pod of three;
    the deployment is only degraded (2 of 3 available)."""
    res = run("replica-unready")
    ready = res[kc.PODS_READY]
    assert ready.status is Status.FAIL, ready.summary
    assert ready.summary.startswith("readiness probe failing on 1 running pod(s): master-studio-7d9f8c6b5d-00002")
    assert "master-studio 2/3 ready" in ready.summary
    assert ready.evidence["not_ready"][0]["probe_failing"] == ["app"]
    assert res[kc.DEPLOYMENTS].status is Status.WARN


def test_a_container_still_inside_its_probes_budget_only_warns():
    """Started 3 s ago with Studio's probe (5 s delay + 2 s x 3): not Ready yet is warming up, not failing."""
    from datetime import datetime, timedelta, timezone

    from studiodoctor.backends.kube_pods import readiness_failed

    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    pod = {"spec": {"containers": [{"name": "app", "readinessProbe": {"initialDelaySeconds": 5, "periodSeconds": 2,
                                                                      "failureThreshold": 3}}]}}

    def status(ago):
        started = (now - timedelta(seconds=ago)).isoformat().replace("+00:00", "Z")
        return {"name": "app", "ready": False, "started": True, "state": {"running": {"startedAt": started}}}

    assert not readiness_failed(pod, status(3), now)
    assert readiness_failed(pod, status(11), now)
    assert not readiness_failed({"spec": {"containers": [{"name": "app"}]}}, status(3600), now)   # no probe


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
    from studiodoctor.diagnosis.symptoms import load_catalogue, render_command, template_values

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


def test_our_own_permissions_never_cause_a_symptom():
    """What our identity may read is the doctor's concern: a permissions review not answered in time (a loaded
    API server) is listed beside a diagnosis, never named its cause (from lab-laptop it named `kubernetes` for
    app-slow-tail and edge-524 while every list of the run was answered)."""
    from studiodoctor import engine
    from studiodoctor.diagnosis.symptoms import load_catalogue

    chk = engine.default_registry.load_plugins().get(kc.PERMISSIONS)
    catalogue = load_catalogue()
    causing = [n for n in catalogue.names() if catalogue.symptoms[n].can_be_caused_by(chk.id, chk.layer, chk.produces)]
    assert causing == []
