"""The stand-in's HTTP server: list routes as a table (path -> kind), SelfSubjectAccessReview, ``/version/``;
every request recorded (method, path) in the lab's method log; and its launcher."""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from studiodoctor.lab.methodlog import MethodLog

from .faults import _Unavailable, effective_state
from .objects import DEFAULT_USER, VERSION
from .portforward import PORTFORWARD_PATH
from .selectors import SelectorError, fields_match, labels_match, parse_fields, parse_labels
from .proxy import PROXY_PATH, forward, locate, not_found, split_scheme_name_port

# -- HTTP server ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ListRoute:
    """A list the stand-in serves: ``path`` (``{ns}``: a namespace), its RBAC group/resource, the List kind
    and apiVersion, and where the items come from: ``namespaces`` (state["namespaces"][ns][resource], all
    namespaces when the path has none), ``cluster`` (state[resource]) or ``metrics`` (state["metrics"][ns];
    null: the metrics API is not installed, 404)."""

    path: str
    group: str
    resource: str
    kind: str
    api_version: str
    source: str = "namespaces"

    @property
    def pattern(self) -> re.Pattern:
        return re.compile("^" + re.escape(self.path).replace(re.escape("{ns}"), "([^/]+)") + "$")


ROUTES = [
    ListRoute("/api/v1/namespaces/{ns}/pods", "", "pods", "PodList", "v1"),
    ListRoute("/api/v1/namespaces/{ns}/events", "", "events", "EventList", "v1"),
    ListRoute("/apis/apps/v1/namespaces/{ns}/deployments", "apps", "deployments", "DeploymentList", "apps/v1"),
    ListRoute("/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses", "networking.k8s.io", "ingresses",
              "IngressList", "networking.k8s.io/v1"),
    ListRoute("/api/v1/namespaces/{ns}/services", "", "services", "ServiceList", "v1"),
    ListRoute("/api/v1/namespaces/{ns}/endpoints", "", "endpoints", "EndpointsList", "v1"),
    ListRoute("/api/v1/pods", "", "pods", "PodList", "v1"),
    ListRoute("/api/v1/events", "", "events", "EventList", "v1"),
    ListRoute("/apis/apps/v1/deployments", "apps", "deployments", "DeploymentList", "apps/v1"),
    ListRoute("/apis/networking.k8s.io/v1/ingresses", "networking.k8s.io", "ingresses", "IngressList",
              "networking.k8s.io/v1"),
    ListRoute("/apis/networking.k8s.io/v1/ingressclasses", "networking.k8s.io", "ingressclasses",
              "IngressClassList", "networking.k8s.io/v1", source="cluster"),
    ListRoute("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods", "metrics.k8s.io", "pods", "PodMetricsList",
              "metrics.k8s.io/v1beta1", source="metrics"),
]
_MATCHERS = [(route.pattern, route) for route in ROUTES]
# one object by name: GET /api/v1/namespaces/NS/{pods,services,endpoints}/NAME
_OBJECT = re.compile(r"^/api/v1/namespaces/([^/]+)/(pods|services|endpoints)/([^/:]+)$")
_KINDS = {"pods": "Pod", "services": "Service", "endpoints": "Endpoints"}
_SSAR = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
_SSR = "/apis/authentication.k8s.io/v1/selfsubjectreviews"  # `kubectl auth whoami` (GA in 1.28)


def _status(code: int, reason: str, message: str, kind: str = "") -> dict:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    if kind:
        body["details"] = {"kind": kind}
    return body


def _denied(state: dict, verb: str, group: str, resource: str, namespace: str, name: str = "") -> bool:
    """``state["deny"]``: rules of what RBAC does NOT grant (verb, group, resource such as ``pods/proxy``,
    namespace, and optionally ``name``, or ``except_names``: every object but those)."""
    for rule in state.get("deny", []):
        if "name" in rule and rule["name"] != name:
            continue
        if name and name in rule.get("except_names", []):
            continue
        if rule.get("verb", "*") not in ("*", verb):
            continue
        if rule.get("resource", "*") not in ("*", resource):
            continue
        if rule.get("group", "*") not in ("*", group):
            continue
        rule_ns = rule.get("namespace", "*")
        if rule_ns not in ("*", namespace) and not (rule_ns == "" and namespace == ""):
            continue
        return True
    return False


def _forbidden(state: dict, verb: str, group: str, resource: str, namespace: str, name: str = "") -> dict:
    where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    user = state.get("user", DEFAULT_USER)
    kind = resource.split("/")[0]
    subject = f'{kind} "{name}"' if name else resource
    body = _status(403, "Forbidden", f'{subject} is forbidden: User "{user}" cannot {verb} resource "{resource}" '
                                     f'in API group "{group}" {where}', kind=kind)
    if name:
        body["details"]["name"] = name
    return body


def match_labels(labels: dict, selector: str) -> bool:
    """Whether ``labels`` match a label selector, parsed as the API server parses it (``selectors``)."""
    return labels_match(parse_labels(selector), labels)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-apiserver-standin/1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stalls

    def log_message(self, fmt, *args):  # quiet
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _state(self) -> dict:
        """The effective state, pods' readiness as the kubelet keeps it; parsed and faulted at most once a
        second per file version and kubelet version."""
        import time

        st = os.stat(self.server.state_file)
        version, readiness = self.server.kubelet.snapshot()
        key = (st.st_mtime_ns, st.st_size, st.st_ino, version)
        with self.server.lock:
            cached = self.server.cache
            if cached and cached[0] == key and time.monotonic() - cached[1] < 1.0:
                return cached[2]
        state = effective_state(json.loads(Path(self.server.state_file).read_text()), readiness)
        with self.server.lock:
            self.server.cache = (key, time.monotonic(), state)
        return state

    def _count(self, path: str) -> None:
        """Count the request and record its method (studiodoctor.lab.methodlog: the read-only proof)."""
        with self.server.lock:
            self.server.counts[path] = self.server.counts.get(path, 0) + 1
        self.server.methods.record(self.command, path)

    def _refuse(self) -> None:
        """Any other method: recorded, and refused like the API server refuses a verb a route lacks."""
        path = urlsplit(self.path).path
        self._count(path)
        if int(self.headers.get("Content-Length") or 0):
            self.rfile.read(int(self.headers["Content-Length"]))
        self._send(405, _status(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                                                         "resource"))

    do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _refuse

    def do_HEAD(self):  # noqa: N802
        if PROXY_PATH.match(urlsplit(self.path).path):
            return self.do_GET()  # HEAD is the verb "get" on a proxy: relayed like GET
        self._count(urlsplit(self.path).path)
        self.send_response(405)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _auth(self, state: dict) -> bool:
        """Answer 401 unless the token matches; first, ``state["round_trip_ms"]`` (benchmarks: an API server
        across a network, each request one round trip away)."""
        if state.get("round_trip_ms"):
            import time

            time.sleep(float(state["round_trip_ms"]) / 1000)
        token = state.get("token") or ""
        if token and self.headers.get("Authorization", "") != f"Bearer {token}":
            self._send(401, _status(401, "Unauthorized", "Unauthorized"))
            return False
        return True

    def do_GET(self):  # noqa: N802
        url = urlsplit(self.path)
        path, query = url.path, {k: v[-1] for k, v in parse_qs(url.query).items()}
        if path == "/_lab/requests":  # the lab's own control calls: neither counted nor logged
            with self.server.lock:
                return self._send(200, dict(self.server.counts))
        if path == "/_lab/kubelet":  # the prober's progress (studiodoctor.lab.standins.kubernetes.kubelet)
            return self._send(200, self.server.kubelet.status())
        self._count(path)
        try:
            state = self._state()
        except _Unavailable:
            return self._send(503, _status(503, "ServiceUnavailable", "the server is currently unable to "
                                                                      "handle the request"))
        except (OSError, ValueError) as exc:
            return self._send(500, _status(500, "InternalError", f"stand-in state unreadable: {exc}"))
        if not self._auth(state):
            return
        if path.rstrip("/") == "/version":
            return self._send(200, state.get("version") or VERSION)
        proxied = PROXY_PATH.match(path)
        if proxied:
            return self._proxy(state, *proxied.groups(), url.query)
        forwarded = PORTFORWARD_PATH.match(path)
        if forwarded:
            return self._portforward(state, *forwarded.groups(), parse_qs(url.query))
        one = _OBJECT.match(path)
        if one:
            return self._serve_object(state, *one.groups())
        for rx, route in _MATCHERS:
            m = rx.match(path)
            if m:
                return self._serve_list(state, route, m.group(1) if rx.groups else "", query)
        return self._send(404, _status(404, "NotFound", "the server could not find the requested resource"))

    def _serve_list(self, state: dict, route: ListRoute, ns: str, query: dict) -> None:
        if route.source == "metrics":
            if state.get("metrics") is None:
                return self._send(404, _status(404, "NotFound", "the server could not find the requested resource"))
            items = state["metrics"].get(ns, [])
        elif route.source == "cluster":
            items = state.get(route.resource, [])
        elif ns:
            items = state["namespaces"].get(ns, {}).get(route.resource, [])
        else:
            items = [o for space in state["namespaces"].values() for o in space.get(route.resource, [])]
        if _denied(state, "list", route.group, route.resource, ns):
            return self._send(403, _forbidden(state, "list", route.group, route.resource, ns))
        return self._list(items, route, query)

    def _serve_object(self, state: dict, ns: str, resource: str, name: str) -> None:
        if _denied(state, "get", "", resource, ns, name):
            return self._send(403, _forbidden(state, "get", "", resource, ns, name))
        for obj in state["namespaces"].get(ns, {}).get(resource, []):
            if obj["metadata"]["name"] == name:
                return self._send(200, {"kind": _KINDS[resource], "apiVersion": "v1", **obj})
        return self._send(*not_found(resource, name))

    def _proxy(self, state: dict, ns: str, resource: str, ident: str, rest: str | None, query: str) -> None:
        """``pods/proxy`` and ``services/proxy`` (studiodoctor.lab.standins.kubernetes.proxy): authorized
        first (verb get on the subresource, for the object's name), then located, then relayed."""
        split = split_scheme_name_port(ident)
        name = split[1] if split else ident
        if _denied(state, "get", "", f"{resource}/proxy", ns, name):
            return self._send(403, _forbidden(state, "get", "", f"{resource}/proxy", ns, name))
        where = locate(state, ns, resource, ident)
        if isinstance(where[0], int):
            return self._send(*where)
        answer = forward(state, self.command, *where, rest or "/", query, dict(self.headers.items()),
                         self.client_address[0])
        if isinstance(answer[1], dict):
            return self._send(*answer)
        status, headers, body = answer
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _portforward(self, state: dict, ns: str, name: str, query: dict) -> None:
        """``pods/portforward`` (studiodoctor.lab.standins.kubernetes.portforward): authorized first (verb
        ``create``, for GET's WebSocket upgrade too), then the pod and the request checked, then upgraded."""
        from .portforward import accept_key, check_request, chosen_protocol, relay

        if _denied(state, "create", "", "pods/portforward", ns, name):
            return self._send(403, _forbidden(state, "create", "", "pods/portforward", ns, name))
        checked = check_request(state, ns, name, self.headers, query)
        if isinstance(checked[0], int):
            return self._send(*checked)
        protocol = chosen_protocol(self.headers)
        key = self.headers.get("Sec-WebSocket-Key") or ""
        if not key or protocol is None:
            return self._send(400, _status(400, "BadRequest", "unable to upgrade connection: no supported "
                                                              "subprotocol (v4.channel.k8s.io) offered"))
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept_key(key))
        self.send_header("Sec-WebSocket-Protocol", protocol)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        relay(self.connection, state, *checked)

    def _list(self, items: list[dict], route: ListRoute, query: dict) -> None:
        """One page of ``items`` filtered by ``labelSelector`` and ``fieldSelector`` (a selector the API
        server would refuse: 400 BadRequest with its message), paginated by ``limit``/``continue``."""
        try:
            labels = parse_labels(query.get("labelSelector") or "")
            fields = parse_fields(query.get("fieldSelector") or "", route.resource)
        except SelectorError as exc:
            return self._send(400, _status(400, "BadRequest", str(exc)))
        if labels:
            items = [o for o in items if labels_match(labels, o.get("metadata", {}).get("labels") or {})]
        if fields:
            items = [o for o in items if fields_match(fields, o, route.resource)]
        meta: dict[str, Any] = {"resourceVersion": "987654"}
        limit = int(query.get("limit") or 0)
        if limit:
            start = int(query.get("continue") or 0)
            page = items[start:start + limit]
            if start + limit < len(items):
                meta["continue"] = str(start + limit)
                meta["remainingItemCount"] = len(items) - start - limit
            items = page
        self._send(200, {"kind": route.kind, "apiVersion": route.api_version, "metadata": meta, "items": items})

    def do_POST(self):  # noqa: N802
        path = urlsplit(self.path).path
        if PORTFORWARD_PATH.match(path):  # kubectl's verb; no body, an upgrade
            return self.do_GET()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) or b"{}"
        if path == "/_lab/reset":
            with self.server.lock:
                self.server.counts.clear()
            return self._send(200, {})
        self._count(path)
        try:
            body = json.loads(raw)
        except ValueError:
            return self._send(400, _status(400, "BadRequest", "the body is not JSON"))
        try:
            state = self._state()
        except _Unavailable:
            return self._send(503, _status(503, "ServiceUnavailable", "the server is currently unable to "
                                                                      "handle the request"))
        if not self._auth(state):
            return
        if path == _SSR:  # who the token is: the API server echoes the authenticated user, stores nothing
            user = {"username": state.get("user", DEFAULT_USER),
                    "groups": state.get("groups", ["system:authenticated"])}
            return self._send(201, {"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
                                    "metadata": {"creationTimestamp": None}, "status": {"userInfo": user}})
        if path != _SSAR:
            return self._send(405, _status(405, "MethodNotAllowed", "the server does not allow this method on "
                                                                    "the requested resource"))
        attrs = (body.get("spec") or {}).get("resourceAttributes") or {}
        verb, group = attrs.get("verb", ""), attrs.get("group", "")
        resource, ns = attrs.get("resource", ""), attrs.get("namespace", "")
        if attrs.get("subresource"):
            resource = f"{resource}/{attrs['subresource']}"
        denied = _denied(state, verb, group, resource, ns, attrs.get("name", ""))
        status: dict[str, Any] = {"allowed": not denied}
        if denied:
            status["denied"] = False  # no explicit deny rule: RBAC simply grants nothing
            status["reason"] = ""
        else:
            status["reason"] = f'RBAC: allowed by RoleBinding "studiodoctor/{ns or "cluster"}"'
        self._send(201, {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                         "metadata": {"creationTimestamp": None}, "spec": body.get("spec", {}), "status": status})


def serve(port: int, state_file: str, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start the server in a thread of this process (tests); returns it (call .shutdown())."""
    server = _make_server(port, state_file, host)
    threading.Thread(target=server.serve_forever, daemon=True, name="kube-api-standin").start()
    return server


class _StandinServer(ThreadingHTTPServer):
    """The HTTP server and its kubelet (:mod:`.kubelet`): shutting one down stops the other."""

    def shutdown(self) -> None:
        self.kubelet.stop()
        super().shutdown()


def _make_server(port: int, state_file: str, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    from .kubelet import Kubelet

    server = _StandinServer((host, port), _Handler)
    server.daemon_threads = True
    server.state_file = state_file
    server.lock = threading.Lock()
    server.counts = {}
    server.cache = None
    server.methods = MethodLog.beside(state_file, "kubernetes")
    server.kubelet = Kubelet(state_file).start()
    return server
