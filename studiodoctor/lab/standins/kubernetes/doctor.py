"""The in-cluster doctor as the cluster lists it: ``deploy/kubernetes/serve.yaml``'s Deployment, its pod and
its Service (labelled for discovery, ``studiodoctor.vantage.DOCTOR_LABEL``), on the pod network at
``DOCTOR_POD_IP:9842``; ``with_doctor(state, address)`` adds them and maps that port to the loopback
``address`` of a real ``studiodoctor serve`` (the lab's in-cluster doctor)."""

from __future__ import annotations

from .objects import container, deployment, pod, service

DOCTOR_NAME = "studiodoctor"
DOCTOR_PORT = 9842
DOCTOR_POD_IP = "10.8.9.10"
LABELS = {"app.kubernetes.io/name": "studiodoctor", "app.kubernetes.io/component": "exporter"}
SERVICE_LABELS = {**LABELS, "studiodoctor/doctor": "report"}
IMAGE = "studiodoctor:latest"


def doctor_container() -> dict:
    return container("exporter", IMAGE, args=["serve", "--listen", f"0.0.0.0:{DOCTOR_PORT}", "--interval", "60"],
                     port=DOCTOR_PORT, port_name="metrics", readiness_path="/healthz", mem_limit="384Mi",
                     mem_request="192Mi", cpu_request="50m")


def doctor_objects(namespace: str) -> dict[str, list[dict]]:
    """{"pods", "deployments", "services"} of the doctor in ``namespace``."""
    owner = f"{DOCTOR_NAME}-6b8f7d5c9a"
    p = pod(f"{owner}-q7k2m", namespace, {**LABELS, "pod-template-hash": "6b8f7d5c9a"}, [doctor_container()],
            owner=owner, pod_ip=DOCTOR_POD_IP)
    p["spec"]["serviceAccountName"] = DOCTOR_NAME
    svc = service(DOCTOR_NAME, namespace, LABELS, port=DOCTOR_PORT, target_port="metrics", port_name="metrics")
    svc["metadata"]["labels"] = dict(SERVICE_LABELS)
    return {"pods": [p], "deployments": [deployment(DOCTOR_NAME, namespace, LABELS, [doctor_container()], replicas=1)],
            "services": [svc]}


def with_doctor(state: dict, address: str, namespace: str = "studio") -> dict:
    """``state`` with the doctor's objects in ``namespace``, its pod's port played by ``address``."""
    space = state.setdefault("namespaces", {}).setdefault(namespace, {})
    for kind, items in doctor_objects(namespace).items():
        names = {i["metadata"]["name"] for i in items}
        space[kind] = [o for o in space.get(kind, []) if o["metadata"]["name"] not in names] + items
    state.setdefault("network", {})[f"{DOCTOR_POD_IP}:{DOCTOR_PORT}"] = address
    return state
