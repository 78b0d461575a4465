"""deploy/: every manifest reads as the Kubernetes API's own models, the RBAC is exactly what the checks
declare, the alert rules name our metrics, and the image builds where Docker can."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from studiodoctor.preflight import rbac
from studiodoctor.registry import default_registry

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))


def documents():
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path.name, doc


def model_of(doc: dict):
    """Deserialize with the kubernetes client's models (V1Role, V1CronJob, ...)."""
    import inspect

    from kubernetes.client import ApiClient

    class Response:  # the client before v31 reads response.data
        data = json.dumps(doc)

    kind = f"{doc['apiVersion'].split('/')[-1].capitalize()}{doc['kind']}"
    if "content_type" in inspect.signature(ApiClient.deserialize).parameters:
        return ApiClient().deserialize(json.dumps(doc), kind, "application/json")
    return ApiClient().deserialize(Response(), kind)


def _strip(value):
    """Drop empty values: what the models leave out when they serialize."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def test_every_manifest_is_a_valid_kubernetes_object_with_no_unknown_field():
    from kubernetes.client import ApiClient

    kinds = set()
    for name, doc in documents():
        obj = model_of(doc)
        back = ApiClient().sanitize_for_serialization(obj)
        assert _strip(back) == _strip(doc), f"{name}: {doc['kind']} has fields the API does not know"
        kinds.add(doc["kind"])
    assert {"CronJob", "Deployment", "Service", "ServiceAccount", "Role", "RoleBinding", "ClusterRole",
            "ClusterRoleBinding", "ConfigMap", "PersistentVolumeClaim"} <= kinds


def test_pods_run_as_the_generated_service_account_and_not_as_root():
    for name, doc in documents():
        if doc["kind"] in ("CronJob", "Deployment"):
            spec = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"] if doc["kind"] == "CronJob" \
                else doc["spec"]["template"]["spec"]
            assert spec["serviceAccountName"] == rbac.NAME, name
            assert spec["securityContext"]["runAsNonRoot"] is True, name
            assert all(c["securityContext"]["allowPrivilegeEscalation"] is False for c in spec["containers"])


def test_the_doctors_service_carries_the_label_a_laptop_finds_it_by():
    from studiodoctor.lab.standins.kubernetes.doctor import SERVICE_LABELS
    from studiodoctor.vantage import DOCTOR_SELECTOR

    key, value = DOCTOR_SELECTOR.split("=")
    services = [doc for _, doc in documents() if doc["kind"] == "Service"]
    doctors = [s for s in services if s["metadata"].get("labels", {}).get(key) == value]
    assert [s["metadata"]["name"] for s in doctors] == ["studiodoctor"]
    serve = next(doc for _, doc in documents() if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "studiodoctor")
    assert doctors[0]["spec"]["selector"] == serve["spec"]["selector"]["matchLabels"]
    assert SERVICE_LABELS == doctors[0]["metadata"]["labels"]       # the lab's stand-in lists it the same way


def test_the_committed_rbac_is_what_the_generator_writes_today():
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate_rbac", DEPLOY / "generate_rbac.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (DEPLOY / "kubernetes" / "rbac.yaml").read_text() == gen.generate(), \
        "deploy/kubernetes/rbac.yaml is stale: run .venv/bin/python deploy/generate_rbac.py"


def test_the_role_grants_exactly_what_the_checks_declare():
    registry = default_registry.load_plugins()
    needed = set(rbac.needed_grants(registry, "studio", "kube-system"))
    granted = rbac.granted([doc for _, doc in documents()])
    assert needed - granted == set(), "a check needs a verb the Role lacks"
    assert granted - needed == set(), "the Role grants what no check needs"
    assert {g.verb for g in granted} <= {"list", "get", "create"}  # reads, and only what is listed or proxied
    # create only to open a port-forward (kubectl port-forward's grant): to Redis/the Cloud SQL proxy in
    # Studio's namespace and Traefik's API in its own; nothing else is ever created
    assert {g for g in granted if g.verb == "create"} == {rbac.Grant("studio", "", "pods/portforward", "create"),
                                                         rbac.Grant("kube-system", "", "pods/portforward", "create")}
    # the doctor's Service is found by its label: the Role lets us list services where it is looked for
    assert rbac.Grant("studio", "", "services", "list") in granted
    # get only on the API server's proxy: pods/proxy in Studio's namespace, services/proxy on the doctor's
    # Service alone (resourceNames), nothing else
    assert {g for g in granted if g.verb == "get"} == {rbac.Grant("studio", "", "pods/proxy", "get"),
                                                      rbac.Grant("studio", "", "services/proxy", "get", rbac.NAME)}


def test_a_new_kubernetes_permission_cannot_be_forgotten(monkeypatch):
    from studiodoctor.model import ok
    from studiodoctor.registry import Registry

    reg = Registry()
    reg.check("kubernetes.secrets_peek", title="x", permissions=("list secrets",))(lambda ctx: ok(""))
    monkeypatch.setattr(reg.checks["kubernetes.secrets_peek"].func, "__module__", "checks.kubernetes.pods")
    with pytest.raises(rbac.RbacError, match="cannot grant 'list secrets'"):
        rbac.needed_grants(reg, "studio", "kube-system")


def test_the_kubernetes_permissions_check_asks_for_nothing_the_role_lacks(make_profile):
    """One source of truth: what `kubernetes.permissions` asks the API server about is granted."""
    from checks.kubernetes import access
    from studiodoctor.backends import kubernetes as kube
    from studiodoctor.context import CheckContext, Shared

    registry = default_registry.load_plugins()
    prof = make_profile({"kubernetes": {"namespace": "studio", "traefik_namespace": "kube-system"}})
    ctx = CheckContext(registry.get(access.PERMISSIONS), prof, 0, Shared())
    granted = rbac.granted([doc for _, doc in documents()])
    for resource, ns, _required in access._needed_permissions(ctx):
        group, name, cluster, _ = kube.RESOURCES[resource]
        wide = cluster or ns == kube.ALL_NAMESPACES
        assert rbac.Grant("" if wide else ns, group, name, "list") in granted, (resource, ns)


def test_the_configmap_holds_a_valid_config(tmp_path):
    from studiodoctor.config import load_profile

    (config,) = [doc for _, doc in documents() if doc["kind"] == "ConfigMap"]
    path = tmp_path / "config.toml"
    path.write_text(config["data"]["config.toml"])
    prof = load_profile(None, str(path), env={})
    assert prof.name == "production" and prof.section("kubernetes")["namespace"] == "studio"


def test_alert_rules_use_only_metrics_we_export(make_profile):
    from studiodoctor import engine
    from studiodoctor.registry import Registry
    from studiodoctor.render import render
    from studiodoctor.secrets import Redactor

    reg = Registry()
    reg.check("demo.one", title="x")(lambda ctx: __import__("studiodoctor.model").model.ok("fine"))
    exported = set(re.findall(r"^# TYPE (\w+)", render(engine.check(make_profile(), registry=reg).to_dict(Redactor()),
                                                         "prometheus"), re.M))
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert exprs
    for expr in exprs:
        used = set(re.findall(r"\bstudiodoctor_\w+", expr))
        assert used and used <= exported | {"studiodoctor_check_value"}, expr


def _docker_ready() -> str:
    if not shutil.which("docker"):
        return "no docker client on this machine"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if info.returncode != 0:
        return "the Docker daemon is not running here"
    base = subprocess.run(["docker", "image", "inspect", "python:3.12-slim"], capture_output=True)
    if base.returncode != 0:
        return "the base image python:3.12-slim is not available locally (no registry to pull it from)"
    return ""


def test_the_image_builds_runs_as_non_root_and_imports_no_sdk_at_start():
    why = _docker_ready()
    if why:
        pytest.skip(why)
    tag = "studiodoctor-test:latest"
    subprocess.run(["docker", "build", "-q", "-f", str(DEPLOY / "Dockerfile"), "-t", tag, str(ROOT)], check=True,
                   timeout=900)
    user = subprocess.run(["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"], capture_output=True, text=True)
    assert user.stdout.strip() == "10001"
    code = ("import sys; from studiodoctor.cli import main; main(['list']); "
            "print('SDK', [m for m in ('kubernetes', 'google.cloud.storage', 'celery') if m in sys.modules])")
    out = subprocess.run(["docker", "run", "--rm", "--entrypoint", "python", tag, "-c", code],
                         capture_output=True, text=True).stdout
    assert "SDK []" in out
