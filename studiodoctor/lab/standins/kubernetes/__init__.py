"""A Kubernetes API stand-in: a small threaded stdlib HTTP server serving the real API's JSON shapes.

No kube-apiserver can run here (see local-counterparts §5), so the lab and the tests serve pods,
deployments, events, ingresses, ingress classes, services and their endpoints, SelfSubjectAccessReview,
``/version/``, (optionally) the metrics API, the ``pods/proxy`` and ``services/proxy`` subresources
(relayed to the lab's real processes) and ``pods/portforward`` (a WebSocket, ``v4.channel.k8s.io``, to them) from a JSON *state file* that the server rereads on every request.
The doctor (and the real ``kubernetes`` client) talk to it unchanged (``kubernetes.api_url``).

State file (``KubeAPIServer.state_file``)::

    {"namespaces": {"studio": {"pods": [...], "deployments": [...], "events": [...], "ingresses": [...],
                               "services": [...]},          # endpoints: computed from pods at read time
                    "kube-system": {...}},
     "ingressclasses": [...],
     "metrics": {"studio": [PodMetrics...]} | null,      # null: no metrics API (404)
     "deny": [{"verb": "list", "resource": "pods", "group": "", "namespace": "studio"},
              {"verb": "get", "resource": "services/proxy", "namespace": "studio", "except_names": ["doctor"]}],
     "network": {"10.8.1.10:8081": "127.0.0.1:41234"},    # pod IP:port -> the lab process playing it
     "token": "",                                         # non-empty: Bearer token required (else 401)
     "user": "system:serviceaccount:studio:studiodoctor",
     "faults": ["crashloop", ...],                        # applied at read time, see FAULTS
     "config": {"namespace": "studio", "traefik_namespace": "kube-system"}}

Faults are applied when a request is served (timestamps relative to *now*), so a lab left running
still shows "restarted 2 minutes ago", and ``fix`` is removing the name from ``faults``.

Modules: ``objects`` (the API objects and a healthy namespace: ``studio_state``, ``variant_state``),
``faults`` (applied at read time), ``network`` (endpoints from pods, the pod network map), ``kubelet`` (a
background prober: each pod's readiness from its own readinessProbe, as a kubelet keeps it; ``GET
/_lab/kubelet`` its progress), ``proxy`` (the proxy subresources), ``portforward`` (the port-forward
subresource), ``backing`` (Redis and the Cloud SQL proxy as the cluster lists them, Traefik's API port),
``doctor`` (the in-cluster doctor's objects), ``server`` (the routes, as a table),
``launcher``. Every request
is recorded in ``kubernetes.requests.jsonl`` beside the state file (studiodoctor.lab.methodlog).

Run as a process: ``python -m studiodoctor.lab.standins.kubernetes --port N --state FILE``.
"""

from __future__ import annotations

from .faults import (DEFAULT_CONTAINERS, DEFAULT_TIER_LABELS, FAULTS, _crash, _degrade, _deployment,  # noqa: F401
                     _pods, _set_ready, effective_state)
from .objects import (DEFAULT_USER, INGRESS_CONTROLLERS, VERSION, container, deployment, event,  # noqa: F401
                      frontend_pod, ingress, ingress_class, ingress_nginx_pod, now, parse_quantity, pod, pod_metrics,
                      pod_ip, running_status, service, studio_state, traefik_pod, ts, variant_state, worker_pod)
from .launcher import KubeAPIServer, main  # noqa: F401
from .server import ROUTES, match_labels, serve  # noqa: F401
