"""The Traefik API: traefik.api (answers), traefik.overview (no configuration errors)."""

from __future__ import annotations

from studiodoctor.model import Reason, Stop, error, ok, warn
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import API, OVERVIEW, _applicable, _base, _curl, _get, _list


@check(API, title="Traefik API answers", needs=("traefik.api_url",), permissions=("GET /api/version",), smoke=True)
@_applicable
def check_api(ctx):
    """The Traefik API answers /api/version at ``traefik.api_url`` (e.g. a port-forward to :9000).

    The other API checks depend on it. Fix: `kubectl -n kube-system port-forward deploy/traefik 9000:9000`
    and set traefik.api_url = "http://127.0.0.1:9000" (the API is never exposed publicly)."""
    for kind in ("http/routers", "http/services"):  # what traefik.routers and traefik.services read next
        _list(ctx, kind, prefetch=True)
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
