"""What the traefik checks share: the check ids, GETs to the Traefik API (failures become a ``Stop``), its
paginated router/service lists, the hostnames and how a router rule matches one, and when the layer applies
(Traefik is the ingress)."""

from __future__ import annotations

import base64
import re

from studiodoctor.backends import kubernetes as kube_backend
from studiodoctor.backends.kubernetes import hostnames, kubectl, traefik_namespace
from studiodoctor.model import READ_ONLY, Command, Reason, Stop, error, unreachable


# imported by the runner before any check starts (see studiodoctor.runner.preload)
SDK_IMPORTS = ("httpx", *kube_backend.SDK_IMPORTS)  # cryptography: see probes.tls

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
    from studiodoctor.probes import http as httpprobe

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


def _list(ctx, kind: str, *, prefetch: bool = False) -> list[dict]:
    """All objects of /api/<kind> (e.g. "http/routers"), following X-Next-Page; cached for the run.
    ``prefetch``: only start fetching it in the background (returns [])."""

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

    if prefetch:
        ctx.shared.prefetch(f"traefik:list:{_base(ctx)}:{kind}", guarded)
        return []
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
