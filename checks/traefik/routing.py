"""Routing by Host: traefik.routers (a TLS router for each hostname), traefik.services (their servers UP)."""

from __future__ import annotations

from urllib.parse import quote

from checks.kubernetes.common import DEPLOYMENTS, PODS_CRASHING, PODS_OOMKILLED, PODS_READY
from studiodoctor.backends.kubernetes import kubectl
from studiodoctor.model import READ_ONLY, Command, Reason, Stop, fail, ok, skip, warn
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import API, ROUTERS, SERVICES, _applicable, _curl, _get, _list, _qualify, _routes, traefik_hostnames


@check(ROUTERS, title="A TLS router for each hostname is enabled", depends_on=(API,),
       permissions=("GET /api/http/routers",))
@_applicable
def check_routers(ctx):
    """For each hostname (``traefik.hostnames``, else ``dns.hostnames`` and ``public_urls``) a router whose
    rule names it exists, is enabled and has TLS.

    No router: Traefik answers 404 for the host. A disabled router carries Traefik's error (e.g. `the
    service "x" does not exist`). No TLS router: HTTPS requests for the host get 404 (the
    multiplexing Traefik used Ingresses with `kubernetes.io/ingress.class: traefik`)."""
    hosts = traefik_hostnames(ctx)
    if not hosts:
        return skip("no hostnames to look for (set dns.hostnames or traefik.hostnames)", reason=Reason.NOT_CONFIGURED)
    try:
        routes = _routes(ctx)
    except Stop as exc:
        return exc.result
    problems = []
    for host, r in routes.items():
        if not r["routers"]:
            problems.append(f"no router matches Host(`{host}`) (Traefik answers 404)")
        elif not r["enabled"]:
            errs = "; ".join(e for x in r["routers"] for e in x["error"]) or "disabled"
            problems.append(f"router {', '.join(x['name'] for x in r['routers'])} for {host} is disabled: {errs}")
        elif not r["tls"]:
            problems.append(f"no TLS router for {host} (router {', '.join(r['enabled'])} has no tls section)")
    ev = {"hostnames": routes}
    cmds = [_curl(ctx, "/api/http/routers"), Command(kubectl(ctx, "get ingress,ingressroute -A", None), READ_ONLY)]
    if problems:
        return fail("; ".join(problems)[:600], evidence=ev, commands=cmds,
                    hint="Fix the router's source (Ingress/IngressRoute/file provider): its rule, service name and "
                         "tls section.")
    return ok("; ".join(f"{h} -> {', '.join(r['tls'])} (service {', '.join(r['services'])})"
                        for h, r in routes.items())[:400], evidence=ev)


def _servers(ctx, name: str, depth: int = 0) -> tuple[dict[str, str], list[str], str]:
    """(server url -> UP/DOWN, health notes, error) of a service, following weighted/failover children:
    from the run's list of services (fetched once, while traefik.api ran), else asked by name."""
    listed = next((s for s in _list(ctx, "http/services") if s.get("name") == name), None)
    status, body, _ = (200, listed, None) if listed is not None else \
        _get(ctx, f"/api/http/services/{quote(name, safe='@')}")
    if status == 404:
        return {}, [], f"service {name} does not exist"
    if status != 200 or not isinstance(body, dict):
        return {}, [], f"service {name}: HTTP {status}"
    if body.get("status") != "enabled" and body.get("error"):
        return {}, [], f"service {name} {body.get('status')}: {'; '.join(body['error'])}"
    provider = body.get("provider", "")
    if "loadBalancer" in body:
        lb = body["loadBalancer"] or {}
        servers = [s.get("url") or s.get("address") for s in lb.get("servers") or []]
        states = body.get("serverStatus") or {}
        hc = lb.get("healthCheck")
        notes = [f"{name}: Traefik's health check GET {hc.get('path', '/')} every {hc.get('interval', '30s')}, "
                 f"timeout {hc.get('timeout', '5s')}"] if isinstance(hc, dict) else \
            [f"{name} has no healthCheck: Traefik reports servers UP unchecked"]
        return {s: states.get(s, "UP" if not lb.get("healthCheck") else "UNKNOWN") for s in servers}, notes, ""
    children = []
    if "weighted" in body:
        children = [c.get("name") for c in (body["weighted"] or {}).get("services") or []]
    elif "failover" in body:
        children = [(body["failover"] or {}).get("service"), (body["failover"] or {}).get("fallback")]
    elif "mirroring" in body:
        children = [(body["mirroring"] or {}).get("service")]
    merged, notes, errs = {}, [], []
    for child in filter(None, children):
        if depth > 3:
            break
        s, n, e = _servers(ctx, _qualify(child, provider), depth + 1)
        merged.update(s)
        notes += n
        if e:
            errs.append(e)
    return merged, notes, "; ".join(errs)


@check(SERVICES, title="The hostnames' services have servers UP", depends_on=(ROUTERS,),
       permissions=("GET /api/http/services",),
       explained_by=(PODS_READY, PODS_CRASHING, PODS_OOMKILLED, DEPLOYMENTS, "nginx.reachable", "nginx.app_proxy",
                     "app.stealthz", "app.healthz"), smoke=True)
@_applicable
def check_services(ctx):
    """The service behind each hostname's router: its load balancer's servers and their health status.

    A server DOWN failed Traefik's health check: the backend (Service -> nginx :8080 -> gunicorn :8081)
    does not answer. All servers DOWN = Traefik answers 503 ("no available server") and CloudFlare
    shows 5xx. The usual cause is deeper (pods not Ready, nginx or the app down), so those layers
    explain this check's failure."""
    try:
        routes = _routes(ctx)
        services = sorted({s for r in routes.values() for s in r["services"]})
        rows, notes, problems, degraded = {}, [], [], []
        for name in services:
            servers, n, err = _servers(ctx, name)
            notes += n
            rows[name] = servers
            if err:
                problems.append(err)
            elif not servers:
                problems.append(f"service {name} has no servers (no endpoints)")
            else:
                down = [s for s, st in servers.items() if st != "UP"]
                if len(down) == len(servers):
                    problems.append(f"all {len(servers)} server(s) of {name} DOWN: {', '.join(down[:3])}")
                elif down:
                    degraded.append(f"{len(down)}/{len(servers)} server(s) of {name} DOWN: {', '.join(down[:3])}")
    except Stop as exc:
        return exc.result
    ev = {"services": rows, "notes": notes}
    cmds = [_curl(ctx, f"/api/http/services/{services[0]}" if services else "/api/http/services")]
    down_urls = [s for r in rows.values() for s, st in r.items() if st != "UP"]
    if down_urls:
        cmds.append(Command(f"curl -sS -o /dev/null -w '%{{http_code}}\\n' {down_urls[0]}/", READ_ONLY,
                            "from inside the cluster network"))
    if problems:
        return fail("; ".join(problems)[:500], evidence=ev, commands=cmds,
                    hint="Traefik's health check cannot reach the backend: check the pods (kubernetes), the nginx "
                         "sidecar on 8080 and gunicorn on 8081.")
    if degraded:  # with the health check that judged them: a timeout below the app's slow moments says so
        return warn("; ".join(degraded + [n for n in notes if "health check" in n])[:500], evidence=ev, commands=cmds)
    total = sum(len(r) for r in rows.values())
    return ok(f"{total} server(s) UP across {len(rows)} service(s): {', '.join(rows)}"[:300], evidence=ev)
