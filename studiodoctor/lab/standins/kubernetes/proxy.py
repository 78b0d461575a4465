"""The API server's proxy subresources, as kube-apiserver serves them:

- ``/api/v1/namespaces/NS/pods/[SCHEME:]NAME[:PORT]/proxy[/PATH]``: to the pod's IP and that port (no port:
  the first container port the pod declares);
- ``/api/v1/namespaces/NS/services/[SCHEME:]NAME[:PORT]/proxy[/PATH]``: a port *number* is first mapped to
  the Service port's name, then one ready address of the Service's Endpoints that has a port of that name
  is picked at random.

The query string is passed on, the caller's ``Authorization`` is not (the API server consumed it), and the
answer comes back as the backend gave it (hop-by-hop headers dropped). The API server's own refusals are
``Status`` objects: 400 for a malformed name or a pod without an address ("address not allowed"), 403 for a
caller without ``get`` on ``pods/proxy`` / ``services/proxy`` (checked first, like the authorizer), 404 for
an unknown pod or Service, 503 "no endpoints available for service ..." and, when the backend does not
answer, 503 "error trying to reach service: dial tcp IP:PORT: ...". Where the pod network leads is
:mod:`.network`'s map (``state["network"]``)."""

from __future__ import annotations

import random
import re

from .network import lab_address

PROXY_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/(pods|services)/([^/]+)/proxy(/.*)?$")
# most bytes of a proxied answer the stand-in relays (the doctor reads far less)
MAX_RELAY = 8 * 2**20
UPSTREAM_TIMEOUT_S = 60.0
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
               "transfer-encoding", "upgrade", "content-length"}


def split_scheme_name_port(ident: str) -> tuple[str, str, str] | None:
    """``name``, ``name:port`` or ``scheme:name:port`` (scheme "", http or https), as the API server splits
    it; None when it is not one of those."""
    parts = ident.split(":")
    if len(parts) == 1:
        scheme, name, port = "", parts[0], ""
    elif len(parts) == 2:
        scheme, (name, port) = "", parts
    elif len(parts) == 3:
        scheme, name, port = parts
    else:
        return None
    return (scheme, name, port) if name and scheme in ("", "http", "https") else None


def _find(state: dict, ns: str, kind: str, name: str) -> dict | None:
    for obj in state["namespaces"].get(ns, {}).get(kind, []):
        if obj["metadata"]["name"] == name:
            return obj
    return None


def not_found(kind: str, name: str) -> tuple[int, dict]:
    return 404, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                 "message": f'{kind} "{name}" not found', "reason": "NotFound",
                 "details": {"name": name, "kind": kind}, "code": 404}


def _failure(code: int, reason: str, message: str) -> tuple[int, dict]:
    return code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                  "reason": reason, "code": code}


def locate(state: dict, ns: str, kind: str, ident: str) -> tuple[str, str, str] | tuple[int, dict]:
    """(scheme, pod IP, port) the request goes to, or the API server's (code, Status) refusal."""
    split = split_scheme_name_port(ident)
    if split is None:
        return _failure(400, "BadRequest", f'invalid {kind[:-1]} request "{ident}"')
    scheme, name, port = split
    if kind == "pods":
        pod = _find(state, ns, "pods", name)
        if pod is None:
            return not_found("pods", name)
        if not port:
            port = next((str(c["ports"][0]["containerPort"]) for c in pod["spec"]["containers"] if c.get("ports")), "")
        ip = (pod.get("status") or {}).get("podIP") or ""
        if not ip:
            return _failure(400, "BadRequest", "address not allowed")
        return scheme or "http", ip, port
    svc = _find(state, ns, "services", name)
    if svc is None:
        return not_found("services", name)
    if port.isdigit():
        named = [p.get("name", "") for p in svc["spec"].get("ports", []) if p.get("port") == int(port)]
        if not named:
            return _failure(503, "ServiceUnavailable", f'no service port {port} found for service "{name}"')
        port = named[0]
    eps = _find(state, ns, "endpoints", name) or {}
    subsets = eps.get("subsets") or []
    if not subsets:
        return _failure(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
    for subset in random.sample(subsets, len(subsets)):
        for p in subset.get("ports", []):
            if p.get("name", "") == port and subset.get("addresses"):
                return scheme or "http", random.choice(subset["addresses"])["ip"], str(p["port"])
    return _failure(503, "ServiceUnavailable", f'no endpoints available for service "{ident}"')


def forward(state: dict, method: str, scheme: str, ip: str, port: str, path: str, query: str,
            headers: dict, client_ip: str) -> tuple[int, list[tuple[str, str]], bytes] | tuple[int, dict]:
    """Send the request on to where the pod network leads: (status, headers, body) as the backend answered,
    or the API server's (503, Status) when nothing answers there."""
    import http.client
    import socket
    import ssl

    target = f"{ip}:{port}" if port else ip
    address = lab_address(state, ip, port or (443 if scheme == "https" else 80))
    if address is None:
        return _failure(503, "ServiceUnavailable", f"error trying to reach service: dial tcp {target}: connect: "
                                                   "connection refused")
    host, _, lab_port = address.rpartition(":")
    if scheme == "https":
        conn = http.client.HTTPSConnection(host, int(lab_port), timeout=UPSTREAM_TIMEOUT_S,
                                           context=ssl._create_unverified_context())  # as the API server: no verify
    else:
        conn = http.client.HTTPConnection(host, int(lab_port), timeout=UPSTREAM_TIMEOUT_S)
    sent = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP | {"authorization", "host"}}
    sent["X-Forwarded-For"] = client_ip
    sent["Host"] = target
    try:
        conn.request(method, (path or "/") + (f"?{query}" if query else ""), headers=sent)
        resp = conn.getresponse()
        body = resp.read(MAX_RELAY)
    except (socket.timeout, TimeoutError):
        return _failure(503, "ServiceUnavailable", f"error trying to reach service: dial tcp {target}: i/o timeout")
    except (OSError, http.client.HTTPException) as exc:
        text = "connect: connection refused" if isinstance(exc, ConnectionRefusedError) else \
            f"read: {exc.__class__.__name__}"
        return _failure(503, "ServiceUnavailable", f"error trying to reach service: dial tcp {target}: {text}")
    finally:
        conn.close()
    return resp.status, [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP], body
