"""kubernetes.ingress_controller and kubernetes.ingress_pods against the API stand-in."""

from __future__ import annotations

from kube_standin import *  # noqa: F401,F403  (fixtures: kube, cluster, run)
from kube_standin import HOST
from checks import kubernetes as kc
from studiodoctor.lab.standins import kubernetes as K
from studiodoctor.model import Reason, Status


def test_ingress_nginx_detected_and_unrouted_host_warns(run, cluster):
    cluster.write_state(K.studio_state(hostnames=(HOST,), ingress_class_name="nginx"))
    res = run()
    assert res[kc.INGRESS_CONTROLLER].evidence["controllers"] == ["ingress-nginx"]
    res = run(**{"public_urls": ["https://other.localtest"]})
    ing = res[kc.INGRESS_CONTROLLER]
    assert ing.status is Status.WARN and "other.localtest" in ing.summary


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
