"""The doctor's one connection to the Kubernetes API, shared by the kubernetes, traefik, sentry and
email layers: one pooled HTTP client per run, each (kind, namespace, selector) listed ONCE per run
(``ctx.shared``), paginated with ``limit``/``continue``, read as raw JSON dicts.

No ``kubernetes`` SDK on the way: its client and API classes cost ~1 s of CPU to import and its typed
models ~4x the parse time, all under the GIL next to every other check's latency (``benchmarks/
k8s_scan.py``). A field the SDK's models would reject can never crash a check. The only write is a
SelfSubjectAccessReview (``post``), which the API server answers and never stores.

The pod analysis the layers share lives in ``studiodoctor.backends.kube_pods``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from studiodoctor.model import READ_ONLY, Command, Reason, error, skip, unreachable

# what a check module that talks to the Kubernetes API lists in its SDK_IMPORTS (studiodoctor.runner.preload);
# studiodoctor.preflight.rbac reads the first name to know whose permissions are Kubernetes API permissions
SDK_IMPORTS = ("studiodoctor.backends.kubernetes", "httpx")

# list_objects(ctx, "pods", ALL_NAMESPACES): one cluster-wide list (needs a ClusterRole)
ALL_NAMESPACES = "*"

# resource key -> (API group, resource, cluster-scoped, what the checks use it for)
RESOURCES = {
    "pods": ("", "pods", False, "pods"),
    "deployments": ("apps", "deployments", False, "deployments"),
    "events": ("", "events", False, "events"),
    "services": ("", "services", False, "services"),
    "ingresses": ("networking.k8s.io", "ingresses", False, "ingresses"),
    "ingressclasses": ("networking.k8s.io", "ingressclasses", True, "ingress classes"),
    "podmetrics": ("metrics.k8s.io", "pods", False, "pod metrics"),
}
VERSIONS = {"": "v1", "apps": "v1", "networking.k8s.io": "v1", "metrics.k8s.io": "v1beta1",
            "authorization.k8s.io": "v1"}

# Objects per page of a list call (``limit``/``continue``): the API server never builds one huge answer.
PAGE_SIZE = 500
# Most pages read per listing: a bound on what one run may pull from a big namespace.
MAX_PAGES = 20
# Most bytes read of one answer (a page of 500 pods is ~2 MB)
MAX_BODY = 64 * 2**20


# -- settings ---------------------------------------------------------------------------------------

def kube_section(ctx) -> dict:
    return ctx.section("kubernetes")


def kube_setting(ctx, key: str, default: Any) -> Any:
    value = kube_section(ctx).get(key)
    return default if value in (None, "") else value


def namespace(ctx) -> str:
    return kube_setting(ctx, "namespace", "studio")


def traefik_namespace(ctx) -> str:
    return kube_setting(ctx, "traefik_namespace", "kube-system")


def kubectl(ctx, args: str, ns: str | None = "") -> str:
    """A kubectl command line bound to the profile's kubeconfig, context and namespace
    (studiodoctor.backends.kubectl)."""
    from studiodoctor.backends.kubectl import command

    return command(ctx.profile, args, ns)


def hostnames(ctx, section: str = "kubernetes") -> list[str]:
    """Hostnames to look for: ``<section>.hostnames``, else ``dns.hostnames`` and the hosts of ``public_urls``."""
    own = ctx.section(section).get("hostnames") or []
    if own:
        return list(dict.fromkeys(own))
    names = list(ctx.section("dns").get("hostnames") or [])
    for url in ctx.profile.value("public_urls") or []:
        host = urlsplit(url).hostname
        if host:
            names.append(host)
    return list(dict.fromkeys(n for n in names if n))


# -- the client ---------------------------------------------------------------------------------------

class ApiError(Exception):
    """The API server answered with an HTTP error status."""

    def __init__(self, status: int, reason: str, body: str):
        super().__init__(f"HTTP {status} {reason}")
        self.status, self.reason, self.body = status, reason, body


class UnexpectedAnswer(ValueError):
    """A list answer that is not the documented ``{"kind": "...List", "items": [objects]}``."""


class Client:
    """One pooled httpx client for the run (thread-safe), no retries: a refused connection fails now. httpx,
    not urllib3: the run's HTTP checks import it anyway, so the Kubernetes checks start with them and the
    run imports one HTTP stack, not two (urllib3 was ~20 ms of CPU under the interpreter lock)."""

    def __init__(self, ep):
        import httpx

        self.host, self.headers = ep.host, {"Accept": "application/json", "User-Agent": "studiodoctor",
                                            **ep.headers}
        self.endpoint = ep   # the same credentials for a WebSocket (studiodoctor.backends.kube_portforward)
        tls = ep.host.startswith("https:")
        # the name the certificate must carry and SNI sends (tls-server-name), when it is not the URL's host
        self.extensions = {"sni_hostname": ep.server_name} if tls and ep.verify and ep.server_name else {}
        # 8 kept alive: the layers' own lists and the API server's proxy (discovery.reach: 3 in flight per
        # layer) at once; more are opened when needed, never waited for
        self.http = httpx.Client(verify=ep.ssl_context() if tls else False, trust_env=False, follow_redirects=False,
                                 limits=httpx.Limits(max_connections=None, max_keepalive_connections=8))

    def stream(self, method: str, url: str, *, headers: dict, body: bytes | None, timeout: float):
        """The answer to one request, its body not yet read (a context manager, httpx's ``stream``)."""
        import httpx

        return self.http.stream(method, url, content=body, headers=headers, timeout=httpx.Timeout(max(0.05, timeout)),
                                extensions=self.extensions)

    def call(self, method: str, path: str, *, query: dict | None = None, body: Any = None,
             timeout: float = 10.0, deadline: float = float("inf")) -> tuple[Any, float]:
        """(parsed JSON, network seconds: request sent to body read). Raises ApiError for an HTTP error,
        httpx/OS errors for the network, ValueError for an answer that is not JSON."""
        url = self.host + path + (f"?{urlencode(query)}" if query else "")
        headers, data = self.headers, None
        if body is not None:
            headers, data = {**headers, "Content-Type": "application/json"}, json.dumps(body).encode()
        started = time.perf_counter()
        raw = bytearray()
        with self.stream(method, url, headers=headers, body=data, timeout=timeout) as resp:
            for chunk in resp.iter_bytes(2**16):
                raw += chunk
                if len(raw) > MAX_BODY or time.monotonic() > deadline:
                    break  # cut: the JSON parse below fails, an unreadable answer, never a hang
        seconds = time.perf_counter() - started
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, resp.reason_phrase or "", bytes(raw[:4096]).decode(errors="replace"))
        return json.loads(raw), seconds


@dataclass
class Conn:
    status: str                      # "ok" | "unconfigured" | "error"
    client: Client | None = None
    address: str = ""
    detail: str = ""


def connection(ctx) -> Conn:
    """The shared client for this run (``kubernetes.api_url`` first, then kubeconfig/context, then in-cluster)."""

    def build() -> Conn:
        from studiodoctor.backends import kubeconfig

        try:
            ep = kubeconfig.endpoint(kube_section(ctx), timeout=ctx.timeout())
        except kubeconfig.Unconfigured as exc:
            return Conn("unconfigured", detail=str(exc))
        except kubeconfig.KubeconfigError as exc:
            return Conn("error", detail=str(exc)[:300])
        try:
            return Conn("ok", client=Client(ep), address=ep.host)
        except (OSError, ValueError) as exc:  # ssl.SSLError: a CA or client certificate that does not load
            return Conn("error", address=ep.host, detail=f"TLS settings: {exc}"[:300])

    return ctx.shared.get("kubernetes:connection", build)


def note_network(ctx, seconds: float) -> None:
    """Add a call's network time to the check's own: the runner's ``ctx.add_network`` (the result's
    ``network_ms``, see studiodoctor.context) and ``evidence.network_ms`` (``with_network``)."""
    if seconds <= 0:
        return
    add = getattr(ctx, "add_network", None)
    if add is not None:
        add(seconds)
    setattr(ctx, "network_s", getattr(ctx, "network_s", 0.0) + seconds)


def with_network(ctx, result):
    """``result`` with ``evidence.network_ms``: the time the API calls this check made or waited on spent
    on the wire (its duration minus this is the doctor's own work, or waiting for its turn)."""
    if isinstance(getattr(result, "evidence", None), dict):
        union = ctx.network_ms() if callable(getattr(ctx, "network_ms", None)) else None  # concurrent calls once
        ms = union if union is not None else getattr(ctx, "network_s", 0.0) * 1000
        result.evidence.setdefault("network_ms", round(ms, 1))
    return result


def get(ctx, path: str, query: dict | None = None) -> Any:
    """GET ``path`` as JSON with the run's client (the connection must be ok)."""
    data, seconds = connection(ctx).client.call("GET", path, query=query, timeout=ctx.timeout(),
                                                deadline=ctx.deadline)
    note_network(ctx, seconds)
    return data


def post(ctx, path: str, body: dict) -> Any:
    """POST ``body``: only for the SelfSubjectAccessReviews of kubernetes.permissions (ephemeral-write)."""
    data, seconds = connection(ctx).client.call("POST", path, body=body, timeout=ctx.timeout(),
                                                deadline=ctx.deadline)
    note_network(ctx, seconds)
    return data


# -- listings ------------------------------------------------------------------------------------------

@dataclass
class Listing:
    """The outcome of one list call: items, or why there are none."""

    resource: str
    namespace: str
    items: list = field(default_factory=list)
    status: str = "ok"              # ok | forbidden | unauthorized | untrusted | unreachable | timeout | notfound | error | unconfigured
    detail: str = ""
    http_status: int = 0
    address: str = ""
    seconds: float = 0.0            # the whole listing, all pages, parse included
    network_seconds: float = 0.0    # of which on the wire
    pages_left: bool = False        # MAX_PAGES pages read and the server still had more

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def list_path(resource: str, ns: str) -> str:
    group, name, cluster, _ = RESOURCES[resource]
    base = f"/api/{VERSIONS['']}" if not group else f"/apis/{group}/{VERSIONS[group]}"
    if cluster or ns == ALL_NAMESPACES:
        return f"{base}/{name}"
    return f"{base}/namespaces/{ns}/{name}"


def classify(exc: Exception, listing: Listing) -> Listing:
    if isinstance(exc, ApiError):
        listing.http_status = exc.status or 0
        message = ""
        try:
            message = json.loads(exc.body or "{}").get("message", "")
        except (ValueError, AttributeError):
            message = (exc.body or "")[:200]
        listing.detail = message or exc.reason or ""
        listing.status = {401: "unauthorized", 403: "forbidden", 404: "notfound"}.get(exc.status, "error")
        return listing
    import httpx

    from studiodoctor.probes.http import describe_error

    if not isinstance(exc, (httpx.TransportError, OSError)):
        # not a network failure: the answer could not be read (not JSON, not a list): we could not look
        listing.status = "error"
        listing.detail = f"unreadable answer ({type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]})"[:300]
        return listing
    inner = getattr(exc, "reason", None) or exc
    if _certificate_not_trusted(exc):
        # The API answered TLS with a certificate our kubeconfig's CA does not sign: a stale
        # certificate-authority-data (CA rotated) or another endpoint. That proves nothing about the
        # cluster, so it is not "unreachable".
        listing.status = "untrusted"
        listing.detail = ("its TLS certificate does not verify against the kubeconfig's certificate authority "
                          f"({_verify_message(exc)})")[:300]
        return listing
    timed_out, text = describe_error(inner if isinstance(inner, BaseException) else exc)
    if "refused" in str(exc).lower():
        text, timed_out = "connection refused", False
    listing.status = "timeout" if timed_out else "unreachable"
    listing.detail = text
    return listing


def _exception_chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        nxt = getattr(exc, "reason", None)
        exc = nxt if isinstance(nxt, BaseException) else (exc.__cause__ or exc.__context__)


def _certificate_not_trusted(exc: BaseException) -> bool:
    import ssl

    return any(isinstance(e, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(e)
               for e in _exception_chain(exc))


def _verify_message(exc: BaseException) -> str:
    import ssl

    for e in _exception_chain(exc):
        if isinstance(e, ssl.SSLCertVerificationError) and e.verify_message:
            return e.verify_message
    return "certificate verify failed"


def list_items(data: Any) -> list[dict]:
    """The items of a documented List answer (``items`` null or absent: empty); anything else raises
    UnexpectedAnswer naming what came instead."""
    if not isinstance(data, dict):
        raise UnexpectedAnswer(f"the answer is a JSON {type(data).__name__}, not a List object")
    items = data.get("items")
    if items is None:
        if data.get("kind") == "Status":
            raise UnexpectedAnswer(f"a Status instead of a list: {data.get('message') or data.get('reason')}")
        return []
    if not isinstance(items, list):
        raise UnexpectedAnswer(f"`items` is a {type(items).__name__}, not a list")
    bad = [type(i).__name__ for i in items if not isinstance(i, dict)]
    if bad:
        raise UnexpectedAnswer(f"{len(bad)} of {len(items)} items are not objects ({bad[0]})")
    return items


def list_objects(ctx, resource: str, ns: str = "", *, label_selector: str | None = None,
                 field_selector: str | None = None) -> Listing:
    """ONE list call per (resource, namespace, selector) for the whole run, cached in ``ctx.shared``."""
    cluster = RESOURCES[resource][2]
    ns = "" if cluster else (ns or namespace(ctx))
    key = f"kubernetes:list:{resource}:{ns}:{label_selector or ''}:{field_selector or ''}"

    def fetch() -> Listing:
        listing = Listing(resource, ns)
        conn = connection(ctx)
        listing.address = conn.address
        if conn.status != "ok":
            listing.status, listing.detail = ("unconfigured" if conn.status == "unconfigured" else "error",
                                              conn.detail)
            return listing
        started = time.perf_counter()
        query: dict[str, Any] = {"limit": PAGE_SIZE}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector and resource != "podmetrics":
            query["fieldSelector"] = field_selector
        try:
            cont = ""
            for _ in range(MAX_PAGES):  # paginated: limit/continue
                data, seconds = conn.client.call("GET", list_path(resource, ns),
                                                 query={**query, "continue": cont} if cont else query,
                                                 timeout=ctx.timeout(), deadline=ctx.deadline)
                listing.network_seconds += seconds
                listing.items += list_items(data)
                cont = (data.get("metadata") or {}).get("continue") or ""
                if not cont or not isinstance(cont, str):
                    break
            listing.pages_left = bool(cont)
        except Exception as exc:
            classify(exc, listing)
        listing.seconds = time.perf_counter() - started
        return listing

    cached = ctx.shared.peek(key)
    if cached is not None:
        return cached  # fetched earlier in the run: no request, no network time of this check's
    asked = time.perf_counter()
    listing = ctx.shared.get(key, fetch)
    # this check's share of the wire: what it fetched, or the part of another's fetch it waited for
    note_network(ctx, min(listing.network_seconds, time.perf_counter() - asked))
    return listing


# -- what to say when a list failed ---------------------------------------------------------------------

def rbac_rule(resource: str, ns: str, verb: str = "list") -> str:
    group, name, cluster, _ = RESOURCES[resource]
    kind = "ClusterRole" if cluster or ns == ALL_NAMESPACES else f"Role in namespace {ns}"
    return f'{kind}: {{apiGroups: ["{group}"], resources: ["{name}"], verbs: ["{verb}"]}}'


def can_i(ctx, resource: str, ns: str, verb: str = "list") -> str:
    group, name, cluster, _ = RESOURCES[resource]
    res = f"{name}.{group}" if group else name
    if ns == ALL_NAMESPACES:
        return kubectl(ctx, f"auth can-i {verb} {res} --all-namespaces", None)
    return kubectl(ctx, f"auth can-i {verb} {res}", None if cluster else ns)


def untrusted_api(ctx, listing: Listing):
    """The API server's certificate does not verify with our CA: we cannot trust its answers, and that
    says nothing about the cluster's health (an ``error``, never a ``fail``)."""
    host_port = listing.address.split("://", 1)[-1].rstrip("/")
    return error(f"cannot trust the Kubernetes API at {listing.address}: {listing.detail}",
                 reason=Reason.UNEXPECTED, evidence={"address": listing.address, "tls": listing.detail},
                 hint="Our kubeconfig's certificate-authority-data does not sign the certificate this endpoint "
                      "serves: the cluster CA was rotated (refresh the credentials, e.g. `gcloud container "
                      "clusters get-credentials CLUSTER`), or the server URL points at another endpoint.",
                 commands=[Command(f"openssl s_client -connect {host_port} -showcerts </dev/null 2>/dev/null"
                                   " | openssl x509 -noout -issuer -subject -enddate", READ_ONLY,
                                   "the certificate the endpoint serves"),
                           Command(kubectl(ctx, "config view --minify", None), READ_ONLY,
                                   "the server and CA our kubeconfig uses")])


def listing_problem(ctx, listing: Listing):
    """The Result to return when a list call did not succeed (honest: never 'none found')."""
    group, name, cluster, what = RESOURCES[listing.resource]
    where = "cluster-wide" if cluster or listing.namespace == ALL_NAMESPACES else f"in namespace {listing.namespace}"
    ev = {"resource": f"{name}.{group}" if group else name, "namespace": listing.namespace,
          "api_message": listing.detail}
    if listing.status == "forbidden":
        rule = rbac_rule(listing.resource, listing.namespace)
        return error(f"cannot list {what} {where}: forbidden (grant {rule})", reason=Reason.FORBIDDEN,
                     evidence=ev,
                     hint=f"Our credentials lack `list {name}`. Grant it with a {rule.split(':')[0]} bound to "
                          "the identity studiodoctor uses (read-only), then re-run.",
                     commands=[Command(can_i(ctx, listing.resource, listing.namespace), READ_ONLY,
                                       "what the API server says about our identity"),
                               Command(kubectl(ctx, "auth whoami", None), READ_ONLY)])
    if listing.status == "unauthorized":
        return error(f"cannot list {what} {where}: the API server rejected our credentials (401)",
                     reason=Reason.AUTH, evidence=ev,
                     hint="Refresh the kubeconfig credentials (e.g. `gcloud container clusters get-credentials`) "
                          "or the kubernetes.token.")
    if listing.status in ("unreachable", "timeout"):
        return unreachable("Kubernetes API", listing.address, listing.detail,
                           timed_out=listing.status == "timeout")
    if listing.status == "untrusted":
        return untrusted_api(ctx, listing)
    if listing.status == "unconfigured":
        return skip(listing.detail, reason=Reason.NOT_CONFIGURED)
    if listing.status == "notfound":
        return error(f"cannot list {what} {where}: the API server does not serve {ev['resource']} (404)",
                     evidence=ev)
    status = f"HTTP {listing.http_status} " if listing.http_status else ""
    return error(f"cannot list {what} {where}: {status}{listing.detail}"[:300],
                 evidence=ev)
