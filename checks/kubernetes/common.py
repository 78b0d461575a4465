"""What the modules of the kubernetes layer share: the check ids, the checks that explain a pod not
Ready, and ``check``: the registry's decorator, adding to every result's evidence ``network_ms`` (the time
this check's API calls spent on the wire, see studiodoctor.backends.kubernetes) and ``cpu_ms`` (the CPU
its thread used): what its ``duration_ms`` holds beyond both is waiting for its turn (the GIL, the run's
per-backend slots), not its own work."""

from __future__ import annotations

import functools
import time

from studiodoctor.backends.kubernetes import SDK_IMPORTS, with_network  # noqa: F401  (SDK_IMPORTS: re-exported)
from studiodoctor.registry import check as register

API = "kubernetes.api"
PERMISSIONS = "kubernetes.permissions"
DEPLOYMENTS = "kubernetes.deployments"
PODS_READY = "kubernetes.pods_ready"
PODS_CRASHING = "kubernetes.pods_crashing"
PODS_OOMKILLED = "kubernetes.pods_oomkilled"
PODS_RESTARTS = "kubernetes.pods_restarts"
PODS_PENDING = "kubernetes.pods_pending"
EVENTS = "kubernetes.events"
MEMORY = "kubernetes.memory"
INGRESS_CONTROLLER = "kubernetes.ingress_controller"
INGRESS_PODS = "kubernetes.ingress_pods"

# The frontend's readiness probe is GET /healthz on 8081 (gunicorn, queries PostgreSQL): when these fail,
# pods not Ready are their consequence, not the root cause (a lock /healthz's query waits behind too).
# a frontend pod is Ready only when each of its containers is: nginx down beside gunicorn makes it not Ready
READINESS_EXPLAINERS = ("app.healthz", "nginx.reachable", "postgres.reachable", "postgres.connections",
                        "postgres.locks")


def check(id: str, **meta):
    """``studiodoctor.registry.check``, the result carrying ``evidence.network_ms`` and ``cpu_ms``."""

    def decorate(func):
        @functools.wraps(func)
        def measured(ctx):
            cpu = time.thread_time()
            result = with_network(ctx, func(ctx))
            if isinstance(getattr(result, "evidence", None), dict):
                result.evidence.setdefault("cpu_ms", round((time.thread_time() - cpu) * 1000, 1))
            return result

        register(id, **meta)(measured)
        return func

    return decorate
