"""Layer `kubernetes`: deployments, pods, events, memory and the ingress controller of Studio's namespace.

One module per concern, each check found by its id:

- ``access``: kubernetes.api, kubernetes.permissions
- ``workloads``: kubernetes.deployments
- ``pods``: kubernetes.pods_ready, pods_crashing, pods_oomkilled, pods_restarts, pods_pending
- ``events``: kubernetes.events
- ``resources``: kubernetes.memory
- ``ingress``: kubernetes.ingress_controller, kubernetes.ingress_pods

The connection, the lists and what a failed list means are ``studiodoctor.backends.kubernetes``
(every list is ONE call per namespace and kind per run, paginated, raw JSON: a field the SDK's typed
models would reject can never crash a check); the pod analysis is ``studiodoctor.backends.kube_pods``.
A 403 for our credentials is an ``error`` naming the exact RBAC rule to grant, never "no pods found".
"""

from __future__ import annotations

from checks.kubernetes.common import (API, DEPLOYMENTS, EVENTS, INGRESS_CONTROLLER, INGRESS_PODS,  # noqa: F401
                                      MEMORY, PERMISSIONS, PODS_CRASHING, PODS_OOMKILLED, PODS_PENDING, PODS_READY,
                                      PODS_RESTARTS, READINESS_EXPLAINERS, SDK_IMPORTS)

# registration order = report order
from checks.kubernetes import access, workloads, pods, events, resources, ingress  # noqa: E402,F401
