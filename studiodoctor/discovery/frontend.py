"""The frontend pods to probe one by one when the profile gives no ``app.url`` / ``nginx.url``: the Ready pods
of the Deployment that runs gunicorn (``backends.kube_pods.deployment_roles``: told by what the pods run,
never by a name), which are the frontend Service's endpoints (the endpoints controller lists a pod when it
is Ready and its labels match). Their ports come from the pod spec: the gunicorn container's port for the
app, the nginx container's port for nginx (``app.pod_port`` / ``nginx.pod_port`` when a container declares
none). Read from the kubernetes layer's own listings: no API call of its own.

When no pod is Ready, the not-Ready ones are probed instead (the API server's pod proxy reaches a pod
whatever its readiness), and the evidence says so: their answers say why they are not Ready.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import Reason, error, skip

# Most pods probed per check: a bound on what one run sends through the API server.
MAX_PODS = 10


@dataclass
class FrontendPods:
    deployment: str
    namespace: str
    pods: list[dict]                                  # the pods to probe, by name, at most MAX_PODS
    ready: int = 0                                    # Ready pods of the Deployment
    total: int = 0                                    # its pods with an address
    not_ready: list[str] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)        # "app" / "nginx" -> container port
    containers: dict[str, str] = field(default_factory=dict)   # "app" / "nginx" -> container name
    note: str = ""                                    # how the set was chosen, when not "every Ready pod"

    def names(self) -> list[str]:
        return [p["metadata"]["name"] for p in self.pods]


def _ready(p: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (p.get("status") or {}).get("conditions") or [])


def _matches(p: dict, labels: dict) -> bool:
    have = (p.get("metadata") or {}).get("labels") or {}
    return bool(labels) and all(have.get(k) == v for k, v in labels.items())


def _port(container: dict | None) -> int | None:
    for spec in (container or {}).get("ports") or []:
        if isinstance(spec.get("containerPort"), int):
            return spec["containerPort"]
    get = ((container or {}).get("readinessProbe") or {}).get("httpGet") or {}
    return get["port"] if isinstance(get.get("port"), int) else None


def frontend_pods(ctx):
    """The FrontendPods of this run (one reading shared by every check), or the Result to return when
    they cannot be found (skip: no Kubernetes configured; error: cannot list, or nothing runs gunicorn)."""
    return ctx.shared.get("discovery:frontend-pods", lambda: _find(ctx))


def _find(ctx):
    from studiodoctor.backends import kubernetes as kc
    from studiodoctor.backends.kube_pods import deployment_roles

    conn = kc.connection(ctx)
    if conn.status == "unconfigured":
        return skip(f"no Kubernetes API to reach the pods through ({conn.detail})", reason=Reason.NOT_CONFIGURED)
    ns = kc.namespace(ctx)
    deployments = kc.list_objects(ctx, "deployments", ns)
    if not deployments.ok:
        return _cannot(ctx, deployments, "the frontend Deployment")
    role = deployment_roles(deployments.items).get("app")
    if not role:
        names = [(d.get("metadata") or {}).get("name") for d in deployments.items]
        return error(f"no Deployment in namespace {ns} runs gunicorn (have: {', '.join(map(str, names))[:150]}): "
                     "cannot tell which pods are Studio's frontend", reason=Reason.NOT_CONFIGURED,
                     evidence={"namespace": ns, "deployments": names})
    pods = kc.list_objects(ctx, "pods", ns, label_selector=kc.kube_setting(ctx, "app_selector", "") or None)
    if not pods.ok:
        return _cannot(ctx, pods, "the frontend pods")
    dep = next(d for d in deployments.items if (d.get("metadata") or {}).get("name") == role["deployment"])
    labels = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    mine = sorted((p for p in pods.items if isinstance(p, dict) and _matches(p, labels)
                   and (p.get("status") or {}).get("podIP")), key=lambda p: p["metadata"]["name"])
    ready = [p for p in mine if _ready(p)]
    found = FrontendPods(role["deployment"], ns, (ready or mine)[:MAX_PODS], ready=len(ready), total=len(mine),
                         not_ready=[p["metadata"]["name"] for p in mine if not _ready(p)],
                         containers={"app": role["container"], "nginx": role.get("nginx_container", "")})
    if not mine:
        return error(f"Deployment {role['deployment']} has no pod with an address in namespace {ns}: no pod to "
                     "probe", evidence={"deployment": role["deployment"], "namespace": ns})
    if not ready:
        found.note = f"no pod of {found.total} is Ready: probing the not-Ready ones"
    elif len(ready) > MAX_PODS:
        found.note = f"probing {MAX_PODS} of {len(ready)} Ready pods"
    spec = {c.get("name"): c for c in mine[0].get("spec", {}).get("containers", [])}
    for layer, key in (("app", "app.pod_port"), ("nginx", "nginx.pod_port")):
        port = ctx.profile.value(key) or _port(spec.get(found.containers[layer]))
        if port:
            found.ports[layer] = int(port)
    return found


def _cannot(ctx, listing, what: str):
    from studiodoctor.backends import kubernetes as kc

    res = kc.listing_problem(ctx, listing)
    res.summary = f"cannot find {what} to probe: {res.summary}"
    return res
