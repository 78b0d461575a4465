"""How an HTTP layer inside the cluster (``app``, ``nginx``) is reached, and its checks run once per place.

The profile's URL keeps priority (a port-forward, the in-cluster profile): one ``Hop`` straight to it.
Without one, the frontend pods (``discovery.frontend``) are reached one by one through the Kubernetes API
server's pod proxy (``backends.kube_proxy``), with the kubeconfig's credentials: one ``Hop`` per pod.

``run_each(ctx, layer, probe)`` runs a check's body ``probe(hctx)`` for every hop, concurrently within the
runner's per-backend cap, each with a ``HopContext`` (the check's context, its ``hop`` beside), and merges
the verdicts: "1 of 3 pods: /en/accounts/ answered 500 (master-studio-...-00002)" is that check's verdict,
never a lucky pass of whichever pod answered. A body reaches its hop through ``request(hctx, ...)`` and
names it with ``address(hctx, path)`` and ``curl(hctx, path)``; a body that samples a request several times
calls ``request`` as often as it likes. When the API server itself refuses (a missing ``pods/proxy`` grant,
a pod gone) or does not answer, the hop's verdict is an ``error`` naming that, never the app's ``fail``.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..model import Command, Reason, Result, Status, error, skip

URL_KEYS = {"app": "app.url", "nginx": "nginx.url"}
# what the checks that probe through the API server declare (studiodoctor.preflight.rbac reads it)
PROXY_GRANT = "get pods/proxy (without app.url / nginx.url: through the API server)"
VIA_PROXY = "API server pod proxy"
# Pods a check probes at once: the runner's per-backend cap (studiodoctor.runner.PER_BACKEND, a test keeps
# them equal); each pod then gets at most what a backend reached directly gets (see _slots).
IN_FLIGHT = 3


@dataclass(frozen=True)
class Hop:
    """One place a check of ``layer`` probes: ``base`` (the profile's URL) or ``target`` (a pod's port behind
    the API server at ``api``)."""

    layer: str
    base: str = ""
    target: object = None          # studiodoctor.backends.kube_proxy.ProxyTarget
    api: str = ""
    ready: bool = True

    @property
    def via(self) -> str:
        return "direct" if self.base else "api-proxy"

    @property
    def pod(self) -> str:
        return self.target.name if self.target is not None else ""

    def address(self, path: str = "") -> str:
        return self.base + path if self.base else self.api.rstrip("/") + self.target.path(path or "/")


class HopContext:
    """A check's context for one hop: everything of ``ctx`` (deadline, settings, network clock), and ``hop``."""

    def __init__(self, ctx, hop: Hop):
        self._ctx, self.hop, self.refused = ctx, hop, None

    def __getattr__(self, name):
        return getattr(self._ctx, name)


def hop_of(ctx) -> Hop:
    """The hop a check body probes: its HopContext's, else the profile's URL (a body called directly)."""
    hop = getattr(ctx, "hop", None)
    if isinstance(hop, Hop):
        return hop
    return Hop(ctx.check.layer if getattr(ctx, "check", None) else "", base=str(ctx.config.get("url", "")).rstrip("/"))


def address(ctx, path: str = "") -> str:
    return hop_of(ctx).address(path)


def curl(ctx, path: str, method: str = "GET", note: str = "the same request by hand") -> Command:
    """The hop's request by hand: curl for a URL, ``kubectl get --raw`` through the API server's proxy."""
    hop = hop_of(ctx)
    if hop.base:
        flag = " -I" if method == "HEAD" else ""
        return Command(f"curl -sS{flag} -m 10 -A 'Studio-Internal-Prober studiodoctor' '{hop.base}{path}'", note=note)
    from studiodoctor.backends.kubectl import command

    return Command(command(ctx.profile, f"get --raw '{hop.target.path(path)}'", None), note=note)


def request(ctx, method: str, path: str, *, headers: dict | None = None, timeout: float | None = None):
    """One request to the context's hop: the response (any status), or the network's exception. Through the
    API server, a refusal of its own is recorded on the context (``refused``) and raised."""
    hop = hop_of(ctx)
    if hop.base:
        from studiodoctor.probes import http as httpprobe

        return httpprobe.request(ctx, method, hop.base + path, headers=headers, timeout=timeout)
    from studiodoctor.backends import kube_proxy as kp

    if method.upper() not in kp.READ_METHODS:
        exc = NotThroughProxy(f"{method} cannot pass the API server's proxy with a read-only grant (get: GET "
                              f"and HEAD only)")
        ctx.refused = exc
        raise exc
    with _slots(ctx, hop):
        try:
            return kp.proxy_request(ctx, hop.target, path, method=method, headers=headers, timeout=timeout)
        except kp.ProxyRefused as exc:
            if exc.kind != "unreachable":  # the pod did not answer the API server: the hop's own failure
                ctx.refused = exc
            raise
        except kp.ProxyUnavailable as exc:
            ctx.refused = exc
            raise
        except Exception as exc:
            if not _pod_was_slow(exc):  # never reached the API server: not the pod's fault
                ctx.refused = exc
            raise


def get_at(ctx, base: str, path: str, *, headers: dict | None = None, timeout: float | None = None):
    """GET ``base + path`` for a discovery helper given a base URL: through the context's hop when ``base`` is
    that hop's address (a pod behind the API server), else straight (``probes.http``)."""
    if getattr(ctx, "hop", None) is not None and base.rstrip("/") == address(ctx).rstrip("/"):
        return request(ctx, "GET", path, headers=headers, timeout=timeout)
    from studiodoctor.probes import http as httpprobe

    return httpprobe.request(ctx, "GET", base.rstrip("/") + path, headers=headers, timeout=timeout)


class NotThroughProxy(Exception):
    """A request the API server's proxy cannot carry for a read-only doctor (a method other than GET/HEAD)."""


def _pod_was_slow(exc: BaseException) -> bool:
    """A read timeout: the API server took the request and waited on the pod, which did not answer in time."""
    return "ReadTimeout" in type(exc).__name__ or "Read timed out" in str(exc)


def _slots(ctx, hop: Hop):
    """At most as many requests in flight to one pod's port, in the whole run, as sampling sends to one
    backend reached directly (``probes.sampling.CONCURRENCY``): a pod is never asked harder through the API
    server than straight; the pods themselves are taken IN_FLIGHT at a time."""
    from studiodoctor.probes.sampling import CONCURRENCY

    key = f"reach:slots:{hop.target.namespace}/{hop.target.ident}"
    return ctx.shared.get(key, lambda: threading.BoundedSemaphore(CONCURRENCY))


def sibling(ctx, layer: str):
    """A HopContext for ``layer`` beside the context's hop: ``<layer>.url`` when set, else, when the context
    reaches a pod through the API server, the same pod's ``layer`` port; None when neither."""
    value = ctx.profile.value(URL_KEYS[layer])
    top = getattr(ctx, "_ctx", ctx)
    if value:
        return HopContext(top, Hop(layer, base=str(value).rstrip("/")))
    hop = hop_of(ctx)
    if hop.base:
        return None
    from .frontend import frontend_pods

    found = frontend_pods(ctx)
    port = None if isinstance(found, Result) else found.ports.get(layer)
    if not port:
        return None
    target = type(hop.target)(hop.target.kind, hop.target.namespace, hop.target.name, str(port))
    return HopContext(top, Hop(layer, target=target, api=hop.api, ready=hop.ready))


def hops(ctx, layer: str):
    """Where ``layer``'s checks probe: [Hop] or the Result to return (skip/error, saying why)."""
    key = URL_KEYS[layer]
    value = ctx.profile.value(key)
    if value:
        return [Hop(layer, base=str(value).rstrip("/"))]
    var = getattr(value, "var", None)
    if var:
        return skip(f"{key} is not set (${{{var}}} is unset)", reason=Reason.NOT_CONFIGURED,
                    hint=f"export {var}, or unset {key} to reach the pods through the API server's proxy")
    from studiodoctor.backends import kubernetes as kc
    from studiodoctor.backends.kube_proxy import ProxyTarget

    from .frontend import frontend_pods

    found = frontend_pods(ctx)
    if isinstance(found, Result):
        found = Result(**{**found.__dict__, "summary": f"{key} is not set and {found.summary}",
                          "hint": found.hint or f"set {key} (e.g. to a kubectl port-forward), or a kubeconfig"})
        return found
    port = found.ports.get(layer)
    if not port:
        return error(f"{key} is not set and the frontend pods declare no {layer} port (container "
                     f"{found.containers.get(layer) or '?'}): set {layer}.pod_port", reason=Reason.NOT_CONFIGURED,
                     evidence={"deployment": found.deployment, "containers": found.containers})
    api = kc.connection(ctx).address
    return [Hop(layer, target=ProxyTarget("pods", found.namespace, p["metadata"]["name"], str(port)), api=api,
                ready=p["metadata"]["name"] not in found.not_ready) for p in found.pods]


def run_each(ctx, layer: str, probe) -> Result:
    """``probe(hctx)`` once per hop of ``layer`` (see the module's docstring), merged into one Result."""
    found = hops(ctx, layer)
    if isinstance(found, Result):
        return found
    if len(found) == 1 and found[0].base:
        return probe(HopContext(ctx, found[0]))  # the profile's URL: the check as it always was

    def one(hop: Hop) -> Result:
        hctx = HopContext(ctx, hop)
        result = probe(hctx)
        return refusal(hctx, hctx.refused) if hctx.refused is not None else result

    with ThreadPoolExecutor(max_workers=min(IN_FLIGHT, len(found))) as pool:
        results = list(pool.map(one, found))
    return merge(ctx, found, results)


def refusal(ctx, exc: BaseException) -> Result:
    """The hop's verdict when the way to it failed, not the pod: an ``error`` (or ``skip``) naming the way."""
    from studiodoctor.backends import kube_proxy as kp
    from studiodoctor.backends.kubectl import command

    hop = hop_of(ctx)
    where = f"pod {hop.pod}"
    if isinstance(exc, NotThroughProxy):
        return skip(str(exc), reason=Reason.NOT_APPLICABLE,
                    hint=f"Set {URL_KEYS[hop.layer]} (e.g. to a kubectl port-forward) for this check.")
    if isinstance(exc, kp.ProxyUnavailable):
        return skip(f"no Kubernetes API to reach {where} through: {exc.detail}", reason=Reason.NOT_CONFIGURED)
    if isinstance(exc, kp.ProxyRefused):
        ev = {"pod": hop.pod, "api_status": exc.code, "api_message": exc.message[:200]}
        if exc.kind == "forbidden":
            return error(f"cannot reach {where} through the API server: forbidden (grant {exc.rule})",
                         reason=Reason.FORBIDDEN, evidence=ev,
                         hint=f"Our credentials lack `get {exc.target.resource}` in namespace "
                              f"{exc.target.namespace}: grant it (read-only), or set {URL_KEYS[hop.layer]}.",
                         commands=[Command(command(ctx.profile, f"auth can-i get {exc.target.resource}",
                                                   exc.target.namespace), note="what the API server says about us")])
        if exc.kind == "unauthorized":
            return error(f"cannot reach {where}: the API server rejected our credentials (401)", reason=Reason.AUTH,
                         evidence=ev, hint="Refresh the kubeconfig's credentials.")
        return error(f"cannot reach {where} through the API server: {exc.message or exc.reason}"[:300], evidence=ev,
                     hint="The pod may have been replaced during the run: re-run.")
    from studiodoctor.probes.http import describe_error

    _, text = describe_error(exc)
    return error(f"cannot reach {where}: the Kubernetes API at {hop.api} does not answer ({text})"[:300],
                 reason=Reason.UNREACHABLE, evidence={"pod": hop.pod, "api": hop.api, "error": text},
                 hint="The route through the API server failed, not the pod: `studiodoctor check --layer "
                      "kubernetes`.")


def merge(ctx, found: list[Hop], results: list[Result]) -> Result:
    """One verdict of many pods: the worst, counted and named ("2 of 5 pods: ... (a, b); 3 ok")."""
    pairs = list(zip(found, results))
    worst = max(results, key=lambda r: r.status.rank)
    bad = [h.pod for h, r in pairs if r.status is worst.status]
    n = len(pairs)
    if len(bad) == n and len({r.summary for r in results}) == 1 and worst.status is not Status.OK:
        summary, base = f"every pod ({n}): {worst.summary}", worst  # one answer for all (a skip, a refusal)
    elif worst.status is Status.OK:
        slowest = max(pairs, key=lambda p: p[1].evidence.get("latency_s") or 0)
        summary, base = f"{n} of {n} pods: {slowest[1].summary}", slowest[1]
    else:
        summary, base = f"{len(bad)} of {n} pods: {worst.summary} ({', '.join(bad[:5])})", worst
        others = {}
        for h, r in pairs:
            if r.status is not worst.status:
                others[r.status.value] = others.get(r.status.value, 0) + 1
        if others:
            summary += "; " + ", ".join(f"{k} {s}" for s, k in others.items())
    hop = found[0]
    evidence = {**base.evidence, "via": VIA_PROXY, "pods_probed": n,
                "pods": {h.pod: f"{r.status.value}: {r.summary[:160]}" for h, r in pairs}}
    if not all(h.ready for h in found):
        evidence["note"] = "no pod is Ready: these are the not-Ready ones"
    evidence["namespace"] = hop.target.namespace
    commands = list(base.commands)
    if worst.status in (Status.FAIL, Status.WARN) and len(bad) < n:  # one pod's own story: its logs, its events
        from studiodoctor.backends.kubectl import command

        commands[:0] = [Command(command(ctx.profile, f"logs {bad[0]} --all-containers --tail=100"),
                                note=f"the failing pod's own logs ({len(bad)} of {n} fail)"),
                        Command(command(ctx.profile, f"describe pod {bad[0]}"), note="its events and restarts")]
    return Result(status=worst.status, summary=summary[:400], evidence=evidence, hint=base.hint,
                  commands=commands, reason=base.reason)
