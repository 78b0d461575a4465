"""The stand-in's cluster network: Endpoints computed from Services and pods (as the endpoints controller
does), pods' readiness as the stand-in's kubelet (:mod:`.kubelet`) keeps it from their own readinessProbe
against the lab's real processes, a container without a probe running while the lab process that plays it
runs (as the kubelet sees its main process), and the pod network itself: ``state["network"]`` maps a pod's
``IP:PORT`` to the loopback address of the lab process that plays that container
(``{"10.8.1.10:8081": "127.0.0.1:41234"}``).

Nothing here reads a lab fixture by name: a pod is Ready when its probe answers, a Service's endpoints are
the Running pods its selector matches, and a proxied request goes wherever the pod's address leads.
"""

from __future__ import annotations

import time
from typing import Any

from .objects import ts


def pod_address(pod: dict) -> str:
    return (pod.get("status") or {}).get("podIP") or "" if isinstance(pod, dict) else ""


def is_ready(pod: dict) -> bool:
    return isinstance(pod, dict) and any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def selects(selector: dict, pod: dict) -> bool:
    """(The stand-in serves whatever a test wrote: an item that is not an object selects nothing.)"""
    if not isinstance(pod, dict):
        return False
    labels = pod.get("metadata", {}).get("labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def target_port(pod: dict, port: int | str) -> int | None:
    """A Service's ``targetPort`` on ``pod``: a number as is, a name looked up in the pod's container ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for c in pod.get("spec", {}).get("containers", []):
        for p in c.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
    return None


def endpoints_for(service: dict, pods: list[dict]) -> dict:
    """The Endpoints object of ``service``: Running pods with an address, ready or not, per resolved port."""
    meta, spec = service["metadata"], service.get("spec") or {}
    groups: dict[tuple, dict] = {}
    for p in pods:
        if not selects(spec.get("selector") or {}, p) or not pod_address(p):
            continue
        if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        ports = tuple((sp.get("name", ""), target_port(p, sp.get("targetPort", sp.get("port"))),
                       sp.get("protocol", "TCP")) for sp in spec.get("ports") or [])
        if any(number is None for _, number, _ in ports):
            continue  # a named targetPort this pod does not declare: no endpoint for it
        subset = groups.setdefault(ports, {"addresses": [], "notReadyAddresses": [],
                                           "ports": [{"name": n, "port": num, "protocol": proto}
                                                     for n, num, proto in ports]})
        address = {"ip": pod_address(p), "nodeName": p.get("spec", {}).get("nodeName", ""),
                   "targetRef": {"kind": "Pod", "namespace": p["metadata"]["namespace"],
                                 "name": p["metadata"]["name"], "uid": p["metadata"].get("uid", "")}}
        subset["addresses" if is_ready(p) else "notReadyAddresses"].append(address)
    subsets = []
    for subset in groups.values():
        for key in ("addresses", "notReadyAddresses"):
            if not subset[key]:
                del subset[key]  # the API omits empty lists
        subsets.append(subset)
    body: dict[str, Any] = {"metadata": {"name": meta["name"], "namespace": meta["namespace"],
                                         "uid": meta.get("uid", "") + "-ep", "resourceVersion": "6001",
                                         "creationTimestamp": meta.get("creationTimestamp", ts()),
                                         "labels": dict(meta.get("labels") or {})}}
    if subsets:
        body["subsets"] = subsets
    return body


def apply_endpoints(state: dict) -> None:
    """``state["namespaces"][ns]["endpoints"]``: one Endpoints per Service, from the pods as they are now."""
    for space in state.get("namespaces", {}).values():
        pods = space.get("pods", [])
        space["endpoints"] = [endpoints_for(s, pods) for s in space.get("services", [])]


# -- readiness: the kubelet's httpGet probe, against the process that plays the container ------------------

def probe_http(address: str, path: str, shown: str, timeout_s: float) -> str:
    """"" when the probe passes, else the kubelet's message (``shown``: the URL as the kubelet names it); an
    answer slower than ``timeout_s`` (the probe's timeoutSeconds) is a failure."""
    import socket
    import urllib.error
    import urllib.request

    try:
        req = urllib.request.Request(f"http://{address}{path}", headers={"User-Agent": "kube-probe/1.31"})
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            resp.read()
            return "" if 200 <= resp.status < 400 else f"HTTP probe failed with statuscode: {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP probe failed with statuscode: {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, (TimeoutError, socket.timeout)) or isinstance(exc, (TimeoutError, socket.timeout)):
            return (f'Get "{shown}": context deadline exceeded (Client.Timeout exceeded while awaiting '
                    f'headers)')
        return f'Get "{shown}": dial tcp {shown.split("/")[2]}: connect: connection refused'


def readiness_targets(state: dict) -> list[tuple[dict, str, str, str, str, dict]]:
    """(pod, container name, lab address, path, the URL the kubelet would name, the readinessProbe) of every
    httpGet readinessProbe whose container the lab plays."""
    network = state.get("network") or {}
    out = []
    for space in state.get("namespaces", {}).values():
        for p in space.get("pods", []):
            if not pod_address(p):
                continue
            for c in p.get("spec", {}).get("containers", []):
                probe = c.get("readinessProbe") or {}
                get = probe.get("httpGet")
                if not get:
                    continue
                pod_port = f"{pod_address(p)}:{target_port(p, get.get('port'))}"
                address, path = network.get(pod_port), get.get("path") or "/"
                if address:
                    out.append((p, c.get("name", ""), address, path, f"http://{pod_port}{path}", probe))
    return out


def apply_readiness(state: dict, readiness: dict, mark_event) -> list[dict]:
    """Each container the kubelet (:mod:`.kubelet`) holds not Ready makes its pod not Ready, with the pod's
    Ready condition since the flip; a container whose probe is failing now (a series under way, Ready or
    not yet out) gets the kubelet's Unhealthy event (``mark_event(pod, message, count, first, last)``, wall
    clock times). ``readiness``: the kubelet's snapshot, {(namespace, pod, container): its state}. Returns
    the pods made not Ready."""
    failed = []
    for space in state.get("namespaces", {}).values():
        for p in space.get("pods", []):
            if not isinstance(p, dict) or not p.get("metadata"):
                continue
            meta = p["metadata"]
            unready = []
            for c in p.get("spec", {}).get("containers", []):
                seen = readiness.get((meta.get("namespace"), meta.get("name"), c.get("name")))
                if not seen:
                    continue
                if seen["series"]:
                    mark_event(p, f"Readiness probe failed: {seen['message']}", seen["series"],
                               seen["first_failure"], seen["last_failure"])
                if seen["ready"] is False:
                    unready.append((c.get("name"), seen["since"]))
            if not unready:
                continue
            names = {name for name, _ in unready}
            for cs in (p.get("status") or {}).get("containerStatuses", []):
                if cs.get("name") in names:
                    cs["ready"] = False
            _pod_not_ready(p, sorted(names), ago=max(0.0, time.time() - max(t for _, t in unready)))
            failed.append(p)
    return failed


def _pod_not_ready(pod: dict, containers: list[str], ago: float) -> None:
    """The pod's Ready and ContainersReady conditions False since ``ago`` seconds, naming ``containers`` as
    the kubelet does (for a failing readiness probe or an exited main process alike)."""
    for cond in (pod.get("status") or {}).get("conditions", []):
        if cond.get("type") in ("Ready", "ContainersReady"):
            cond.update(status="False", reason="ContainersNotReady", lastTransitionTime=ts(ago=ago),
                        message=f"containers with unready status: [{' '.join(containers)}]")


def lab_address(state: dict, ip: str, port: int | str) -> str | None:
    """Where the pod network sends ``ip:port`` in the lab (None: nothing listens there)."""
    return (state.get("network") or {}).get(f"{ip}:{port}")


# -- liveness: a container's main process, as the kubelet sees it ----------------------------------------

def _process_running(played: dict) -> bool:
    """Whether the process a pidfile names runs: alive, not a zombie, and still the command that wrote it
    (a stale file after a kill may name a pid reused since)."""
    try:
        pid = int(open(played["pidfile"]).read().strip())
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read()
    except (OSError, ValueError, IndexError, KeyError, TypeError):
        return False
    return state not in ("Z", "X") and str(played.get("command", "")).encode() in cmdline


def apply_liveness(state: dict) -> list[dict]:
    """Every container a lab process plays (``state["processes"]``: ``"IP/container"`` -> its pidfile and command)
    whose process is gone is terminated and not ready, and its pod not Ready, as the kubelet reports a
    container whose main process exited. Returns the pods made not Ready."""
    played = state.get("processes") or {}
    if not played:
        return []
    failed = []
    for space in state.get("namespaces", {}).values():
        for p in space.get("pods", []):
            if not isinstance(p, dict):
                continue
            dead = [name for key, name in ((f"{pod_address(p)}/{c.get('name')}", c.get("name"))
                                           for c in p.get("spec", {}).get("containers", []))
                    if key in played and not _process_running(played[key])]
            for cs in p.get("status", {}).get("containerStatuses", []):
                if cs.get("name") in dead:
                    cs.update(ready=False, started=False, state={"terminated": {
                        "exitCode": 1, "reason": "Error", "message": "the process playing this container exited",
                        "startedAt": ts(ago=600), "finishedAt": ts(ago=1), "containerID": cs.get("containerID", "")}})
            if dead:
                _pod_not_ready(p, dead, ago=1)
                failed.append(p)
    return failed
