"""What the modules of the kubernetes layer share: the check ids, the checks that explain a pod not
Ready, and ``check``: the registry's decorator, adding ``network_ms`` (the time this check's API calls
spent on the wire, see studiodoctor.backends.kubernetes) to every result's evidence."""

from __future__ import annotations

import functools

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
# pods not Ready are their consequence, not the root cause.
READINESS_EXPLAINERS = ("app.healthz", "postgres.reachable", "postgres.connections")


def check(id: str, **meta):
    """``studiodoctor.registry.check``, the result carrying ``evidence.network_ms``."""

    def decorate(func):
        @functools.wraps(func)
        def measured(ctx):
            return with_network(ctx, func(ctx))

        register(id, **meta)(measured)
        return func

    return decorate
