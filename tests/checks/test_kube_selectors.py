"""The API stand-in's label and field selectors, parsed as the real API server parses them, driven with the
real ``kubernetes`` client; and kubernetes.ingress_pods asking by the controllers' label, not for every pod."""

from __future__ import annotations

import pytest

from kube_standin import *  # noqa: F401,F403  (fixtures: kube, cluster, run)
from kube_standin import HOST
from checks import kubernetes as kc
from checks.kubernetes.ingress import controller_selector
from studiodoctor.lab.standins import kubernetes as K
from studiodoctor.lab.standins.kubernetes.selectors import (SelectorError, fields_match, labels_match, parse_fields,
                                                            parse_labels)
from studiodoctor.model import Status

LABELS = {"app": "studio", "tier": "frontend", "env": "prod", "replicas": "4", "app.kubernetes.io/name": "traefik"}


@pytest.mark.parametrize("selector, expected", [
    ("", True),
    ("app=studio", True), ("app==studio", True), ("app = studio", True), ("app!=studio", False),
    ("tier!=worker", True), ("missing!=x", True), ("missing=x", False),
    ("app, tier", True), ("!missing", True), ("!app", False), ("missing", False),
    ("env in (prod,staging)", True), ("env in (staging)", False), ("env notin (staging)", True),
    ("missing notin (a)", True), ("missing in (a)", False),
    ("app.kubernetes.io/name in (ingress-nginx,traefik)", True),
    ("app.kubernetes.io/name in (ingress-nginx)", False),
    ("x in (foo,,baz),app,tier notin ()", False),   # the grammar's own example: x is missing
    ("replicas>3", True), ("replicas<3", False), ("app>3", False),
    ("env in (in)", False), ("env in (notin,prod)", True),   # keywords are values inside a value list
    ("app=studio,tier=frontend,env notin (dev)", True),
])
def test_label_selectors_match_as_the_api_server_matches(selector, expected):
    assert labels_match(parse_labels(selector), LABELS) is expected


@pytest.mark.parametrize("selector, message", [
    ("app in studio", "unable to parse requirement: found 'studio' expected: '('"),
    ("app in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'"),
    ("app=a=b", "found '=', expected: ',' or 'end of string'"),
    ("app studio", "unable to parse requirement: found 'studio', expected: in, notin, =, ==, !=, gt, lt"),
    (",app", "found ',', expected: !, identifier, or 'end of string'"),
    ("app,", "found '', expected: identifier after ','"),
    ("app==", ""),   # an empty value is a value
    ("!a=b", "found '=', expected: ',' or 'end of string'"),   # "!key" ends its requirement
    ("bad key!=x", "found 'key', expected: in, notin, =, ==, !=, gt, lt"),
    ("-app=x", 'unable to parse requirement: <nil>: Invalid value: "-app": name part must consist of'),
    ("Example.com/app=x", 'Invalid value: "Example.com/app": prefix part a lowercase RFC 1123 subdomain'),
    ("app=" + "v" * 64, "must be no more than 63 characters"),
    ("app=bad_", 'values[0][app]: Invalid value: "bad_": a valid label must be an empty string'),
    ("n>x", "for 'Gt', 'Lt' operators, the value must be an integer"),
    ("app in ()", ""),
])
def test_label_selector_errors_carry_the_api_servers_message(selector, message):
    if not message:
        parse_labels(selector)
        return
    with pytest.raises(SelectorError) as exc:
        parse_labels(selector)
    assert message in str(exc.value)


def test_field_selectors_split_escape_and_refuse_unsupported_fields():
    pod = {"metadata": {"name": "a,b", "namespace": "studio"}, "spec": {"nodeName": "n1", "hostNetwork": False},
           "status": {"phase": "Running"}}
    assert fields_match(parse_fields(r"metadata.name=a\,b,status.phase=Running", "pods"), pod, "pods")
    assert fields_match(parse_fields("spec.hostNetwork=false,status.phase!=Pending", "pods"), pod, "pods")
    assert not fields_match(parse_fields("status.phase==Pending", "pods"), pod, "pods")
    event = {"type": "Warning", "source": {"component": "kubelet"}, "involvedObject": {"kind": "Pod"}}
    assert fields_match(parse_fields("type=Warning,source=kubelet,involvedObject.kind=Pod", "events"), event, "events")
    with pytest.raises(SelectorError, match="field label not supported: spec.containers"):
        parse_fields("spec.containers=x", "pods")
    with pytest.raises(SelectorError, match="can't understand 'status.phase'"):
        parse_fields("status.phase", "pods")
    with pytest.raises(SelectorError, match="invalid escape sequence"):
        parse_fields(r"metadata.name=a\b", "pods")
    with pytest.raises(SelectorError, match="unescaped character in value"):
        parse_fields("metadata.name=a=b", "pods")


def test_the_real_client_lists_by_label_and_field_selectors_and_reads_the_400(cluster):
    """The official ``kubernetes`` client against the stand-in: set-based and equality selectors filter the
    cluster-wide list; a selector the API server refuses comes back as its 400 BadRequest Status."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    cluster.write_state(K.studio_state(hostnames=(HOST,), ingress_class_name="nginx"))
    config = client.Configuration()
    config.host = cluster.url
    with client.ApiClient(config) as api_client:
        core = client.CoreV1Api(api_client)
        every = core.list_pod_for_all_namespaces(_request_timeout=5).items
        controllers = core.list_pod_for_all_namespaces(label_selector=controller_selector(), _request_timeout=5).items
        assert controllers and len(controllers) < len(every)
        assert {p.metadata.labels["app.kubernetes.io/name"] for p in controllers} <= {"ingress-nginx", "traefik"}
        nginx = core.list_pod_for_all_namespaces(
            label_selector="app.kubernetes.io/name=ingress-nginx,app.kubernetes.io/component", _request_timeout=5).items
        assert [p.metadata.namespace for p in nginx] == ["ingress-nginx"]
        running = core.list_namespaced_pod("studio", field_selector="status.phase=Running", _request_timeout=5).items
        assert running and all(p.status.phase == "Running" for p in running)
        with pytest.raises(ApiException) as exc:
            core.list_pod_for_all_namespaces(label_selector="app in studio", _request_timeout=5)
        assert exc.value.status == 400 and "unable to parse requirement" in exc.value.body, exc.value.body
        with pytest.raises(ApiException) as exc:
            core.list_namespaced_pod("studio", field_selector="spec.containers=x", _request_timeout=5)
        assert exc.value.status == 400 and "field label not supported" in exc.value.body, exc.value.body


def test_ingress_pods_asks_by_the_controllers_label_not_for_every_pod(run, cluster):
    """One cluster-wide list by ``app.kubernetes.io/name``: its answer holds the controller's pods only."""
    cluster.write_state(K.studio_state(hostnames=(HOST,), ingress_class_name="nginx"))
    pods = run()[kc.INGRESS_PODS]
    assert pods.status is Status.OK, pods.summary
    row = pods.evidence["controllers"]["ingress-nginx"]
    assert row["namespaces"] == ["ingress-nginx"] and row["looked"] == [
        f"all namespaces (labelled {controller_selector()})"], row
    assert cluster.request_counts().get("/api/v1/pods") == 1, cluster.request_counts()


def test_a_controller_without_its_charts_labels_is_still_found_by_what_it_runs(run, cluster):
    """No pod carries the label: then every pod is looked at, and the controller found by its image."""
    state = K.studio_state(hostnames=(HOST,), ingress_class_name="nginx")
    for space in state["namespaces"].values():
        for pod in space.get("pods", []):
            pod["metadata"]["labels"].pop("app.kubernetes.io/name", None)
    cluster.write_state(state)
    pods = run()[kc.INGRESS_PODS]
    assert pods.status is Status.OK, pods.summary
    row = pods.evidence["controllers"]["ingress-nginx"]
    assert row["namespaces"] == ["ingress-nginx"] and row["looked"][-1] == "all namespaces (every pod)", row
    assert cluster.request_counts().get("/api/v1/pods") == 2, cluster.request_counts()
