"""The Kubernetes objects the stand-in serves, in the API's JSON shapes: builders (pods, Deployments,
events, Ingresses, metrics) and whole healthy namespaces (``studio_state``, ``variant_state``)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

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
              port: int | None = None, port_name: str = "", readiness_path: str = "",
              readiness_port: int | None = None,
              mem_limit: str = "", mem_request: str = "", cpu_request: str = "", cpu_limit: str = "") -> dict:
    spec: dict[str, Any] = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent",
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File", "resources": {}}
    if command:
        spec["command"] = command
    if args:
        spec["args"] = args
    if port:
        spec["ports"] = [{"containerPort": port, "protocol": "TCP", **({"name": port_name} if port_name else {})}]
    if readiness_path:
        # periodSeconds 1: the lab's choice, so that a fault shows within seconds (a chart's is often 10, the
        # default); the kubelet still needs failureThreshold (3, the default) failures in a row, as in production
        spec["readinessProbe"] = {"httpGet": {"path": readiness_path, "port": readiness_port or port,
                                              "scheme": "HTTP"},
                                  "initialDelaySeconds": 5, "periodSeconds": 1, "failureThreshold": 3,
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
        statuses: list[dict] | None = None, ready: bool | None = None, pod_ip: str = "10.8.1.23") -> dict:
    """A Pod as ``GET /api/v1/namespaces/NS/pods`` lists it (spec, status, conditions); ``pod_ip`` its
    address on the cluster network (:mod:`.network` maps it to a lab process)."""
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
            "phase": phase, "hostIP": "10.128.0.12", "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}], "startTime": started,
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
                 image: str = "learningequality/studio-app:v2026.11.20", owner: str = "",
                 pod_ip: str = "10.8.1.23") -> dict:
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
    return pod(name, namespace, labels, [app, proxy], owner=owner or f"{release}-studio-7d9f8c6b5d", pod_ip=pod_ip)


def worker_pod(name: str, namespace: str = "studio", *, release: str = "master",
               image: str = "learningequality/studio-app:v2026.11.20", owner: str = "",
               pod_ip: str = "10.8.2.23") -> dict:
    """A Celery worker pod (``celery -A contentcuration worker``), limits 8Gi, no probes."""
    worker = container("worker", image, command=["make", "prodceleryworkers"],
                       args=["celery", "-A", "contentcuration", "worker", "-l", "info", "--concurrency=3",
                             "--task-events"],
                       mem_limit="8Gi", mem_request="2Gi", cpu_request="500m", cpu_limit="2")
    labels = {"app": f"{release}-studio-workers", "tier": "workers", "pod-template-hash": "5c4b7f9d8e"}
    return pod(name, namespace, labels, [worker], owner=owner or f"{release}-studio-workers-5c4b7f9d8e",
               pod_ip=pod_ip)


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


def pod_ip(subnet: int, index: int, net: str = "10.8") -> str:
    """The ``index``-th pod's address in a tier's subnet of the cluster network (unique per pod)."""
    return f"{net}.{subnet}.{10 + index}"


def service(name: str, namespace: str, selector: dict, *, port: int = 80, target_port: int | str = 8080,
            port_name: str = "http", type: str = "ClusterIP") -> dict:
    """A Service as ``GET /api/v1/namespaces/NS/services`` lists it (its Endpoints: :mod:`.network`)."""
    return {"metadata": {"name": name, "namespace": namespace, "uid": _uid(namespace + "svc" + name),
                         "resourceVersion": "6000", "creationTimestamp": ts(ago=90 * 86400)},
            "spec": {"type": type, "selector": dict(selector), "clusterIP": "10.12.0.40", "clusterIPs": ["10.12.0.40"],
                     "ports": [{"name": port_name, "port": port, "targetPort": target_port, "protocol": "TCP",
                                **({"nodePort": 30080} if type == "NodePort" else {})}],
                     "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"},
            "status": {"loadBalancer": {}}}


def studio_state(namespace: str = "studio", *, hostnames: tuple[str, ...] = ("studio.localtest",),
                 release: str = "master", frontend: int = 3, workers: int = 2, ingress_class_name: str = "traefik",
                 traefik_namespace: str = "kube-system", metrics: bool = True, extra_pods: int = 0) -> dict:
    """A healthy Studio namespace: frontend and worker deployments with their pods, an Ingress for the
    hostnames, ingress classes, Traefik in ``traefik_namespace``, normal events, metrics."""
    fe_dep, wk_dep = f"{release}-studio", f"{release}-studio-workers"
    fe_pods = [frontend_pod(f"{fe_dep}-7d9f8c6b5d-{i:05x}", namespace, release=release, pod_ip=pod_ip(1, i))
               for i in range(frontend)]
    wk_pods = [worker_pod(f"{wk_dep}-5c4b7f9d8e-{i:05x}", namespace, release=release, pod_ip=pod_ip(2, i))
               for i in range(workers)]
    extra = [frontend_pod(f"{fe_dep}-7d9f8c6b5d-x{i:05x}", namespace, release=release, pod_ip=pod_ip(1, frontend + i))
             for i in range(extra_pods)]
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
    traefik["status"].update(podIP="10.8.0.5", podIPs=[{"ip": "10.8.0.5"}])
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
                        "services": [service(f"{release}-studio-app", namespace, {"tier": "frontend"}, port=80,
                                             target_port=8080, type="NodePort")],
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
                      port_name="http", mem_limit="256Mi", mem_request="64Mi")
    worker = container(v.containers["worker"], image, command=["celery", "-A", "contentcuration", "worker"],
                       mem_limit="6Gi", mem_request="2Gi")
    fe, wk = v.deployments["frontend"], v.deployments["workers"]
    fe_pods = [pod(f"{fe}-6c8d9f7b4-{i:05x}", ns, {**v.labels["frontend"], "pod-template-hash": "6c8d9f7b4"},
                   [app, proxy], owner=f"{fe}-6c8d9f7b4", pod_ip=pod_ip(1, i, net="10.20"))
               for i in range(frontend)]
    wk_pods = [pod(f"{wk}-7f5c6d8e9-{i:05x}", ns, {**v.labels["workers"], "pod-template-hash": "7f5c6d8e9"},
                   [worker], owner=f"{wk}-7f5c6d8e9", pod_ip=pod_ip(2, i, net="10.20")) for i in range(workers)]
    controller_name = "ingress-nginx-controller" if v.ingress == "ingress-nginx" else "traefik"
    ctl = container("controller", "registry.k8s.io/ingress-nginx/controller:v1.12.1"
                    if v.ingress == "ingress-nginx" else "traefik:v3.7.15", args=["/nginx-ingress-controller"],
                    port=443, readiness_path="/healthz", readiness_port=10254, mem_limit="1Gi", mem_request="512Mi")
    ctl_pod = pod(f"{controller_name}-5d6f7c8b9-q7x2m", v.ingress_namespace,
                  {**v.labels["ingress"], "pod-template-hash": "5d6f7c8b9"}, [ctl], owner=f"{controller_name}-5d6f7c8b9",
                  pod_ip="10.20.0.5")
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
                 # the Service selects by the tier's labels and targets the proxy's port by its name
                 "services": [service(fe, ns, dict(v.labels["frontend"]), port=80, target_port="http",
                                      port_name="web")],
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
