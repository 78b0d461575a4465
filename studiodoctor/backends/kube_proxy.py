"""HTTP through the Kubernetes API server's proxy: ``GET /api/v1/namespaces/NS/pods/NAME:PORT/proxy/PATH``
and ``.../services/[SCHEME:]NAME[:PORT]/proxy/PATH``, with the run's kubeconfig credentials (the shared
client of :mod:`studiodoctor.backends.kubernetes`), the check's deadline, and nothing secret in what comes
back (the answer's request carries no Authorization; errors name the API path, never the token).

What reaches the caller:

- the backend's answer, whatever its status, as an ``httpx.Response`` (the checks read it as they read a
  direct probe's), ``extensions["network_s"]`` its time on the wire, ``extensions["via"]`` the proxy path;
- ``ProxyRefused`` when the API server itself refused (a ``Status`` of its own): ``kind`` is ``forbidden``
  (403: the grant is missing: ``rule`` names it), ``unauthorized`` (401), ``notfound`` (404: no such pod or
  Service), ``no-endpoints`` (503 "no endpoints available for service ..."), ``bad-request`` (400: e.g. a
  pod without an address) or ``unreachable`` (503 "error trying to reach service: dial tcp ...": the API
  server could not connect to the pod; ``timed_out`` when the dial timed out);
- ``ProxyUnavailable`` when there is no API connection to go through (not configured, bad kubeconfig);
- the network's own exceptions (httpx/OSError) when the API server itself does not answer.

Read-only: GET and HEAD only (the API server authorizes both as the verb ``get``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from studiodoctor.backends.kubernetes import connection, note_network

READ_METHODS = ("GET", "HEAD")
# Most bytes of one proxied answer read (an error page, a listing): the same bound as a direct probe's.
MAX_BODY = 2 * 1024 * 1024


@dataclass(frozen=True)
class ProxyTarget:
    """A pod's or Service's port behind the API server: ``kind`` "pods" or "services"."""

    kind: str
    namespace: str
    name: str
    port: str = ""
    scheme: str = ""     # "" (http), "http" or "https"

    @property
    def ident(self) -> str:
        """``[SCHEME:]NAME[:PORT]`` as the API path spells it (``https:name:`` keeps the empty port)."""
        ident = self.name + (f":{self.port}" if self.port or self.scheme else "")
        return f"{self.scheme}:{ident}" if self.scheme else ident

    def path(self, rest: str = "/") -> str:
        rest = rest if rest.startswith("/") else "/" + rest
        return f"/api/v1/namespaces/{self.namespace}/{self.kind}/{self.ident}/proxy{quote(rest, safe='/%:@!$&()*+,;=~-._')}"

    @property
    def resource(self) -> str:
        return f"{self.kind}/proxy"

    @property
    def label(self) -> str:
        """``pod NAME:PORT`` / ``service NAME:PORT`` for summaries."""
        return f"{self.kind[:-1]} {self.name}" + (f":{self.port}" if self.port else "")

    def rule(self) -> str:
        """The RBAC rule that allows this proxy (the Role line a 403 names)."""
        names = f', resourceNames: ["{self.name}"]' if self.kind == "services" else ""
        return (f'Role in namespace {self.namespace}: {{apiGroups: [""], resources: ["{self.resource}"]{names}, '
                f'verbs: ["get"]}}')


class ProxyUnavailable(Exception):
    """No API connection to go through (``status``: unconfigured or error, as the connection says)."""

    def __init__(self, status: str, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class ProxyRefused(Exception):
    """The API server answered for itself, with a ``Status``: the request never reached the backend."""

    KINDS = {400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "notfound"}

    def __init__(self, target: ProxyTarget, code: int, reason: str, message: str):
        super().__init__(message or reason or f"HTTP {code}")
        self.target, self.code, self.reason, self.message = target, code, reason, message
        low = message.lower()
        if code == 503 and "no endpoints available" in low:
            self.kind = "no-endpoints"
        elif code in (502, 503) and "error trying to reach service" in low:
            self.kind = "unreachable"
        else:
            self.kind = self.KINDS.get(code, "error")
        self.timed_out = self.kind == "unreachable" and ("timeout" in low or "deadline" in low)

    @property
    def rule(self) -> str:
        return self.target.rule()


def api_status(code: int, headers, body: bytes) -> dict | None:
    """The API server's own ``Status`` object in an answer (None: the backend's answer, relayed)."""
    if code < 400 or "json" not in (headers.get("content-type") or ""):
        return None
    try:
        data = json.loads(body[:65536])
    except ValueError:
        return None
    if isinstance(data, dict) and data.get("kind") == "Status" and data.get("apiVersion") == "v1" \
            and data.get("code") == code:
        return data
    return None


def proxy_request(ctx, target: ProxyTarget, path: str, *, method: str = "GET", headers: dict | None = None,
                  query: dict | None = None, timeout: float | None = None):
    """One request through the API server's proxy to ``target`` (see the module's docstring)."""
    import httpx

    method = method.upper()
    if method not in READ_METHODS:
        raise ValueError(f"{method} through the API server's proxy is not read-only (only GET and HEAD)")
    conn = connection(ctx)
    if conn.status != "ok":
        raise ProxyUnavailable(conn.status, conn.detail)
    client = conn.client
    rest, _, inline_query = path.partition("?")
    api_path = target.path(rest)
    qs = "&".join(q for q in (inline_query, urlencode(query or {})) if q)
    url = client.host + api_path + (f"?{qs}" if qs else "")
    sent = {**client.headers, "Accept": "*/*", "User-Agent": ctx.section("http").get("user_agent") or "studiodoctor",
            **(headers or {})}
    sent.update({k: v for k, v in client.headers.items() if k.lower() == "authorization"})  # never replaced
    limit = ctx.timeout(timeout)
    started = time.perf_counter()
    body = bytearray()
    truncated = False
    with client.stream(method, url, headers=sent, body=None, timeout=limit) as resp:
        for chunk in resp.iter_raw(2**16):  # as sent: the answer built below decodes, as for a direct probe
            body += chunk
            if len(body) > MAX_BODY or time.monotonic() > getattr(ctx, "deadline", float("inf")):
                truncated = True
                break
    seconds = time.perf_counter() - started
    note_network(ctx, seconds)
    code = resp.status_code
    status = api_status(code, resp.headers, bytes(body))
    if status is None and method == "HEAD" and code >= 400 and "json" in (resp.headers.get("content-type") or ""):
        # a HEAD answer has no body to tell the API server's refusal from the pod's: the same path as GET says
        try:
            proxy_request(ctx, target, path, headers=headers, query=query, timeout=timeout)
        except ProxyRefused:
            raise
        except Exception:  # noqa: BLE001 - the GET could not tell either: the HEAD's answer stands
            pass
    if status is not None:
        raise ProxyRefused(target, code, str(status.get("reason") or ""), str(status.get("message") or ""))
    shown = {k: v for k, v in (headers or {}).items() if k.lower() != "authorization"}
    answer = httpx.Response(code, headers=resp.headers.multi_items(), content=bytes(body[:MAX_BODY]),
                            request=httpx.Request(method, url, headers=shown))
    answer.extensions = {"network_s": seconds, "via": api_path, **({"studiodoctor_truncated": True}
                                                                   if truncated else {})}
    return answer
