"""Studio's backing services as the cluster lists them (``k8s/Chart.yaml``'s dependencies): the Redis master
(Bitnami's chart: a StatefulSet's pod ``RELEASE-redis-master-0``, labels ``app=redis, role=master``, Service
``RELEASE-redis-master:6379``) and the Cloud SQL proxy (t3n's chart: Deployment ``RELEASE-cloudsql-proxy``
running ``/cloud_sql_proxy``, Service ``RELEASE-cloudsql-proxy:5432``, no probes). ``with_backing(state,
redis=ADDRESS, postgres=ADDRESS)`` adds them and leads their pods' ports to the lab's real redis-server and
PostgreSQL (a port-forward to the pod reaches them), as :mod:`.doctor` does for the in-cluster doctor."""

from __future__ import annotations

from .objects import container, deployment, pod, pod_metrics, service

REDIS_PORT, POSTGRES_PORT = 6379, 5432
REDIS_POD_IP, CLOUDSQL_POD_IP = "10.8.3.10", "10.8.3.20"


def backing_objects(namespace: str, release: str = "master") -> dict[str, list[dict]]:
    """{"pods", "deployments", "services"} of Redis and the Cloud SQL proxy in ``namespace``."""
    redis_labels = {"app": "redis", "release": release, "role": "master"}
    redis = container("redis", "docker.io/bitnami/redis:4.0.14", port=REDIS_PORT, port_name="redis",
                      command=["/bin/bash", "-c", "/opt/bitnami/scripts/start-scripts/start-master.sh"],
                      mem_request="256Mi")
    redis_pod = pod(f"{release}-redis-master-0", namespace, {**redis_labels, "chart": "redis-12.1.1"}, [redis],
                    owner=f"{release}-redis-master", pod_ip=REDIS_POD_IP)
    redis_pod["metadata"]["ownerReferences"][0].update(kind="StatefulSet")
    proxy_labels = {"app": "cloudsql-proxy", "release": release}
    proxy = container("cloudsql-proxy", "gcr.io/cloudsql-docker/gce-proxy:1.16", port=POSTGRES_PORT,
                      port_name="postgres", command=["/cloud_sql_proxy",
                                                     "-instances=studio:us-central1:develop=tcp:0.0.0.0:5432"],
                      mem_request="64Mi")
    owner = f"{release}-cloudsql-proxy-5f6d7c8b9"
    proxy_pod = pod(f"{owner}-r4t6z", namespace, {**proxy_labels, "pod-template-hash": "5f6d7c8b9"}, [proxy],
                    owner=owner, pod_ip=CLOUDSQL_POD_IP)
    return {"pods": [redis_pod, proxy_pod],
            "deployments": [deployment(f"{release}-cloudsql-proxy", namespace, proxy_labels, [proxy], replicas=1)],
            "services": [service(f"{release}-redis-master", namespace, redis_labels, port=REDIS_PORT,
                                 target_port="redis", port_name="redis"),
                         service(f"{release}-cloudsql-proxy", namespace, proxy_labels, port=POSTGRES_PORT,
                                 target_port="postgres", port_name="postgres")]}


def with_backing(state: dict, namespace: str, *, redis: str = "", postgres: str = "", release: str = "master") -> dict:
    """``state`` with Redis and the Cloud SQL proxy in ``namespace``, their pods' ports played by ``redis`` and
    ``postgres`` (lab loopback addresses; empty: nothing listens there)."""
    space = state.setdefault("namespaces", {}).setdefault(namespace, {})
    objects = backing_objects(namespace, release)
    for kind, items in objects.items():
        names = {i["metadata"]["name"] for i in items}
        space[kind] = [o for o in space.get(kind, []) if o["metadata"]["name"] not in names] + items
    if isinstance(state.get("metrics"), dict):
        state["metrics"].setdefault(namespace, []).extend(pod_metrics(p) for p in objects["pods"])
    network = state.setdefault("network", {})
    for ip, port, address in ((REDIS_POD_IP, REDIS_PORT, redis), (CLOUDSQL_POD_IP, POSTGRES_PORT, postgres)):
        if address:
            network[f"{ip}:{port}"] = address
    return state


def with_ingress_api(state: dict, address: str, port: int = 9000) -> dict:
    """The ingress controller's Traefik pod declares its API entrypoint (the chart's ``traefik`` port, 9000,
    where ``/ping`` and ``/api`` answer) and that port leads to the lab's Traefik API at ``address``."""
    for space in state.get("namespaces", {}).values():
        for p in space.get("pods", []):
            for c in p["spec"]["containers"]:
                if "traefik" not in str(c.get("image", "")):
                    continue
                ports = c.setdefault("ports", [])
                if not any(x.get("containerPort") == port for x in ports):
                    ports.append({"containerPort": port, "name": "traefik", "protocol": "TCP"})
                state.setdefault("network", {})[f"{p['status']['podIP']}:{port}"] = address
    return state
