"""The stand-in's faults: applied to a copy of the state when a request is served (timestamps relative
to *now*), so a lab left running still shows "restarted 2 minutes ago"; ``fix`` removes the name."""

from __future__ import annotations

import copy
from typing import Callable

from .network import apply_endpoints, apply_liveness, apply_readiness, is_ready, selects
from .objects import _uid, event, ts

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


def fault_replica_unready(state: dict, cfg: dict) -> None:
    """One frontend pod of several: its app container runs (started 2 h ago) but fails its readiness probe
    (/healthz answers 500 there), so it is out of the Service; the deployment has one replica unavailable."""
    ns = cfg["namespace"]
    pods = _pods(state, ns, "frontend")
    if len(pods) < 2:
        return
    p = pods[-1]
    for s in p["status"]["containerStatuses"]:
        if s["name"] == _container(state, "app"):
            s["ready"] = False
            s["started"] = True
            s["state"] = {"running": {"startedAt": ts(ago=7200)}}
    _set_ready(p, False)
    state["namespaces"][ns]["events"].append(event(
        ns, "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 500",
        name=p["metadata"]["name"], count=90, last_ago=4, first_ago=180))
    _degrade(_deployment(state, ns, "frontend"), len(pods) - 1)


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
    "replica-unready": (fault_replica_unready, "one frontend pod of several fails its readiness probe (running, "
                                               "not Ready)"),
    "workers-crashloop": (fault_workers_crashloop, "Celery worker pods in CrashLoopBackOff"),
    "traefik-oom": (fault_traefik_oom, "Traefik pod OOMKilled and restarted, memory at 97% of limit"),
    "memory-high": (fault_memory_high, "frontend app containers at 97% of their memory limit"),
    "forbidden-pods": (fault_forbidden_pods, "our credentials may not list pods (403)"),
    "no-metrics": (fault_no_metrics, "the metrics API is not installed (404)"),
    "api-down": (fault_down, "the API server answers 503 to everything"),
}


class _Unavailable(Exception):
    pass


def effective_state(raw: dict, readiness: dict | None = None) -> dict:
    """The state with its active faults applied (a deep copy; the file is untouched). ``readiness``: the
    stand-in's kubelet's snapshot (:mod:`.kubelet`), {(namespace, pod, container): its readiness}; without
    it, pods are as the state file says (no probe runs on a read)."""
    state = copy.deepcopy(raw)
    cfg = {"namespace": "studio", "traefik_namespace": "kube-system", **state.get("config", {})}
    for name in state.get("faults", []):
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}")
        FAULTS[name][0](state, cfg)
    _apply_pod_readiness(state, readiness or {})
    apply_endpoints(state)
    return state


def _apply_pod_readiness(state: dict, readiness: dict) -> None:
    """Each pod the lab plays is Ready only while the kubelet holds its probed containers Ready and the
    processes that play its probeless containers run (:mod:`.network`); a Deployment counts the Ready pods
    its selector matches."""
    import time

    def unhealthy(p: dict, message: str, count: int, first: float, last: float) -> None:
        ns, now = p["metadata"]["namespace"], time.time()
        state["namespaces"][ns].setdefault("events", []).append(
            event(ns, "Unhealthy", message, name=p["metadata"]["name"], count=count,
                  last_ago=max(0.0, now - last), first_ago=max(0.0, now - first)))

    failed = apply_readiness(state, readiness, unhealthy) + apply_liveness(state)
    for ns in {p["metadata"]["namespace"] for p in failed}:
        space = state["namespaces"][ns]
        for d in space.get("deployments", []):
            selector = (d.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
            ready = sum(1 for p in space.get("pods", []) if selects(selector, p) and is_ready(p))
            if ready < (d["status"].get("availableReplicas") or 0):
                _degrade(d, ready)
