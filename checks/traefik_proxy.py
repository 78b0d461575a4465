"""Layer `traefik`: the API's overview, a router per hostname, its service's servers, the origin
certificate served by SNI at ``traefik.entrypoint``, and Traefik's pods (through the Kubernetes API).

Traefik's OSS API lists no certificates (``/api/tls/certificates`` is 404), so certificates are read
with a TLS handshake per hostname against the entrypoint.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import quote

from checks.kubernetes.common import (API as KUBE_API, DEPLOYMENTS, PODS_CRASHING, PODS_OOMKILLED,  # noqa: F401
                                      PODS_READY)
from studiodoctor.backends import kubernetes as kube_backend
from studiodoctor.backends.kube_pods import ago_text, analyse_pods, limits_of as _limits, mib, parse_quantity  # noqa: F401
from studiodoctor.backends.kubernetes import (hostnames, kube_setting, kubectl, list_objects,  # noqa: F401
                                              listing_problem, traefik_namespace)
from studiodoctor.model import READ_ONLY, Command, Reason, Stop, error, fail, ok, skip, unreachable, warn
from studiodoctor.registry import check

# imported by the runner before any check starts (see studiodoctor.runner.preload)
SDK_IMPORTS = ("httpx", "cryptography.x509", *kube_backend.SDK_IMPORTS)

API = "traefik.api"
OVERVIEW = "traefik.overview"
ROUTERS = "traefik.routers"
SERVICES = "traefik.services"
CERTIFICATES = "traefik.certificates"
PODS = "traefik.pods"


def _base(ctx) -> str:
    return str(ctx.config.get("api_url") or "").rstrip("/")


def _get(ctx, path: str):
    """GET the Traefik API; returns (status, json, headers) or raises Stop with the Result to return."""
    from studiodoctor import httpprobe

    url = _base(ctx) + path
    headers = {"Accept": "application/json"}
    auth = ctx.config.get("api_auth")  # "user:password" when the API sits behind basic auth
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(str(auth).encode()).decode()
    try:
        resp = httpprobe.request(ctx, "GET", url, headers=headers, timeout=ctx.timeout(5))
    except Exception as exc:
        timed_out, text = httpprobe.describe_error(exc)
        forward = kubectl(ctx, "port-forward deploy/traefik 9000:9000", traefik_namespace(ctx))
        raise Stop(unreachable("Traefik API", _base(ctx), text, timed_out=timed_out,
                                      hint=f"Is the API port-forwarded? e.g. {forward}",
                                      commands=[Command(forward, READ_ONLY, "then retry")])) from None
    if resp.status_code in (401, 403):
        raise Stop(error(f"the Traefik API refused us (HTTP {resp.status_code}) on {path}",
                                reason=Reason.AUTH if resp.status_code == 401 else Reason.FORBIDDEN,
                                hint="set traefik.api_auth (\"user:password\") if the API is behind basic auth"))
    body = None
    if resp.status_code == 200:
        try:
            body = resp.json()
        except ValueError:
            raise Stop(error(f"{path} answered 200 but not JSON: is traefik.api_url a Traefik API?",
                                    reason=Reason.UNEXPECTED)) from None
    return resp.status_code, body, resp.headers


def _list(ctx, kind: str) -> list[dict]:
    """All objects of /api/<kind> (e.g. "http/routers"), following X-Next-Page; cached for the run."""

    def fetch():
        items, page = [], 1
        for _ in range(100):
            status, body, headers = _get(ctx, f"/api/{kind}?per_page=200&page={page}")
            if status != 200:
                return ("error", error(f"/api/{kind} answered HTTP {status}", reason=Reason.UNEXPECTED))
            if body is None:
                body = []  # `null`: an empty list
            if not isinstance(body, list) or not all(isinstance(i, dict) for i in body):
                what = type(body).__name__ if not isinstance(body, list) else "a list of non-objects"
                return ("error", error(f"/api/{kind} answered {what}, not the documented list of objects: "
                                       "is traefik.api_url a Traefik v2/v3 API?", reason=Reason.UNEXPECTED,
                                       commands=[_curl(ctx, f"/api/{kind}")]))
            items += body
            nxt = str(headers.get("X-Next-Page") or "")
            if not nxt.isdigit() or int(nxt) <= page:
                break
            page = int(nxt)
        return ("ok", items)

    def guarded():
        try:
            return fetch()
        except Stop as exc:
            return ("error", exc.result)

    status, value = ctx.shared.get(f"traefik:list:{_base(ctx)}:{kind}", guarded)
    if status != "ok":
        raise Stop(value)
    return value


def traefik_hostnames(ctx) -> list[str]:
    return hostnames(ctx, "traefik")


_HOST_FN = re.compile(r"\b(Host|HostSNI|HostRegexp)\(([^)]*)\)")
_QUOTED = re.compile(r"[`\"']([^`\"']+)[`\"']")


def rule_matches(rule: str, host: str) -> bool:
    """Whether a router rule names ``host`` (Host, HostSNI, HostRegexp; v2 and v3 syntaxes)."""
    host = host.lower()
    for fn, args in _HOST_FN.findall(rule or ""):
        for value in _QUOTED.findall(args):
            if fn == "HostRegexp":
                try:
                    if re.fullmatch(value, host, re.IGNORECASE):
                        return True
                except re.error:
                    continue
            elif value.lower() == host or (value.startswith("*.") and host.endswith(value[1:].lower())):
                return True
    return False


def _qualify(name: str, provider: str) -> str:
    return name if "@" in name else f"{name}@{provider}"


def _applicable(fn):
    """Skip a traefik check when the cluster says another controller routes every hostname (DESIGN:
    Studio moved to ingress-nginx in 2020): "not applicable", never fail or error. An answer whose shape
    the API does not document is an error naming it."""
    import functools

    @functools.wraps(fn)
    def run(ctx):
        from checks.kubernetes.ingress import TRAEFIK, not_routed_by

        not_mine = not_routed_by(ctx, TRAEFIK, traefik_hostnames(ctx))
        if not_mine is not None:
            return not_mine
        try:
            return fn(ctx)
        except (AttributeError, TypeError, KeyError, IndexError) as exc:
            # an object whose shape Traefik's API documentation does not have: say so, never "crashed"
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return error(f"unexpected answer from the Traefik API: {type(exc).__name__}: {first}"[:300],
                         reason=Reason.UNEXPECTED, hint="Read the raw answer with the curl command of the check.",
                         commands=[_curl(ctx, "/api/overview")])

    return run


def _curl(ctx, path: str) -> Command:
    return Command(f"curl -sS {_base(ctx)}{path}", READ_ONLY)


@check(API, title="Traefik API answers", needs=("traefik.api_url",), permissions=("GET /api/version",), smoke=True)
@_applicable
def check_api(ctx):
    """The Traefik API answers /api/version at ``traefik.api_url`` (e.g. a port-forward to :9000).

    The other API checks depend on it. Fix: `kubectl -n kube-system port-forward deploy/traefik 9000:9000`
    and set traefik.api_url = "http://127.0.0.1:9000" (the API is never exposed publicly)."""
    try:
        status, body, _ = _get(ctx, "/api/version")
    except Stop as exc:
        return exc.result
    if status != 200 or not isinstance(body, dict):
        return error(f"/api/version answered HTTP {status}: is the Traefik API enabled (api: {{}}) at this address?",
                     evidence={"api_url": _base(ctx), "status": status})
    return ok(f"Traefik {body.get('Version', '?')} API answers at {_base(ctx)}",
              evidence={"api_url": _base(ctx), "version": body.get("Version"), "codename": body.get("Codename")})


@check(OVERVIEW, title="Traefik reports no configuration errors", depends_on=(API,),
       permissions=("GET /api/overview",))
@_applicable
def check_overview(ctx):
    """/api/overview counts routers, services and middlewares in error or warning, and this check names them.

    A router in error is disabled (Traefik answers 404 for its hosts): typically a missing service or
    middleware, a bad rule, or a TLS option that does not exist. Errors on objects that route our
    hostnames make kubernetes-independent `traefik.routers` fail; here they are a `warn`."""
    try:
        status, body, _ = _get(ctx, "/api/overview")
        if status != 200 or not isinstance(body, dict):
            return error(f"/api/overview answered HTTP {status}", reason=Reason.UNEXPECTED)
        counts, broken = {}, []
        for proto in ("http", "tcp", "udp"):
            for kind in ("routers", "services", "middlewares"):
                c = (body.get(proto) or {}).get(kind) or {}
                if not c:
                    continue
                counts[f"{proto}.{kind}"] = {k: c.get(k, 0) for k in ("total", "warnings", "errors")}
                if c.get("errors") or c.get("warnings"):
                    for obj in _list(ctx, f"{proto}/{kind}"):
                        if obj.get("status") != "enabled" or obj.get("error"):
                            broken.append({"kind": f"{proto}.{kind[:-1]}", "name": obj.get("name"),
                                           "status": obj.get("status"), "error": obj.get("error") or []})
    except Stop as exc:
        return exc.result
    errors = sum(c["errors"] for c in counts.values())
    warnings = sum(c["warnings"] for c in counts.values())
    ev = {"counts": counts, "broken": broken[:20], "providers": body.get("providers")}
    cmds = [_curl(ctx, "/api/overview"), _curl(ctx, "/api/http/routers?status=disabled")]
    if errors or warnings:
        names = "; ".join(f"{b['name']} ({b['status']}: {', '.join(b['error'])[:120]})" for b in broken[:4])
        return warn(f"{errors} error(s), {warnings} warning(s) in Traefik's configuration: {names}", evidence=ev,
                    commands=cmds, hint="Objects in error are disabled; read their error and fix the provider "
                                        "config (Ingress/IngressRoute/file).")
    total = sum(c["total"] for c in counts.values())
    return ok(f"no error or warning among {total} routers/services/middlewares", evidence=ev)


def _routes(ctx) -> dict[str, dict]:
    """For each hostname: matching routers and the verdict ingredients."""
    routers = _list(ctx, "http/routers")
    out = {}
    for host in traefik_hostnames(ctx):
        matching = [r for r in routers if rule_matches(r.get("rule", ""), host)]
        enabled = [r for r in matching if r.get("status") == "enabled"]
        tls = [r for r in enabled if r.get("tls") is not None]
        out[host] = {"routers": [{"name": r.get("name"), "status": r.get("status"), "rule": r.get("rule"),
                                  "entryPoints": r.get("entryPoints") or r.get("using") or [],
                                  "service": _qualify(r.get("service", ""), r.get("provider", "")),
                                  "tls": r.get("tls") is not None,
                                  "certResolver": (r.get("tls") or {}).get("certResolver"),
                                  "error": r.get("error") or []} for r in matching],
                     "enabled": [r.get("name") for r in enabled], "tls": [r.get("name") for r in tls],
                     "services": sorted({_qualify(r.get("service", ""), r.get("provider", "")) for r in tls})}
    return out


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
    """(server url -> UP/DOWN, health notes, error) of a service, following weighted/failover children."""
    status, body, _ = _get(ctx, f"/api/http/services/{quote(name, safe='@')}")
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
        notes = [] if lb.get("healthCheck") else [f"{name} has no healthCheck: Traefik reports servers UP unchecked"]
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
    if degraded:
        return warn("; ".join(degraded)[:500], evidence=ev, commands=cmds)
    total = sum(len(r) for r in rows.values())
    return ok(f"{total} server(s) UP across {len(rows)} service(s): {', '.join(rows)}"[:300], evidence=ev)


@check(CERTIFICATES, title="Origin certificate valid for each hostname", needs=("traefik.entrypoint",),
       permissions=("TLS handshake",), smoke=True, metrics=("certificates.*.days_left",))
def check_certificates(ctx):
    """The certificate Traefik serves at ``traefik.entrypoint`` for each hostname's SNI: SAN, expiry, issuer.

    TRAEFIK DEFAULT CERT means no certificate matches the name (ACME/Let's Encrypt failed, or the
    TLS secret/file is missing): CloudFlare in Full (strict) mode then fails with 526. Expiry under
    ``traefik.cert_warn_days`` (14) is a `warn` (Let's Encrypt renews at 30 days left, so renewal is
    failing). ``traefik.expected_issuer`` (e.g. "Let's Encrypt") warns on a different issuer.

    Runs whichever controller routes the hostnames: ``traefik.entrypoint`` is the origin's address
    (DESIGN), and an ingress-nginx origin serving its "Fake Certificate" or an expired secret breaks
    CloudFlare's Full (strict) mode just the same."""
    from studiodoctor.httpprobe import split_target
    from studiodoctor.tlsprobe import handshake_problem, inspect_certificate

    hosts = traefik_hostnames(ctx)
    if not hosts:
        return skip("no hostnames to look for (set dns.hostnames or traefik.hostnames)", reason=Reason.NOT_CONFIGURED)
    entry = str(ctx.config["entrypoint"])
    if "://" not in entry:
        entry = "https://" + entry
    _, addr, port = split_target(entry)
    ca_file = ctx.section("http").get("ca_file") or ""
    warn_days = float(ctx.setting("cert_warn_days", 14))
    expected = str(ctx.setting("expected_issuer", ""))
    certs, problems, warnings, unknown = {}, [], [], []
    for host in hosts:
        try:
            info = inspect_certificate(addr, port, host, timeout=ctx.timeout(5, margin=0.5) / 2, ca_file=ca_file)
        except (OSError, ValueError) as exc:
            return handshake_problem(exc, "Traefik entrypoint", f"{addr}:{port}", host)
        ev = info.evidence()
        ev["traefik_default"] = info.is_traefik_default
        certs[host] = ev
        if info.is_traefik_default:
            problems.append(f"{host}: TRAEFIK DEFAULT CERT served (no certificate for this name)")
        elif info.days_left < 0:
            problems.append(f"{host}: certificate expired {ago_text(-info.days_left * 86400)} "
                            f"({info.not_after:%Y-%m-%d}, issuer {info.issuer})")
        elif not info.names_match:
            problems.append(f"{host}: certificate is for {', '.join(info.sans[:3]) or info.subject}, not {host}")
        elif info.verify_error:
            problems.append(f"{host}: certificate not trusted: {info.verify_error} (issuer {info.issuer})")
        elif info.verify_unknown:
            unknown.append(f"{host}: could not verify the certificate: {info.verify_unknown}")
        elif info.days_left < warn_days:
            warnings.append(f"{host}: certificate expires in {info.days_left:.1f} days ({info.not_after:%Y-%m-%d})")
        elif expected and expected.lower() not in info.issuer.lower():
            warnings.append(f"{host}: issuer {info.issuer}, expected {expected}")
    cmds = [Command(f"openssl s_client -connect {addr}:{port} -servername {hosts[0]} </dev/null 2>/dev/null | "
                    "openssl x509 -noout -subject -issuer -dates -ext subjectAltName", READ_ONLY),
            Command(kubectl(ctx, "logs deploy/traefik --since=24h | grep -i -E 'acme|certificate'",
                            traefik_namespace(ctx)), READ_ONLY, "why ACME did not (re)issue")]
    evidence = {"entrypoint": f"{addr}:{port}", "certificates": certs}
    if problems:
        return fail("; ".join(problems)[:600], evidence=evidence, commands=cmds,
                    hint="Traefik serves its default certificate when none matches the SNI. Check the ACME "
                         "resolver (DNS-01 via CloudFlare) logs and the TLS secret or file of the router.")
    if unknown:
        return error("; ".join(unknown)[:600], evidence=evidence, commands=cmds, reason=Reason.UNEXPECTED)
    if warnings:
        return warn("; ".join(warnings)[:600], evidence=evidence, commands=cmds)
    return ok("; ".join(f"{h}: {c['issuer'][:60]}, {c['days_left']:.0f} days left" for h, c in certs.items())[:400],
              evidence=evidence)


@check(PODS, title="Traefik pods: not OOMKilled, not restarting, memory below limit", depends_on=(KUBE_API,),
       permissions=("list pods in the Traefik namespace", "list pods.metrics.k8s.io"))
@_applicable
def check_pods(ctx):
    """Traefik's own pods, found by what they run (image, ``app.kubernetes.io/name``) in
    ``kubernetes.traefik_namespace`` when set, else in every namespace: Ready, OOMKilled, restarts in
    the restart window, memory vs limit.

    The multiplexing Traefik served every Studio branch with a 1-2Gi memory limit: when it runs out
    of memory it is killed and every hostname answers 502 until it restarts. Skipped when no Traefik
    pod exists there (the ingress controller may be ingress-nginx: see kubernetes.ingress_controller)."""
    from checks.kubernetes.ingress import TRAEFIK, controller_pods, pods_not_found

    pods, looked, failed = controller_pods(ctx, TRAEFIK)
    if not pods:
        if len(failed) == 1 and not looked:
            return failed[0]   # the one place we were told to look could not be read
        return pods_not_found(TRAEFIK, looked, failed) or skip(
            f"no pod runs Traefik in {', '.join(looked)}: the ingress controller may not be Traefik "
            "(kubernetes.ingress_controller says which; kubernetes.traefik_namespace sets where to look)",
            reason=Reason.NOT_APPLICABLE)
    tns = (pods[0].get("metadata") or {}).get("namespace") or traefik_namespace(ctx)
    from datetime import datetime, timezone

    window = float(kube_setting(ctx, "restart_window_minutes", 60)) * 60
    a = analyse_pods(pods, datetime.now(timezone.utc), restart_window=window)
    usage, metrics_note = [], ""
    metrics = list_objects(ctx, "podmetrics", tns)
    if metrics.ok:
        limits = {(p.get("metadata") or {}).get("name"): _limits(p) for p in pods}
        for m in metrics.items:
            name = (m.get("metadata") or {}).get("name")
            if name not in limits:
                continue
            for c in m.get("containers") or []:
                used = parse_quantity((c.get("usage") or {}).get("memory"))
                limit = limits[name].get(c.get("name"))
                if used is not None:
                    usage.append({"pod": name, "container": c.get("name"), "used": mib(used), "limit": mib(limit),
                                  "percent": round(100 * used / limit, 1) if limit else None})
    else:
        metrics_note = ("no metrics API" if metrics.status == "notfound"
                        else f"metrics not readable ({metrics.status})")
    ev = {"namespace": tns, "pods": {w: f"{v['ready']}/{v['pods']} ready" for w, v in a["workloads"].items()},
          "oomkilled": a["oomkilled"], "restarts": a["restarts"], "crashing": a["crashing"],
          "not_ready": a["not_ready"], "memory": usage}
    if metrics_note:
        ev["metrics"] = metrics_note
    first = (pods[0].get("metadata") or {}).get("name", "?")
    cmds = [Command(kubectl(ctx, f"describe pod {first}", tns), READ_ONLY),
            Command(kubectl(ctx, f"logs {first} --previous --tail=100", tns), READ_ONLY, "the killed instance"),
            Command(kubectl(ctx, f"top pod {first} --containers", tns), READ_ONLY)]
    recent_oom = [o for o in a["oomkilled"] if o["age_s"] is not None and o["age_s"] <= window]
    ready = sum(v["ready"] for v in a["workloads"].values())
    problems = []
    if not ready:
        problems.append(f"no Traefik pod Ready in {tns}")
    if a["crashing"]:
        problems.append("; ".join(f"{c['pod']}: {c['reason']}" for c in a["crashing"][:3]))
    if recent_oom:
        problems.append("; ".join(f"{o['pod']} OOMKilled {ago_text(o['age_s'])} (limit {o['memory_limit']}, "
                                  f"{o['restarts']} restarts)" for o in recent_oom[:3]))
    if problems:
        return fail("Traefik: " + "; ".join(problems), evidence=ev, commands=cmds,
                    hint="While Traefik is killed or not Ready every hostname answers 502 at the edge. "
                         "Raise its memory limit or reduce its load (access logs, metrics cardinality).")
    threshold = float(kube_setting(ctx, "memory_warn_percent", 90))
    high = [u for u in usage if u["percent"] is not None and u["percent"] >= threshold]
    warns = []
    if a["restarts"]:
        warns.append("; ".join(f"{r['pod']} restarted {ago_text(r['age_s'])} ({r['last_reason']})"
                               for r in a["restarts"][:3]))
    if a["oomkilled"]:
        warns.append("; ".join(f"{o['pod']} OOMKilled earlier ({o['finished_at']})" for o in a["oomkilled"][:2]))
    if high:
        warns.append("; ".join(f"{u['pod']} memory {u['used']} of {u['limit']} ({u['percent']}%)" for u in high[:3]))
    if a["not_ready"]:
        warns.append(f"{len(a['not_ready'])} Traefik pod(s) not Ready")
    if warns:
        return warn("Traefik: " + "; ".join(warns), evidence=ev, commands=cmds)
    mem = f", memory {usage[0]['used']} of {usage[0]['limit']}" if usage else (f" ({metrics_note})" if metrics_note else "")
    return ok(f"{len(pods)} Traefik pod(s) Ready, no restart in the last {window / 60:g} min{mem}", evidence=ev)
