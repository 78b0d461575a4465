"""How each layer will be reached from where the doctor runs, read from the profile alone (no network):
``direct`` (an address the profile gives), ``api-proxy`` (through the Kubernetes API server's pod proxy),
``cluster-doctor`` (asked of the in-cluster doctor), ``port-forward`` (a tunnel to the layer's pod through
the API server, opened for the run: ``studiodoctor.tunnels``), or ``unreachable`` (and why, and what would
open a way). A way tried after another when that one is not there (no in-cluster doctor deployed: a
port-forward) is said after it ("else ..."). ``config show`` prints it; ``diagnose`` reaches the layers the same way.

The table is data: ``LAYER_WAYS`` says, per layer, which profile keys reach it directly and which other
ways may carry it, tried in order; ``WAYS`` says when each such way is open for a profile. A new way in
is one function in ``WAYS`` and its name in the layers it carries.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

# layer -> (keys that reach it directly: any one set is enough; the other ways that may carry it, in order)
LAYER_WAYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "local": ((), ()),
    "dns": (("dns.hostnames", "public_urls"), ()),
    "cloudflare": (("cloudflare.api_token",), ()),
    "edge": (("public_urls",), ()),
    "traefik": (("traefik.api_url",), ("cluster-doctor", "port-forward")),
    "kubernetes": (("kubernetes.api_url", "kubernetes.kubeconfig"), ("kubeconfig",)),
    "nginx": (("nginx.url",), ("api-proxy",)),
    "app": (("app.url",), ("api-proxy",)),
    "trace": ((), ("hops",)),
    "redis": (("redis.url",), ("cluster-doctor", "port-forward")),
    "celery": (("celery.broker_url", "redis.url"), ("cluster-doctor", "port-forward")),
    "postgres": (("postgres.dsn",), ("cluster-doctor", "port-forward")),
    "gcs": (("gcs.bucket",), ()),
    "sentry": (("sentry.auth_token",), ()),
    "newrelic": (("newrelic.api_key",), ()),
    "email": (("email.server_token", "email.smtp_host"), ()),
}


@dataclass(frozen=True)
class Way:
    layer: str
    how: str        # direct | api-proxy | cluster-doctor | kubeconfig | unreachable
    detail: str     # the key and value used, or why no way is open and what would open one


def _kubernetes_reachable(profile) -> str:
    """The kubeconfig or API address the doctor would use ("" when none): no file is parsed, no call made."""
    section = profile.section("kubernetes")
    if section.get("api_url"):
        return f"kubernetes.api_url {section['api_url']}"
    path = os.path.expanduser(section.get("kubeconfig") or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
                              or "~/.kube/config")
    if os.path.isfile(path):
        context = section.get("context")
        return f"kubeconfig {path}" + (f" (context {context})" if context else "")
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return "the in-cluster service account"
    return ""


def _api_proxy(profile, layer: str) -> str:
    kube = _kubernetes_reachable(profile)
    if not kube:
        return ""
    ns = profile.section("kubernetes").get("namespace") or "studio"
    return f"every Ready frontend pod in namespace {ns}, one by one, through the API server's pod proxy ({kube})"


def _trace_hops(profile, layer: str) -> str:
    """The trace follows one request through the hops of the layers it crosses, each reached its own way."""
    origin = "direct" if _set(profile, "traefik.entrypoint") is not None else "unreachable"  # traefik.entrypoint
    parts = [f"edge: {way_for(profile, 'edge').how}", f"origin: {origin}",
             *(f"{hop}: {way_for(profile, hop).how}" for hop in ("nginx", "app"))]
    return "its hops as their layers: " + ", ".join(parts)


def _cluster_doctor(profile, layer: str) -> str:
    """The in-cluster doctor (``studiodoctor.vantage``) is asked, through the API server's service proxy, for
    the checks whose endpoint this profile does not give."""
    kube = _kubernetes_reachable(profile)
    if not kube:
        return ""
    service = profile.section("kubernetes").get("doctor", {}) or {}
    named = service.get("service") if isinstance(service, dict) else ""
    return (f"asked of the in-cluster doctor ({named or 'its Service, discovered by label'}) through the API "
            f"server's service proxy ({kube})")


# the profile key that holds the credentials a port-forward of the layer needs ("" none: studiodoctor.tunnels)
PORT_FORWARD_CREDENTIALS = {"redis": "", "celery": "", "postgres": "postgres.port_forward_dsn", "traefik": ""}
PORT_FORWARD_TO = {"redis": "the pod that runs Redis", "celery": "the pod that runs Redis",
                   "postgres": "the pod that runs the Cloud SQL proxy", "traefik": "Traefik's pod (its API port)"}


def _port_forward(profile, layer: str) -> str:
    """A port-forward opened for the run (create pods/portforward) to the pod that plays the layer's endpoint."""
    kube = _kubernetes_reachable(profile)
    if not kube:
        return ""
    needs = PORT_FORWARD_CREDENTIALS.get(layer, "")
    if needs and _set(profile, needs) is None:
        return ""
    creds = f", credentials from {needs}" if needs else ""
    return (f"a port-forward to {PORT_FORWARD_TO.get(layer, 'its pod')} through the API server, for this run "
            f"only ({kube}; create pods/portforward{creds})")


# way -> when it is open for this profile and layer: a description, or "" when it is not
WAYS: dict[str, Callable[[object, str], str]] = {
    "api-proxy": _api_proxy,
    "cluster-doctor": _cluster_doctor,
    "hops": _trace_hops,
    "kubeconfig": lambda profile, layer: _kubernetes_reachable(profile),
    "port-forward": _port_forward,
}
# what would open a way for a layer no way reaches
OPEN_HINTS = {"api-proxy": "a kubeconfig (kubernetes.kubeconfig, $KUBECONFIG or ~/.kube/config) with get pods/proxy",
              "cluster-doctor": "a kubeconfig and deploy/'s in-cluster doctor (get services/proxy on its Service)",
              "kubeconfig": "a kubeconfig (kubernetes.kubeconfig, $KUBECONFIG or ~/.kube/config)",
              "port-forward": "a kubeconfig with create pods/portforward (and, for postgres, "
                              "postgres.port_forward_dsn)"}


def _set(profile, key: str):
    value = profile.value(key)
    return value if value not in (None, "", [], {}) else None


def way_for(profile, layer: str) -> Way:
    keys, others = LAYER_WAYS.get(layer, ((), ()))
    if not keys and not others:
        return Way(layer, "direct", "this machine itself")
    for key in keys:
        value = _set(profile, key)
        if value is not None:
            shown = profile.redacted_value(key) if hasattr(profile, "redacted_value") else value
            return Way(layer, "direct" if key not in ("kubernetes.api_url", "kubernetes.kubeconfig") else "kubeconfig",
                       f"{key} = {shown}")
    open_ways = [(name, detail) for name in others if (detail := WAYS[name](profile, layer))]
    if open_ways:
        (name, detail), *rest = open_ways
        return Way(layer, name, detail + "".join(f"; else {then}" for _, then in rest))
    needs = " or ".join(keys) if keys else "nothing"
    opens = "; or ".join(OPEN_HINTS[n] for n in others if n in OPEN_HINTS)
    return Way(layer, "unreachable", f"{needs} not set" + (f"; {opens} would open a way" if opens else ""))


def reach_plan(profile, layers=None) -> list[Way]:
    """How each layer (default: every layer of LAYER_WAYS) will be reached with ``profile``."""
    return [way_for(profile, layer) for layer in (layers or LAYER_WAYS)]
