"""A Kubernetes API stand-in: a small threaded stdlib HTTP server serving the real API's JSON shapes.

No kube-apiserver can run here (see local-counterparts §5), so the lab and the tests serve pods,
deployments, events, ingresses, ingress classes, SelfSubjectAccessReview, ``/version/`` and
(optionally) the metrics API from a JSON *state file* that the server rereads on every request.
The real ``kubernetes`` client talks to it unchanged (``kubernetes.api_url``).

State file (``KubeAPIServer.state_file``)::

    {"namespaces": {"studio": {"pods": [...], "deployments": [...], "events": [...], "ingresses": [...]},
                    "kube-system": {...}},
     "ingressclasses": [...],
     "metrics": {"studio": [PodMetrics...]} | null,      # null: no metrics API (404)
     "deny": [{"verb": "list", "resource": "pods", "group": "", "namespace": "studio"}],
     "token": "",                                         # non-empty: Bearer token required (else 401)
     "user": "system:serviceaccount:studio:studiodoctor",
     "faults": ["crashloop", ...],                        # applied at read time, see FAULTS
     "config": {"namespace": "studio", "traefik_namespace": "kube-system"}}

Faults are applied when a request is served (timestamps relative to *now*), so a lab left running
still shows "restarted 2 minutes ago", and ``fix`` is removing the name from ``faults``.

Run as a process: ``python -m studiodoctor.lab.kube_api --port N --state FILE``.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from .launcher import Launcher, stop_pid, wait_for_port, write_json_atomic

DEFAULT_USER = "system:serviceaccount:studio:studiodoctor"
VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.4-gke.1256000",
           "gitCommit": "0c0b8a2b3c1e5b6a7e1f3f7a9d2d41b2e1c6a001", "gitTreeState": "clean",
           "buildDate": "2026-10-01T08:00:00Z", "goVersion": "go1.22.9 X:boringcrypto",
           "compiler": "gc", "platform": "linux/amd64"}


# -- time -----------------------------------------------------------------------------------------

def now() -> datetime:
    return datetime.now(timezone.utc)


def ts(when: datetime | None = None, ago: float = 0.0) -> str:
    """RFC 3339 as the API writes it; ``ago`` seconds before ``when`` (default now)."""
    return ((when or now()) - timedelta(seconds=ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _uid(name: str) -> str:
    import hashlib

    h = hashlib.sha1(name.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


# -- object builders ------------------------------------------------------------------------------

def container(name: str, image: str, *, command: list[str] | None = None, args: list[str] | None = None,
              port: int | None = None, readiness_path: str = "", readiness_port: int | None = None,
              mem_limit: str = "", mem_request: str = "", cpu_request: str = "", cpu_limit: str = "") -> dict:
    spec: dict[str, Any] = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent",
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File", "resources": {}}
    if command:
        spec["command"] = command
    if args:
        spec["args"] = args
    if port:
        spec["ports"] = [{"containerPort": port, "protocol": "TCP"}]
    if readiness_path:
        spec["readinessProbe"] = {"httpGet": {"path": readiness_path, "port": readiness_port or port,
                                              "scheme": "HTTP"},
                                  "initialDelaySeconds": 5, "periodSeconds": 2, "failureThreshold": 3,
                                  "successThreshold": 1, "timeoutSeconds": 1}
    limits = {k: v for k, v in (("memory", mem_limit), ("cpu", cpu_limit)) if v}
    requests = {k: v for k, v in (("memory", mem_request), ("cpu", cpu_request)) if v}
    if limits:
        spec["resources"]["limits"] = limits
    if requests:
        spec["resources"]["requests"] = requests
    return spec


def running_status(name: str, image: str, *, started_ago: float = 86400, restarts: int = 0,
                   ready: bool = True) -> dict:
    return {"name": name, "image": image, "imageID": f"docker-pullable://{image.split(':')[0]}@sha256:"
                                                      + _uid(image).replace("-", "") * 2,
            "containerID": f"containerd://{_uid(name + image).replace('-', '')}",
            "ready": ready, "started": True, "restartCount": restarts,
            "state": {"running": {"startedAt": ts(ago=started_ago)}}, "lastState": {}}


def pod(name: str, namespace: str, labels: dict, containers: list[dict], *, owner: str = "",
        phase: str = "Running", node: str = "gke-studio-pool-1-a1b2", created_ago: float = 86400,
        statuses: list[dict] | None = None, ready: bool | None = None) -> dict:
    """A Pod as ``GET /api/v1/namespaces/NS/pods`` lists it (spec, status, conditions)."""
    statuses = statuses if statuses is not None else [running_status(c["name"], c["image"])
                                                       for c in containers]
    all_ready = all(s.get("ready") for s in statuses) if ready is None else ready
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": _uid(namespace + name),
                            "resourceVersion": "1000", "creationTimestamp": ts(ago=created_ago),
                            "labels": dict(labels)}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner,
                                    "uid": _uid(owner), "controller": True, "blockOwnerDeletion": True}]
    started = ts(ago=created_ago - 5)
    cond = "True" if all_ready else "False"
    return {
        "metadata": meta,
        "spec": {"containers": containers, "nodeName": node, "restartPolicy": "Always",
                 "serviceAccountName": "default", "terminationGracePeriodSeconds": 30,
                 "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler"},
        "status": {
            "phase": phase, "hostIP": "10.128.0.12", "podIP": "10.8.1.23", "startTime": started,
            "qosClass": "Burstable",
            "conditions": [
                {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": started},
                {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                {"type": "Ready", "status": cond, "lastTransitionTime": started},
                {"type": "ContainersReady", "status": cond, "lastTransitionTime": started},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": ts(ago=created_ago)},
            ],
            "containerStatuses": statuses,
        },
    }


def frontend_pod(name: str, namespace: str = "studio", *, release: str = "master",
                 image: str = "learningequality/studio-app:v2026.11.20", owner: str = "") -> dict:
    """Studio's frontend pod: container ``app`` (gunicorn :8081, readiness /healthz on 8081) and the
    ``nginx-proxy`` sidecar (:8080, no probes), as the Helm chart defines them."""
    app = container("app", image, command=["gunicorn", "contentcuration.wsgi:application", "--timeout=4000",
                                           "--workers=2", "--bind=0.0.0.0:8081",
                                           "--pid=/tmp/contentcuration.pid"],
                    port=8081, readiness_path="/healthz", readiness_port=8081, mem_limit="2Gi",
                    mem_request="2Gi", cpu_request="500m")
    app["env"] = [{"name": "EMAIL_CREDENTIALS_POSTMARK_API_KEY",  # the chart's env; values stay in the Secret
                   "valueFrom": {"secretKeyRef": {"name": f"{release}-studio", "key": "postmark-api-key"}}},
                  {"name": "BRANCH_ENVIRONMENT", "value": release}]
    proxy = container("nginx-proxy", "learningequality/studio-nginx:v2026.11.20", port=8080,
                      mem_limit="512Mi", mem_request="256Mi", cpu_request="200m")
    labels = {"app": f"{release}-studio", "tier": "frontend", "pod-template-hash": "7d9f8c6b5d"}
    return pod(name, namespace, labels, [app, proxy], owner=owner or f"{release}-studio-7d9f8c6b5d")


def worker_pod(name: str, namespace: str = "studio", *, release: str = "master",
               image: str = "learningequality/studio-app:v2026.11.20", owner: str = "") -> dict:
    """A Celery worker pod (``celery -A contentcuration worker``), limits 8Gi, no probes."""
    worker = container("worker", image, command=["make", "prodceleryworkers"],
                       args=["celery", "-A", "contentcuration", "worker", "-l", "info", "--concurrency=3",
                             "--task-events"],
                       mem_limit="8Gi", mem_request="2Gi", cpu_request="500m", cpu_limit="2")
    labels = {"app": f"{release}-studio-workers", "tier": "workers", "pod-template-hash": "5c4b7f9d8e"}
    return pod(name, namespace, labels, [worker], owner=owner or f"{release}-studio-workers-5c4b7f9d8e")


def traefik_pod(name: str = "traefik-6f7d8b9c4-x2k9p", namespace: str = "kube-system",
                image: str = "traefik:v3.7.15") -> dict:
    """The multiplexing Traefik of ``kube-system`` (stable/traefik chart: label ``app=traefik``)."""
    c = container("traefik", image, args=["--entrypoints.websecure.address=:8443", "--api.insecure=false",
                                          "--providers.kubernetesingress"],
                  port=8443, readiness_path="/ping", readiness_port=9000, mem_limit="2Gi", mem_request="1Gi",
                  cpu_request="1", cpu_limit="2")
    labels = {"app": "traefik", "app.kubernetes.io/name": "traefik", "release": "traefik",
              "pod-template-hash": "6f7d8b9c4"}
    return pod(name, namespace, labels, [c], owner="traefik-6f7d8b9c4")


def ingress_nginx_pod(name: str = "ingress-nginx-controller-5c8d66c76d-7xq2m", namespace: str = "ingress-nginx",
                      image: str = "registry.k8s.io/ingress-nginx/controller:v1.12.1") -> dict:
    """The ingress-nginx controller (its Helm chart's labels and arguments)."""
    c = container("controller", image, args=["/nginx-ingress-controller", "--election-id=ingress-nginx-leader",
                                             "--controller-class=k8s.io/ingress-nginx", "--ingress-class=nginx"],
                  port=443, readiness_path="/healthz", readiness_port=10254, mem_limit="1Gi", mem_request="90Mi",
                  cpu_request="100m")
    labels = {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller",
              "app.kubernetes.io/instance": "ingress-nginx", "pod-template-hash": "5c8d66c76d"}
    return pod(name, namespace, labels, [c], owner="ingress-nginx-controller-5c8d66c76d")


def deployment(name: str, namespace: str, labels: dict, template_containers: list[dict], *, replicas: int,
               available: int | None = None, ready: int | None = None, updated: int | None = None,
               conditions: list[dict] | None = None, created_ago: float = 30 * 86400) -> dict:
    available = replicas if available is None else available
    ready = available if ready is None else ready
    updated = replicas if updated is None else updated
    if conditions is None:
        conditions = [
            {"type": "Available", "status": "True" if available >= replicas else "False",
             "reason": "MinimumReplicasAvailable" if available >= replicas else "MinimumReplicasUnavailable",
             "message": "Deployment has minimum availability." if available >= replicas
             else "Deployment does not have minimum availability.",
             "lastUpdateTime": ts(ago=3600), "lastTransitionTime": ts(ago=3600)},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
             "message": f'ReplicaSet "{name}-7d9f8c6b5d" has successfully progressed.',
             "lastUpdateTime": ts(ago=3600), "lastTransitionTime": ts(ago=30 * 86400)},
        ]
    status: dict[str, Any] = {"observedGeneration": 4, "replicas": replicas, "updatedReplicas": updated,
                              "readyReplicas": ready, "availableReplicas": available, "conditions": conditions}
    if replicas - available > 0:
        status["unavailableReplicas"] = replicas - available
    for key in ("readyReplicas", "availableReplicas"):
        if not status[key]:
            del status[key]  # the API omits zero counts
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": _uid(namespace + name), "generation": 4,
                     "resourceVersion": "2000", "creationTimestamp": ts(ago=created_ago), "labels": dict(labels)},
        "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)}, "progressDeadlineSeconds": 600,
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                 "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": template_containers}}},
        "status": status,
    }


def event(namespace: str, reason: str, message: str, *, kind: str = "Pod", name: str = "", type: str = "Warning",
          count: int = 1, last_ago: float = 60, first_ago: float | None = None,
          component: str = "kubelet") -> dict:
    first_ago = last_ago if first_ago is None else first_ago
    ev_name = f"{name or 'cluster'}.{_uid(reason + message + str(last_ago)).replace('-', '')[:16]}"
    return {"metadata": {"name": ev_name, "namespace": namespace, "uid": _uid(ev_name),
                         "resourceVersion": "3000", "creationTimestamp": ts(ago=first_ago)},
            "involvedObject": {"kind": kind, "namespace": namespace, "name": name, "apiVersion": "v1",
                               "uid": _uid(namespace + name)},
            "reason": reason, "message": message, "source": {"component": component},
            "firstTimestamp": ts(ago=first_ago), "lastTimestamp": ts(ago=last_ago), "count": count,
            "type": type, "eventTime": None, "reportingComponent": component, "reportingInstance": ""}


def ingress(name: str, namespace: str, hosts: list[str], *, class_name: str | None = "nginx",
            annotations: dict | None = None, service: str = "master-studio-app", port: int = 80,
            tls_secret: str = "") -> dict:
    rules = [{"host": h, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                                             "backend": {"service": {"name": service,
                                                                     "port": {"number": port}}}}]}}
             for h in hosts]
    spec: dict[str, Any] = {"rules": rules}
    if class_name:
        spec["ingressClassName"] = class_name
    if tls_secret:
        spec["tls"] = [{"hosts": list(hosts), "secretName": tls_secret}]
    return {"metadata": {"name": name, "namespace": namespace, "uid": _uid(namespace + name),
                         "resourceVersion": "4000", "creationTimestamp": ts(ago=90 * 86400),
                         "annotations": dict(annotations or {})},
            "spec": spec, "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}}


INGRESS_CONTROLLERS = {"traefik": "traefik.io/ingress-controller", "nginx": "k8s.io/ingress-nginx",
                       "gce": "k8s.io/ingress-gce"}


def ingress_class(name: str, controller: str | None = None, default: bool = False) -> dict:
    meta: dict[str, Any] = {"name": name, "uid": _uid(name), "resourceVersion": "5000",
                            "creationTimestamp": ts(ago=400 * 86400)}
    if default:
        meta["annotations"] = {"ingressclass.kubernetes.io/is-default-class": "true"}
    return {"metadata": meta, "spec": {"controller": controller or INGRESS_CONTROLLERS.get(name, name)}}


def pod_metrics(p: dict, usage_by_container: dict[str, str] | None = None) -> dict:
    """metrics.k8s.io/v1beta1 PodMetrics for pod ``p`` (usage defaults to 40% of the memory limit)."""
    containers = []
    for c in p["spec"]["containers"]:
        mem = (usage_by_container or {}).get(c["name"])
        if mem is None:
            limit = c.get("resources", {}).get("limits", {}).get("memory", "1Gi")
            mem = f"{int(parse_quantity(limit) * 0.4 / 2**20)}Mi"
        containers.append({"name": c["name"], "usage": {"cpu": "120m", "memory": mem}})
    meta = p["metadata"]
    return {"metadata": {"name": meta["name"], "namespace": meta["namespace"], "creationTimestamp": ts(),
                         "labels": meta.get("labels", {})},
            "timestamp": ts(ago=20), "window": "15s", "containers": containers}


_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "k": 10**3, "M": 10**6,
           "G": 10**9, "T": 10**12, "m": 1e-3}


def parse_quantity(q: str | int | float) -> float:
    """Kubernetes resource quantity -> number ("2Gi" -> 2147483648, "500m" -> 0.5)."""
    if isinstance(q, (int, float)):
        return float(q)
    q = str(q).strip()
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if q.endswith(suffix):
            return float(q[: -len(suffix)]) * _SUFFIX[suffix]
    return float(q)


def studio_state(namespace: str = "studio", *, hostnames: tuple[str, ...] = ("studio.localtest",),
                 release: str = "master", frontend: int = 3, workers: int = 2, ingress_class_name: str = "traefik",
                 traefik_namespace: str = "kube-system", metrics: bool = True, extra_pods: int = 0) -> dict:
    """A healthy Studio namespace: frontend and worker deployments with their pods, an Ingress for the
    hostnames, ingress classes, Traefik in ``traefik_namespace``, normal events, metrics."""
    fe_dep, wk_dep = f"{release}-studio", f"{release}-studio-workers"
    fe_pods = [frontend_pod(f"{fe_dep}-7d9f8c6b5d-{i:05x}", namespace, release=release) for i in range(frontend)]
    wk_pods = [worker_pod(f"{wk_dep}-5c4b7f9d8e-{i:05x}", namespace, release=release) for i in range(workers)]
    extra = [frontend_pod(f"{fe_dep}-7d9f8c6b5d-x{i:05x}", namespace, release=release) for i in range(extra_pods)]
    deployments = [
        deployment(fe_dep, namespace, {"app": fe_dep, "tier": "frontend"}, fe_pods[0]["spec"]["containers"]
                   if fe_pods else [container("app", "studio")], replicas=frontend + extra_pods),
        deployment(wk_dep, namespace, {"app": wk_dep, "tier": "workers"}, wk_pods[0]["spec"]["containers"]
                   if wk_pods else [container("worker", "studio")], replicas=workers),
    ]
    annotations = {"kubernetes.io/ingress.class": ingress_class_name} if ingress_class_name else {}
    ing = ingress(f"{release}-studio", namespace, list(hostnames), class_name=ingress_class_name or None,
                  annotations=annotations, service=f"{release}-studio-app")
    traefik = traefik_pod(namespace=traefik_namespace)
    ns_pods = fe_pods + extra + wk_pods
    state = {
        "user": DEFAULT_USER,
        "token": "",
        "deny": [],
        "faults": [],
        "config": {"namespace": namespace, "traefik_namespace": traefik_namespace, "release": release},
        "ingressclasses": [ingress_class("nginx"), ingress_class("traefik", default=True)],
        "namespaces": {
            namespace: {"pods": ns_pods, "deployments": deployments, "ingresses": [ing],
                        "events": [event(namespace, "Scheduled", f"Successfully assigned {namespace}/{p['metadata']['name']}",
                                         name=p["metadata"]["name"], type="Normal", last_ago=86400,
                                         component="default-scheduler") for p in ns_pods[:2]]},
            traefik_namespace: {"pods": [traefik],
                                "deployments": [deployment("traefik", traefik_namespace, {"app": "traefik"},
                                                           traefik["spec"]["containers"], replicas=1)],
                                "ingresses": [], "events": []},
        },
        "metrics": ({namespace: [pod_metrics(p) for p in ns_pods],
                     traefik_namespace: [pod_metrics(traefik)]} if metrics else None),
    }
    if ingress_class_name == "nginx":  # the controller that routes the Ingress runs too
        controller = ingress_nginx_pod()
        state["namespaces"]["ingress-nginx"] = {
            "pods": [controller], "ingresses": [], "events": [],
            "deployments": [deployment("ingress-nginx-controller", "ingress-nginx",
                                       {"app.kubernetes.io/name": "ingress-nginx"}, controller["spec"]["containers"],
                                       replicas=1)]}
    return state


def variant_state(variant, hostnames: tuple[str, ...] = (), frontend: int = 3, workers: int = 2) -> dict:
    """A healthy namespace shaped by a lab variant (:mod:`studiodoctor.lab.variants`): its namespace,
    Deployment names, labels and container names, its ingress controller (IngressClass, Ingress, the
    controller's pods in their own namespace) and, only when the variant has one, the metrics API."""
    v, ns = variant, variant.namespace
    hostnames = tuple(hostnames) or (v.hostname,)
    image = "registry.example.org/contentworkshop/app:2026.11.3"
    app = container(v.containers["app"], image, command=["gunicorn", "contentcuration.wsgi:application"],
                    port=8000, readiness_path="/healthz", readiness_port=8000, mem_limit="3Gi", mem_request="1Gi",
                    cpu_request="250m")
    app["env"] = [{"name": "POSTMARK_SERVER_TOKEN", "valueFrom": {"secretKeyRef": {"name": "cw-mail", "key": "token"}}}]
    proxy = container(v.containers["proxy"], "registry.example.org/contentworkshop/nginx:2026.11.3", port=8080,
                      mem_limit="256Mi", mem_request="64Mi")
    worker = container(v.containers["worker"], image, command=["celery", "-A", "contentcuration", "worker"],
                       mem_limit="6Gi", mem_request="2Gi")
    fe, wk = v.deployments["frontend"], v.deployments["workers"]
    fe_pods = [pod(f"{fe}-6c8d9f7b4-{i:05x}", ns, {**v.labels["frontend"], "pod-template-hash": "6c8d9f7b4"},
                   [app, proxy], owner=f"{fe}-6c8d9f7b4") for i in range(frontend)]
    wk_pods = [pod(f"{wk}-7f5c6d8e9-{i:05x}", ns, {**v.labels["workers"], "pod-template-hash": "7f5c6d8e9"},
                   [worker], owner=f"{wk}-7f5c6d8e9") for i in range(workers)]
    controller_name = "ingress-nginx-controller" if v.ingress == "ingress-nginx" else "traefik"
    ctl = container("controller", "registry.k8s.io/ingress-nginx/controller:v1.12.1"
                    if v.ingress == "ingress-nginx" else "traefik:v3.7.15", args=["/nginx-ingress-controller"],
                    port=443, readiness_path="/healthz", readiness_port=10254, mem_limit="1Gi", mem_request="512Mi")
    ctl_pod = pod(f"{controller_name}-5d6f7c8b9-q7x2m", v.ingress_namespace,
                  {**v.labels["ingress"], "pod-template-hash": "5d6f7c8b9"}, [ctl], owner=f"{controller_name}-5d6f7c8b9")
    class_name = "nginx" if v.ingress == "ingress-nginx" else "traefik"
    ing = ingress(fe, ns, list(hostnames), class_name=class_name, service=fe,
                  annotations={"nginx.ingress.kubernetes.io/proxy-body-size": "1000m"}
                  if v.ingress == "ingress-nginx" else {}, tls_secret=f"{fe}-tls")
    pods = fe_pods + wk_pods
    return {
        "user": DEFAULT_USER, "token": "", "deny": [], "faults": [],
        "config": {"namespace": ns, "traefik_namespace": v.ingress_namespace,
                   "labels": {tier: dict(lbl) for tier, lbl in v.labels.items()}, "containers": dict(v.containers)},
        "ingressclasses": [ingress_class(class_name, default=True)],
        "namespaces": {
            ns: {"pods": pods, "ingresses": [ing],
                 "deployments": [deployment(fe, ns, v.labels["frontend"], [app, proxy], replicas=frontend),
                                 deployment(wk, ns, v.labels["workers"], [worker], replicas=workers)],
                 "events": [event(ns, "Scheduled", f"Successfully assigned {ns}/{p['metadata']['name']}",
                                  name=p["metadata"]["name"], type="Normal", last_ago=86400,
                                  component="default-scheduler") for p in pods[:2]]},
            v.ingress_namespace: {"pods": [ctl_pod], "ingresses": [], "events": [],
                                  "deployments": [deployment(controller_name, v.ingress_namespace, v.labels["ingress"],
                                                             [ctl], replicas=1)]},
        },
        "metrics": ({ns: [pod_metrics(p) for p in pods], v.ingress_namespace: [pod_metrics(ctl_pod)]}
                    if v.metrics else None),
    }


# -- faults (applied at read time) ----------------------------------------------------------------

# which pods and deployments a fault touches: a label subset per tier (state["config"]["labels"])
DEFAULT_TIER_LABELS = {"frontend": {"tier": "frontend"}, "workers": {"tier": "workers"}, "ingress": {"app": "traefik"}}
DEFAULT_CONTAINERS = {"app": "app", "worker": "worker"}


def _tier_match(state: dict, obj: dict, tier: str) -> bool:
    want = {**DEFAULT_TIER_LABELS, **(state.get("config") or {}).get("labels", {})}[tier]
    labels = obj["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in want.items())


def _container(state: dict, role: str) -> str:
    return {**DEFAULT_CONTAINERS, **(state.get("config") or {}).get("containers", {})}[role]


def _pods(state: dict, ns: str, tier: str) -> list[dict]:
    return [p for p in state["namespaces"].get(ns, {}).get("pods", []) if _tier_match(state, p, tier)]


def _set_ready(p: dict, ready: bool) -> None:
    for cond in p["status"].get("conditions", []):
        if cond["type"] in ("Ready", "ContainersReady"):
            cond["status"] = "True" if ready else "False"
            cond["lastTransitionTime"] = ts(ago=240)
            if not ready:
                cond["reason"] = "ContainersNotReady"


def _deployment(state: dict, ns: str, tier: str) -> dict | None:
    for d in state["namespaces"].get(ns, {}).get("deployments", []):
        if _tier_match(state, d, tier):
            return d
    return None


def _degrade(d: dict | None, available: int, *, stuck: bool = False) -> None:
    if not d:
        return
    st = d["status"]
    st["availableReplicas"] = st["readyReplicas"] = max(0, available)
    st["unavailableReplicas"] = st["replicas"] - st["availableReplicas"]
    for key in ("readyReplicas", "availableReplicas"):
        if not st[key]:
            del st[key]
    for cond in st["conditions"]:
        if cond["type"] == "Available" and available < d["spec"]["replicas"]:
            cond.update(status="False", reason="MinimumReplicasUnavailable",
                        message="Deployment does not have minimum availability.", lastTransitionTime=ts(ago=600))
        if cond["type"] == "Progressing" and stuck:
            cond.update(status="False", reason="ProgressDeadlineExceeded",
                        message=f'ReplicaSet "{d["metadata"]["name"]}-7d9f8c6b5d" has timed out progressing.',
                        lastUpdateTime=ts(ago=120), lastTransitionTime=ts(ago=120))


def _crash(p: dict, cname: str, reason: str = "CrashLoopBackOff", *, restarts: int = 7, exit_code: int = 1,
           term_reason: str = "Error", finished_ago: float = 90, message: str = "") -> None:
    for s in p["status"]["containerStatuses"]:
        if s["name"] == cname:
            s["ready"] = False
            s["started"] = False
            s["restartCount"] = restarts
            msg = message or (f"back-off 5m0s restarting failed container={cname} pod={p['metadata']['name']}"
                              if reason == "CrashLoopBackOff" else
                              f'Back-off pulling image "{s["image"]}"')
            s["state"] = {"waiting": {"reason": reason, "message": msg}}
            if reason == "CrashLoopBackOff":
                s["lastState"] = {"terminated": {"exitCode": exit_code, "reason": term_reason,
                                                 "startedAt": ts(ago=finished_ago + 20),
                                                 "finishedAt": ts(ago=finished_ago),
                                                 "containerID": s["containerID"]}}
    _set_ready(p, False)


def fault_crashloop(state: dict, cfg: dict, tier: str = "frontend", role: str = "app") -> None:
    ns = cfg["namespace"]
    container_name = _container(state, role)
    pods = _pods(state, ns, tier)
    for p in pods:
        _crash(p, container_name)
    _degrade(_deployment(state, ns, tier), 0)
    for p in pods:
        state["namespaces"][ns]["events"].append(event(
            ns, "BackOff", f"Back-off restarting failed container {container_name} in pod {p['metadata']['name']}",
            name=p["metadata"]["name"], count=31, last_ago=30, first_ago=1500))


def fault_workers_crashloop(state: dict, cfg: dict) -> None:
    fault_crashloop(state, cfg, "workers", "worker")


def fault_oomkilled(state: dict, cfg: dict) -> None:
    ns = cfg["namespace"]
    p = _pods(state, ns, "frontend")[0]
    for s in p["status"]["containerStatuses"]:
        if s["name"] == _container(state, "app"):
            s["restartCount"] = 3
            s["state"] = {"running": {"startedAt": ts(ago=240)}}
            s["lastState"] = {"terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": ts(ago=3000),
                                             "finishedAt": ts(ago=250), "containerID": s["containerID"]}}


def fault_image_pull(state: dict, cfg: dict) -> None:
    ns = cfg["namespace"]
    p = _pods(state, ns, "frontend")[0]
    for s in p["status"]["containerStatuses"]:
        if s["name"] == _container(state, "app"):
            s["image"] = "learningequality/studio-app:v2026.11.99"
    _crash(p, _container(state, "app"), "ImagePullBackOff", restarts=0)
    p["status"]["containerStatuses"][0]["lastState"] = {}
    state["namespaces"][ns]["events"].append(event(
        ns, "Failed", 'Failed to pull image "learningequality/studio-app:v2026.11.99": not found',
        name=p["metadata"]["name"], count=12, last_ago=45, first_ago=900))


def fault_pending(state: dict, cfg: dict) -> None:
    ns = cfg["namespace"]
    base = _pods(state, ns, "frontend")[0]
    p = copy.deepcopy(base)
    name = base["metadata"]["name"].rsplit("-", 1)[0] + "-pend1"
    p["metadata"].update(name=name, uid=_uid(name), creationTimestamp=ts(ago=900))
    p["spec"].pop("nodeName", None)
    msg = ("0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: "
           "3 No preemption victims found for incoming pod.")
    p["status"] = {"phase": "Pending", "qosClass": "Burstable",
                   "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                   "message": msg, "lastTransitionTime": ts(ago=900)}]}
    state["namespaces"][ns]["pods"].append(p)
    d = _deployment(state, ns, "frontend")
    if d:
        d["spec"]["replicas"] += 1
        d["status"]["replicas"] += 1
        d["status"]["unavailableReplicas"] = 1
    state["namespaces"][ns]["events"].append(event(ns, "FailedScheduling", msg, name=name, count=15, last_ago=40,
                                                   first_ago=900, component="default-scheduler"))


def fault_deployment_unavailable(state: dict, cfg: dict) -> None:
    """Every frontend pod fails its readiness probe (/healthz on 8081 answers 500): none Ready."""
    ns = cfg["namespace"]
    pods = _pods(state, ns, "frontend")
    for p in pods:
        for s in p["status"]["containerStatuses"]:
            if s["name"] == _container(state, "app"):
                s["ready"] = False
        _set_ready(p, False)
        state["namespaces"][ns]["events"].append(event(
            ns, "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 500",
            name=p["metadata"]["name"], count=140, last_ago=10, first_ago=700))
    _degrade(_deployment(state, ns, "frontend"), 0, stuck=True)


def fault_traefik_oom(state: dict, cfg: dict) -> None:
    ns = cfg["traefik_namespace"]
    for p in _pods(state, ns, "ingress"):
        for s in p["status"]["containerStatuses"]:
            s["restartCount"] = 4
            s["state"] = {"running": {"startedAt": ts(ago=100)}}
            s["lastState"] = {"terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": ts(ago=1900),
                                             "finishedAt": ts(ago=110), "containerID": s["containerID"]}}
    metrics = state.get("metrics") or {}
    for m in metrics.get(ns, []):
        for c in m["containers"]:
            c["usage"]["memory"] = "1980Mi"


def fault_memory_high(state: dict, cfg: dict) -> None:
    ns = cfg["namespace"]
    for m in (state.get("metrics") or {}).get(ns, []):
        if _tier_match(state, m, "frontend"):
            for c in m["containers"]:
                if c["name"] == _container(state, "app"):
                    c["usage"]["memory"] = "1990Mi"


def fault_forbidden_pods(state: dict, cfg: dict) -> None:
    state.setdefault("deny", []).append({"verb": "list", "resource": "pods", "group": "",
                                         "namespace": cfg["namespace"]})


def fault_no_metrics(state: dict, cfg: dict) -> None:
    state["metrics"] = None


def fault_down(state: dict, cfg: dict) -> None:
    raise _Unavailable()


FAULTS: dict[str, tuple[Callable[[dict, dict], None], str]] = {
    "crashloop": (fault_crashloop, "frontend pods' app container in CrashLoopBackOff, deployment unavailable"),
    "oomkilled": (fault_oomkilled, "one frontend app container OOMKilled 4 minutes ago (3 restarts)"),
    "image-pull": (fault_image_pull, "one frontend pod in ImagePullBackOff (image tag does not exist)"),
    "pending": (fault_pending, "a frontend pod Pending: 0/3 nodes, Insufficient memory"),
    "deployment-unavailable": (fault_deployment_unavailable,
                               "frontend readiness /healthz failing: 0 available, rollout stuck"),
    "workers-crashloop": (fault_workers_crashloop, "Celery worker pods in CrashLoopBackOff"),
    "traefik-oom": (fault_traefik_oom, "Traefik pod OOMKilled and restarted, memory at 97% of limit"),
    "memory-high": (fault_memory_high, "frontend app containers at 97% of their memory limit"),
    "forbidden-pods": (fault_forbidden_pods, "our credentials may not list pods (403)"),
    "no-metrics": (fault_no_metrics, "the metrics API is not installed (404)"),
    "api-down": (fault_down, "the API server answers 503 to everything"),
}


class _Unavailable(Exception):
    pass


def effective_state(raw: dict) -> dict:
    """The state with its active faults applied (a deep copy; the file is untouched)."""
    state = copy.deepcopy(raw)
    cfg = {"namespace": "studio", "traefik_namespace": "kube-system", **state.get("config", {})}
    for name in state.get("faults", []):
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}")
        FAULTS[name][0](state, cfg)
    _apply_readiness(state, cfg)
    return state


def _probe(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        req = urllib.request.Request(url, headers={"User-Agent": "kube-probe/1.30"})
        with urllib.request.urlopen(req, timeout=1.0) as resp:
            return 200 <= resp.status < 400
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _apply_readiness(state: dict, cfg: dict) -> None:
    """``state["readiness"] = {"frontend": "http://127.0.0.1:PORT/healthz"}``: the lab's real app decides
    whether the frontend pods are Ready, like the chart's readinessProbe (GET /healthz on 8081)."""
    for tier, url in (state.get("readiness") or {}).items():
        if _probe(url):
            continue
        pods = _pods(state, cfg["namespace"], tier)
        for p in pods:
            _set_ready(p, False)
            for cs in p["status"].get("containerStatuses", []):
                cs["ready"] = False
        _degrade(_deployment(state, cfg["namespace"], tier), 0)
        state["namespaces"][cfg["namespace"]].setdefault("events", []).extend(
            event(cfg["namespace"], "Unhealthy", f"Readiness probe failed: GET {urlsplit(url).path} did not answer 2xx/3xx",
                  name=p["metadata"]["name"], last_ago=20, component="kubelet") for p in pods[:1])


def set_readiness(state_file: Path, tier: str, url: str) -> None:
    state = json.loads(Path(state_file).read_text())
    state.setdefault("readiness", {})[tier] = url
    write_json_atomic(Path(state_file), state)


# -- HTTP server ----------------------------------------------------------------------------------

_LISTS = [
    (re.compile(r"^/api/v1/namespaces/([^/]+)/pods$"), "", "pods", "PodList", "v1"),
    (re.compile(r"^/api/v1/namespaces/([^/]+)/events$"), "", "events", "EventList", "v1"),
    (re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments$"), "apps", "deployments", "DeploymentList",
     "apps/v1"),
    (re.compile(r"^/apis/networking\.k8s\.io/v1/namespaces/([^/]+)/ingresses$"), "networking.k8s.io", "ingresses",
     "IngressList", "networking.k8s.io/v1"),
    (re.compile(r"^/api/v1/()pods$"), "", "pods", "PodList", "v1"),
    (re.compile(r"^/api/v1/()events$"), "", "events", "EventList", "v1"),
    (re.compile(r"^/apis/apps/v1/()deployments$"), "apps", "deployments", "DeploymentList", "apps/v1"),
    (re.compile(r"^/apis/networking\.k8s\.io/v1/()ingresses$"), "networking.k8s.io", "ingresses", "IngressList",
     "networking.k8s.io/v1"),
]
_METRICS = re.compile(r"^/apis/metrics\.k8s\.io/v1beta1/namespaces/([^/]+)/pods$")
_CLASSES = "/apis/networking.k8s.io/v1/ingressclasses"
_SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
_SSR = "/apis/authentication.k8s.io/v1/selfsubjectreviews"  # `kubectl auth whoami` (GA in 1.28)


def _status(code: int, reason: str, message: str, kind: str = "") -> dict:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    if kind:
        body["details"] = {"kind": kind}
    return body


def _denied(state: dict, verb: str, group: str, resource: str, namespace: str) -> bool:
    for rule in state.get("deny", []):
        if rule.get("verb", "*") not in ("*", verb):
            continue
        if rule.get("resource", "*") not in ("*", resource):
            continue
        if rule.get("group", "*") not in ("*", group):
            continue
        rule_ns = rule.get("namespace", "*")
        if rule_ns not in ("*", namespace) and not (rule_ns == "" and namespace == ""):
            continue
        return True
    return False


def _forbidden(state: dict, verb: str, group: str, resource: str, namespace: str) -> dict:
    where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    user = state.get("user", DEFAULT_USER)
    return _status(403, "Forbidden", f'{resource} is forbidden: User "{user}" cannot {verb} resource "{resource}" '
                                     f'in API group "{group}" {where}', kind=resource)


def _lookup(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def match_labels(labels: dict, selector: str) -> bool:
    """Equality-based label selectors: ``a=b,c!=d,e`` (and ``==``)."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _match_fields(obj: dict, selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        neg = "!=" in term
        k, v = term.replace("!=", "=").replace("==", "=").split("=", 1)
        got = _lookup(obj, k.strip())
        if (str(got) == v.strip()) == neg:
            return False
    return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-apiserver-standin/1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stalls

    def log_message(self, fmt, *args):  # quiet
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _state(self) -> dict:
        """The effective state; parsed and faulted at most once a second per file version."""
        import time

        st = os.stat(self.server.state_file)
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self.server.lock:
            cached = self.server.cache
            if cached and cached[0] == key and time.monotonic() - cached[1] < 1.0:
                return cached[2]
        state = effective_state(json.loads(Path(self.server.state_file).read_text()))
        with self.server.lock:
            self.server.cache = (key, time.monotonic(), state)
        return state

    def _count(self, path: str) -> None:
        with self.server.lock:
            self.server.counts[path] = self.server.counts.get(path, 0) + 1

    def _auth(self, state: dict) -> bool:
        token = state.get("token") or ""
        if token and self.headers.get("Authorization", "") != f"Bearer {token}":
            self._send(401, _status(401, "Unauthorized", "Unauthorized"))
            return False
        return True

    def do_GET(self):  # noqa: N802
        url = urlsplit(self.path)
        path, query = url.path, {k: v[-1] for k, v in parse_qs(url.query).items()}
        if path == "/_lab/requests":
            with self.server.lock:
                return self._send(200, dict(self.server.counts))
        self._count(path)
        try:
            state = self._state()
        except _Unavailable:
            return self._send(503, _status(503, "ServiceUnavailable", "the server is currently unable to "
                                                                      "handle the request"))
        except (OSError, ValueError) as exc:
            return self._send(500, _status(500, "InternalError", f"stand-in state unreadable: {exc}"))
        if not self._auth(state):
            return
        if path.rstrip("/") == "/version":
            return self._send(200, state.get("version") or VERSION)
        if path == _CLASSES:
            if _denied(state, "list", "networking.k8s.io", "ingressclasses", ""):
                return self._send(403, _forbidden(state, "list", "networking.k8s.io", "ingressclasses", ""))
            return self._list(state.get("ingressclasses", []), "IngressClassList", "networking.k8s.io/v1", query)
        m = _METRICS.match(path)
        if m:
            metrics = state.get("metrics")
            if metrics is None:
                return self._send(404, _status(404, "NotFound", "the server could not find the requested resource"))
            ns = m.group(1)
            if _denied(state, "list", "metrics.k8s.io", "pods", ns):
                return self._send(403, _forbidden(state, "list", "metrics.k8s.io", "pods", ns))
            return self._list(metrics.get(ns, []), "PodMetricsList", "metrics.k8s.io/v1beta1", query)
        for rx, group, resource, kind, api_version in _LISTS:
            m = rx.match(path)
            if not m:
                continue
            ns = m.group(1)
            if _denied(state, "list", group, resource, ns):
                return self._send(403, _forbidden(state, "list", group, resource, ns))
            if ns:
                items = state["namespaces"].get(ns, {}).get(resource, [])
            else:
                items = [o for space in state["namespaces"].values() for o in space.get(resource, [])]
            return self._list(items, kind, api_version, query)
        return self._send(404, _status(404, "NotFound", "the server could not find the requested resource"))

    def _list(self, items: list[dict], kind: str, api_version: str, query: dict) -> None:
        if query.get("labelSelector"):
            items = [o for o in items if match_labels(o.get("metadata", {}).get("labels") or {},
                                                      query["labelSelector"])]
        if query.get("fieldSelector"):
            items = [o for o in items if _match_fields(o, query["fieldSelector"])]
        meta: dict[str, Any] = {"resourceVersion": "987654"}
        limit = int(query.get("limit") or 0)
        if limit:
            start = int(query.get("continue") or 0)
            page = items[start:start + limit]
            if start + limit < len(items):
                meta["continue"] = str(start + limit)
                meta["remainingItemCount"] = len(items) - start - limit
            items = page
        self._send(200, {"kind": kind, "apiVersion": api_version, "metadata": meta, "items": items})

    def do_POST(self):  # noqa: N802
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self._count(path)
        if path == "/_lab/reset":
            with self.server.lock:
                self.server.counts.clear()
            return self._send(200, {})
        try:
            state = self._state()
        except _Unavailable:
            return self._send(503, _status(503, "ServiceUnavailable", "the server is currently unable to "
                                                                      "handle the request"))
        if not self._auth(state):
            return
        if path == _SSR:  # who the token is: the API server echoes the authenticated user, stores nothing
            user = {"username": state.get("user", DEFAULT_USER),
                    "groups": state.get("groups", ["system:authenticated"])}
            return self._send(201, {"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
                                    "metadata": {"creationTimestamp": None}, "status": {"userInfo": user}})
        if path != _SSAR:
            return self._send(405, _status(405, "MethodNotAllowed", "the server does not allow this method on "
                                                                    "the requested resource"))
        attrs = (body.get("spec") or {}).get("resourceAttributes") or {}
        verb, group = attrs.get("verb", ""), attrs.get("group", "")
        resource, ns = attrs.get("resource", ""), attrs.get("namespace", "")
        denied = _denied(state, verb, group, resource, ns)
        status: dict[str, Any] = {"allowed": not denied}
        if denied:
            status["denied"] = False  # no explicit deny rule: RBAC simply grants nothing
            status["reason"] = ""
        else:
            status["reason"] = f'RBAC: allowed by RoleBinding "studiodoctor/{ns or "cluster"}"'
        self._send(201, {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                         "metadata": {"creationTimestamp": None}, "spec": body.get("spec", {}), "status": status})


def serve(port: int, state_file: str, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start the server in a thread of this process (tests); returns it (call .shutdown())."""
    server = _make_server(port, state_file, host)
    threading.Thread(target=server.serve_forever, daemon=True, name="kube-api-standin").start()
    return server


def _make_server(port: int, state_file: str, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), _Handler)
    server.daemon_threads = True
    server.state_file = state_file
    server.lock = threading.Lock()
    server.counts = {}
    server.cache = None
    return server


# -- launcher -------------------------------------------------------------------------------------

class KubeAPIServer(Launcher):
    """The stand-in as a background process. ``state`` option: initial state (default studio_state())."""

    kind = "kube-api"

    def __init__(self, root, port: int = 0, namespace: str = "studio", hostnames: list[str] | tuple = (),
                 variant: str = "default", **options):
        super().__init__(root, port, namespace=namespace, hostnames=list(hostnames), variant=variant, **options)
        self.namespace = namespace
        self.hostnames = list(hostnames) or ["studio.localtest"]
        self.variant = variant

    def healthy_state(self) -> dict:
        """The default lab keeps the namespace it always had; other variants are built from their data."""
        from .variants import get

        if self.variant == "default":
            return studio_state(self.namespace, hostnames=tuple(self.hostnames))
        return variant_state(get(self.variant), hostnames=tuple(self.hostnames))

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "studiodoctor.lab.kube_api", "--port", str(self.port),
                "--state", str(self.state_file)]

    def start(self, timeout: float = 15.0, state: dict | None = None) -> "KubeAPIServer":
        self.dir.mkdir(parents=True, exist_ok=True)
        if state is not None or not self.state_file.exists():
            self.write_state(state if state is not None else self.healthy_state())
        self.pid = self.spawn(self.command())
        wait_for_port(self.port, timeout, pid=self.pid, log=self.log)
        return self

    def stop(self) -> None:
        stop_pid(self.pid)

    # state and faults -------------------------------------------------------------------------
    def read_state(self) -> dict:
        return json.loads(self.state_file.read_text())

    def write_state(self, state: dict) -> None:
        write_json_atomic(self.state_file, state)

    def set_fault(self, name: str, on: bool = True) -> None:
        """Turn a fault of FAULTS on or off (takes effect on the next request)."""
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r} (known: {', '.join(FAULTS)})")
        state = self.read_state()
        faults = [f for f in state.get("faults", []) if f != name]
        if on:
            faults.append(name)
        state["faults"] = faults
        self.write_state(state)

    def faults(self) -> list[str]:
        return list(self.read_state().get("faults", []))

    def clear_faults(self) -> None:
        state = self.read_state()
        state["faults"] = []
        self.write_state(state)

    def request_counts(self) -> dict[str, int]:
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/_lab/requests", timeout=5) as resp:
            return json.loads(resp.read())

    def reset_counts(self) -> None:
        import urllib.request

        req = urllib.request.Request(f"{self.url}/_lab/reset", data=b"{}", method="POST")
        urllib.request.urlopen(req, timeout=5).close()

    def profile(self) -> dict:
        state = self.read_state() if self.state_file.exists() else {}
        cfg = state.get("config", {})
        section = {"api_url": self.url, "namespace": self.namespace}
        if self.variant == "default":  # a Traefik in kube-system: the default lab says where
            section["traefik_namespace"] = cfg.get("traefik_namespace", "kube-system")
        if state.get("token"):
            section["token"] = state["token"]
        return {"kubernetes": section}


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Kubernetes API stand-in for the studiodoctor lab")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    server = _make_server(args.port, args.state, args.host)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
