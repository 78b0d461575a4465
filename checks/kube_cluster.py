"""Layer `kubernetes`: deployments, pods, events, memory and the ingress controller of Studio's namespace.

Every list is ONE call per namespace and kind, shared by the checks of a run (``ctx.shared``), never a
call per pod. Lists are read as raw JSON through the official client (``_preload_content=False``): a
field the typed models reject on a real cluster can never crash a check. A 403 for our credentials is
an ``error`` naming the exact RBAC rule to grant, never "no pods found".
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from studiodoctor.model import EPHEMERAL_WRITE, READ_ONLY, MUTATING, Command, Reason, error, fail, ok, skip, unreachable, warn
from studiodoctor.registry import check

# imported by the runner before any check starts (see studiodoctor.runner.preload)
# (the API classes too: kubernetes>=35 builds each on first use, seconds of CPU under load)
SDK_IMPORTS = ("kubernetes.client", "kubernetes.config", "kubernetes.client.api.core_v1_api",
               "kubernetes.client.api.apps_v1_api", "kubernetes.client.api.networking_v1_api",
               "kubernetes.client.api.custom_objects_api", "kubernetes.client.api.authorization_v1_api",
               "kubernetes.client.api.version_api")

API = "kubernetes.api"
PERMISSIONS = "kubernetes.permissions"
DEPLOYMENTS = "kubernetes.deployments"
PODS_READY = "kubernetes.pods_ready"
PODS_CRASHING = "kubernetes.pods_crashing"
PODS_OOMKILLED = "kubernetes.pods_oomkilled"
PODS_RESTARTS = "kubernetes.pods_restarts"
PODS_PENDING = "kubernetes.pods_pending"
EVENTS = "kubernetes.events"
MEMORY = "kubernetes.memory"
INGRESS_CONTROLLER = "kubernetes.ingress_controller"
INGRESS_PODS = "kubernetes.ingress_pods"

# list_objects(ctx, "pods", ALL_NAMESPACES): one cluster-wide list (needs a ClusterRole)
ALL_NAMESPACES = "*"

# The frontend's readiness probe is GET /healthz on 8081 (gunicorn, queries PostgreSQL): when these fail,
# pods not Ready are their consequence, not the root cause.
READINESS_EXPLAINERS = ("app.healthz", "postgres.reachable", "postgres.connections")

# Waiting reasons that mean "this container cannot run" (a Pending pod with these is not a scheduling issue).
CRASH_REASONS = {
    "CrashLoopBackOff": "the container keeps exiting; read its previous logs",
    "ImagePullBackOff": "the image cannot be pulled: wrong tag, deleted image or registry credentials",
    "ErrImagePull": "the image cannot be pulled: wrong tag, deleted image or registry credentials",
    "InvalidImageName": "the image reference is malformed",
    "CreateContainerConfigError": "a referenced Secret or ConfigMap (key) is missing",
    "CreateContainerError": "the runtime could not create the container (command, mounts)",
    "RunContainerError": "the runtime could not start the container",
}

# resource key -> (API group, resource, cluster-scoped, what the checks use it for)
RESOURCES = {
    "pods": ("", "pods", False, "pods"),
    "deployments": ("apps", "deployments", False, "deployments"),
    "events": ("", "events", False, "events"),
    "ingresses": ("networking.k8s.io", "ingresses", False, "ingresses"),
    "ingressclasses": ("networking.k8s.io", "ingressclasses", True, "ingress classes"),
    "podmetrics": ("metrics.k8s.io", "pods", False, "pod metrics"),
}


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
    """A kubectl command line bound to the profile's kubeconfig, context and namespace (studiodoctor.kubectl)."""
    from studiodoctor.kubectl import command

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


# -- time helpers -----------------------------------------------------------------------------------

def parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def ago_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 172800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60, "k": 1e3, "K": 1e3,
           "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "m": 1e-3}


def parse_quantity(q: Any) -> float | None:
    """Kubernetes quantity -> number ("2Gi" -> 2147483648, "500m" -> 0.5); None when unreadable."""
    if q is None:
        return None
    if isinstance(q, (int, float)):
        return float(q)
    text = str(q).strip()
    try:
        for suffix in ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "K", "M", "G", "T", "P", "E", "m"):
            if text.endswith(suffix):
                return float(text[: -len(suffix)]) * _SUFFIX[suffix]
        return float(text)
    except ValueError:
        return None


def mib(value: float | None) -> str:
    if value is None:
        return "?"
    if value >= 2**30 and value % 2**30 == 0:
        return f"{value / 2**30:.0f}Gi"
    return f"{value / 2**20:.0f}Mi"


# -- the client and shared list calls ----------------------------------------------------------------

@dataclass
class Conn:
    status: str                      # "ok" | "unconfigured" | "error"
    client: Any = None
    address: str = ""
    detail: str = ""


@dataclass
class Listing:
    """The outcome of one list call: items, or why there are none."""

    resource: str
    namespace: str
    items: list = field(default_factory=list)
    status: str = "ok"              # ok | forbidden | unauthorized | unreachable | timeout | notfound | error | unconfigured
    detail: str = ""
    http_status: int = 0
    address: str = ""
    seconds: float = 0.0
    pages_left: bool = False        # MAX_PAGES pages read and the server still had more

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _default_kubeconfig() -> str:
    env = os.environ.get("KUBECONFIG", "")
    if env:
        return env.split(os.pathsep)[0]
    return os.path.expanduser("~/.kube/config")


def connection(ctx) -> Conn:
    """The shared ApiClient for this run (``kubernetes.api_url`` first, then kubeconfig/context)."""

    def build() -> Conn:
        from kubernetes import client

        k = kube_section(ctx)
        cfg = client.Configuration()
        if k.get("api_url"):
            cfg.host = str(k["api_url"]).rstrip("/")
            if k.get("token"):
                cfg.api_key = {"authorization": f"Bearer {k['token']}"}
            if k.get("ca_file"):
                cfg.ssl_ca_cert = k["ca_file"]
            if k.get("insecure_skip_tls_verify"):
                cfg.verify_ssl = False
        else:
            from kubernetes import config as kconfig

            path = os.path.expanduser(k.get("kubeconfig") or _default_kubeconfig())
            if not os.path.isfile(path):
                if os.environ.get("KUBERNETES_SERVICE_HOST"):
                    try:
                        kconfig.load_incluster_config(client_configuration=cfg)
                    except kconfig.ConfigException as exc:
                        return Conn("error", detail=f"in-cluster config: {exc}")
                else:
                    return Conn("unconfigured", detail=f"no kubeconfig at {path} and kubernetes.api_url is not set")
            else:
                try:
                    kconfig.load_kube_config(config_file=path, context=k.get("context") or None,
                                             client_configuration=cfg)
                except Exception as exc:  # ConfigException, exec plugin failures, bad YAML
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    return Conn("error", detail=f"kubeconfig {path}: {first}"[:300])
        cfg.retries = 0  # one attempt: a refused connection must fail now, not after a backoff
        return Conn("ok", client=client.ApiClient(cfg), address=cfg.host)

    return ctx.shared.get("kubernetes:connection", build)


def _classify(exc: Exception, listing: Listing) -> Listing:
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        listing.http_status = exc.status or 0
        message = ""
        try:
            message = json.loads(exc.body or "{}").get("message", "")
        except (ValueError, AttributeError):
            message = (exc.body or "")[:200] if isinstance(exc.body, str) else ""
        listing.detail = message or (exc.reason or "")
        listing.status = {401: "unauthorized", 403: "forbidden", 404: "notfound"}.get(exc.status, "error")
        return listing
    import urllib3

    from studiodoctor.httpprobe import describe_error

    if not isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
        # not a network failure: the answer could not be read (not JSON, not a list): we could not look
        listing.status = "error"
        listing.detail = f"unreadable answer ({type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]})"[:300]
        return listing
    inner = getattr(exc, "reason", None) or exc
    timed_out, text = describe_error(inner if isinstance(inner, BaseException) else exc)
    if "refused" in str(exc).lower():
        text, timed_out = "connection refused", False
    listing.status = "timeout" if timed_out else "unreachable"
    listing.detail = text
    return listing


# Objects per page of a list call (``limit``/``continue``): the API server never builds one huge answer.
PAGE_SIZE = 500
# Most pages read per listing: a bound on what one run may pull from a big namespace.
MAX_PAGES = 20


def _call_list(ctx, conn: Conn, resource: str, ns: str, label_selector: str | None,
               field_selector: str | None, cont: str = "") -> Any:
    from kubernetes import client

    opts: dict[str, Any] = {"_request_timeout": max(0.5, ctx.timeout()), "_preload_content": False,
                            "limit": PAGE_SIZE}
    if cont:
        opts["_continue"] = cont
    if label_selector:
        opts["label_selector"] = label_selector
    if field_selector:
        opts["field_selector"] = field_selector
    api = conn.client
    if ns == ALL_NAMESPACES:
        if resource == "pods":
            return client.CoreV1Api(api).list_pod_for_all_namespaces(**opts)
        if resource == "ingresses":
            return client.NetworkingV1Api(api).list_ingress_for_all_namespaces(**opts)
    if resource == "pods":
        return client.CoreV1Api(api).list_namespaced_pod(ns, **opts)
    if resource == "events":
        return client.CoreV1Api(api).list_namespaced_event(ns, **opts)
    if resource == "deployments":
        return client.AppsV1Api(api).list_namespaced_deployment(ns, **opts)
    if resource == "ingresses":
        return client.NetworkingV1Api(api).list_namespaced_ingress(ns, **opts)
    if resource == "ingressclasses":
        return client.NetworkingV1Api(api).list_ingress_class(**opts)
    if resource == "podmetrics":
        opts.pop("field_selector", None)
        return client.CustomObjectsApi(api).list_namespaced_custom_object(
            "metrics.k8s.io", "v1beta1", ns, "pods", **opts)
    raise ValueError(resource)


class UnexpectedAnswer(ValueError):
    """A list answer that is not the documented ``{"kind": "...List", "items": [objects]}``."""


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
    import time

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
        try:
            cont = ""
            for _ in range(MAX_PAGES):  # paginated: limit/continue
                resp = _call_list(ctx, conn, resource, ns, label_selector, field_selector, cont)
                data = resp if isinstance(resp, dict) else json.loads(resp.data)
                listing.items += list_items(data)
                cont = (data.get("metadata") or {}).get("continue") or ""
                if not cont or not isinstance(cont, str):
                    break
            listing.pages_left = bool(cont)
        except Exception as exc:
            _classify(exc, listing)
        listing.seconds = time.perf_counter() - started
        return listing

    return ctx.shared.get(key, fetch)


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
    if listing.status == "unconfigured":
        return skip(listing.detail, reason=Reason.NOT_CONFIGURED)
    if listing.status == "notfound":
        return error(f"cannot list {what} {where}: the API server does not serve {ev['resource']} (404)",
                     evidence=ev)
    status = f"HTTP {listing.http_status} " if listing.http_status else ""
    return error(f"cannot list {what} {where}: {status}{listing.detail}"[:300],
                 evidence=ev)


# -- pod analysis (pure functions: the benchmark times these) -----------------------------------------

def workload_of(p: dict) -> str:
    meta = p.get("metadata") or {}
    owners = meta.get("ownerReferences") or []
    labels = meta.get("labels") or {}
    if owners:
        name = owners[0].get("name", "")
        h = labels.get("pod-template-hash")
        if owners[0].get("kind") == "ReplicaSet" and h and name.endswith("-" + h):
            return name[: -len(h) - 1]
        return name
    return meta.get("name", "?")


def _statuses(p: dict) -> list[dict]:
    st = p.get("status") or {}
    return list(st.get("initContainerStatuses") or []) + list(st.get("containerStatuses") or [])


def _limits(p: dict) -> dict[str, float | None]:
    out = {}
    for c in (p.get("spec") or {}).get("containers") or []:
        out[c.get("name")] = parse_quantity(((c.get("resources") or {}).get("limits") or {}).get("memory"))
    return out


def _condition(p: dict, ctype: str) -> dict:
    for cond in (p.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return cond
    return {}


def _active(p: dict) -> bool:
    meta = p.get("metadata") or {}
    phase = (p.get("status") or {}).get("phase")
    return not meta.get("deletionTimestamp") and phase not in ("Succeeded",)


def analyse_pods(pods: list[dict], now: datetime, *, restart_window: float = 3600,
                 pending_grace: float = 300) -> dict:
    """Everything the pod checks report, from one pass over the pod list."""
    out: dict[str, Any] = {"total": 0, "workloads": {}, "not_ready": [], "crashing": [], "oomkilled": [],
                           "restarts": [], "pending": [], "pending_young": []}
    for p in pods:
        if not _active(p):
            continue
        out["total"] += 1
        meta, st = p.get("metadata") or {}, p.get("status") or {}
        name, wl = meta.get("name", "?"), workload_of(p)
        phase = st.get("phase", "Unknown")
        ready = _condition(p, "Ready").get("status") == "True"
        w = out["workloads"].setdefault(wl, {"pods": 0, "ready": 0})
        w["pods"] += 1
        w["ready"] += ready
        limits = _limits(p)
        crash_here = False
        for cs in _statuses(p):
            cname = cs.get("name", "?")
            state, last = cs.get("state") or {}, cs.get("lastState") or {}
            waiting = state.get("waiting") or {}
            term_last = last.get("terminated") or {}
            term_now = state.get("terminated") or {}
            restarts = int(cs.get("restartCount") or 0)
            if waiting.get("reason") in CRASH_REASONS:
                crash_here = True
                out["crashing"].append({
                    "pod": name, "workload": wl, "container": cname, "reason": waiting["reason"],
                    "message": (waiting.get("message") or "")[:300], "restarts": restarts, "image": cs.get("image"),
                    "last_exit_code": term_last.get("exitCode"), "last_reason": term_last.get("reason")})
            for term, which in ((term_now, "state"), (term_last, "lastState")):
                if term.get("reason") == "OOMKilled":
                    finished = parse_time(term.get("finishedAt"))
                    age = (now - finished).total_seconds() if finished else None
                    out["oomkilled"].append({
                        "pod": name, "workload": wl, "container": cname, "restarts": restarts,
                        "finished_at": term.get("finishedAt"), "age_s": age, "exit_code": term.get("exitCode"),
                        "memory_limit": mib(limits.get(cname)) if limits.get(cname) else "none"})
            finished = parse_time(term_last.get("finishedAt"))
            if restarts and finished and (now - finished).total_seconds() <= restart_window:
                out["restarts"].append({
                    "pod": name, "workload": wl, "container": cname, "restarts": restarts,
                    "last_reason": term_last.get("reason"), "last_exit_code": term_last.get("exitCode"),
                    "last_finished": term_last.get("finishedAt"),
                    "age_s": (now - finished).total_seconds()})
        if phase == "Pending" and not crash_here:
            sched = _condition(p, "PodScheduled")
            created = parse_time(meta.get("creationTimestamp"))
            age = (now - created).total_seconds() if created else None
            entry = {"pod": name, "workload": wl, "age_s": age}
            if sched.get("status") == "False":
                entry.update(reason=sched.get("reason") or "Unschedulable", message=(sched.get("message") or "")[:400])
                out["pending"].append(entry)
            else:
                waits = sorted({(cs.get("state") or {}).get("waiting", {}).get("reason") or "waiting"
                                for cs in _statuses(p)} or {"ContainerCreating"})
                entry.update(reason=", ".join(waits), message="scheduled but containers not started")
                (out["pending"] if age is None or age > pending_grace else out["pending_young"]).append(entry)
        elif phase not in ("Pending",) and not ready:
            reasons = []
            for cs in _statuses(p):
                if cs.get("ready"):
                    continue
                waiting = (cs.get("state") or {}).get("waiting") or {}
                if waiting.get("reason"):
                    reasons.append(f"{cs.get('name')}: {waiting['reason']}")
                elif (cs.get("state") or {}).get("running"):
                    reasons.append(f"{cs.get('name')}: running, readiness probe failing")
                elif (cs.get("state") or {}).get("terminated"):
                    reasons.append(f"{cs.get('name')}: terminated "
                                   f"({(cs['state']['terminated'].get('reason') or 'exit')})")
            if phase == "Failed":
                reasons.append(f"pod Failed: {st.get('reason') or ''} {st.get('message') or ''}".strip())
            out["not_ready"].append({"pod": name, "workload": wl, "phase": phase,
                                     "why": reasons or ["Ready condition False"],
                                     "containers": [cs.get("name") for cs in _statuses(p) if not cs.get("ready")]})
    return out


def pods_listing(ctx) -> Listing:
    return list_objects(ctx, "pods", namespace(ctx), label_selector=kube_setting(ctx, "app_selector", "") or None)


def pod_analysis(ctx):
    """(listing, analysis) shared by the pod checks of a run."""
    listing = pods_listing(ctx)
    if not listing.ok:
        return listing, None

    def build():
        return analyse_pods(listing.items, datetime.now(timezone.utc),
                            restart_window=float(kube_setting(ctx, "restart_window_minutes", 60)) * 60,
                            pending_grace=float(kube_setting(ctx, "pending_grace_seconds", 300)))

    return listing, ctx.shared.get(f"kubernetes:pod-analysis:{namespace(ctx)}", build)


def _runs(c: dict) -> str:
    return " ".join(str(x) for x in [c.get("image") or ""] + list(c.get("command") or []) + list(c.get("args") or []))


def deployment_roles(deployments: list[dict]) -> dict[str, dict]:
    """Which Deployment is Studio's app, its workers, its Cloud SQL proxy, told by what their pods run
    (gunicorn; celery worker; cloud-sql-proxy), never by name: {role: {deployment, selector, containers}}.
    The runbook binds its commands to these names (studiodoctor.symptoms.template_values)."""
    roles: dict[str, dict] = {}
    for d in deployments:
        meta, spec = d.get("metadata") or {}, d.get("spec") or {}
        containers = (((spec.get("template") or {}).get("spec") or {}).get("containers")) or []
        labels = (spec.get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        for c in containers:
            text = _runs(c).lower()
            role = ("app" if "gunicorn" in text else "workers" if "celery" in text and "worker" in text
                    else "cloudsql" if "cloud-sql-proxy" in text or "cloud_sql_proxy" in text else "")
            if not role or role in roles:
                continue
            entry = {"deployment": meta.get("name", ""), "selector": selector, "container": c.get("name", "")}
            if role == "app":
                web = [o.get("name") for o in containers if o is not c and "nginx" in str(o.get("image", "")).lower()]
                if web:
                    entry["nginx_container"] = web[0]
            roles[role] = entry
    return roles


def no_pods(ctx, a: dict | None):
    """The Result when there is nothing to examine: zero pods is a wrong namespace or selector, never ok."""
    if a is None or a["total"]:
        return None
    ns, selector = namespace(ctx), kube_setting(ctx, "app_selector", "")
    where = f"namespace {ns}" + (f" with labels {selector}" if selector else "")
    return error(f"no pods in {where}: nothing to examine (set kubernetes.namespace"
                 + (" / kubernetes.app_selector" if selector else "") + " to where Studio runs)",
                 reason=Reason.NOT_CONFIGURED, evidence={"namespace": ns, "selector": selector, "pods": 0},
                 hint="Find Studio's namespace with the command below (the one whose pods run gunicorn/celery), "
                      "then set kubernetes.namespace in the profile.",
                 commands=[Command(kubectl(ctx, "get pods -A -o wide", None), READ_ONLY)])


def _names(entries: list[dict], limit: int = 4, key: str = "pod") -> str:
    shown = sorted({e[key] for e in entries})
    more = len(shown) - limit
    return ", ".join(shown[:limit]) + (f" (+{more} more)" if more > 0 else "")


def _pod_commands(ctx, pod: str | None, container: str | None = None, previous: bool = False) -> list[Command]:
    cmds = [Command(kubectl(ctx, "get pods -o wide"), READ_ONLY)]
    if pod:
        cmds.append(Command(kubectl(ctx, f"describe pod {pod}"), READ_ONLY, "events and last state"))
        if container:
            cmds.append(Command(kubectl(ctx, f"logs {pod} -c {container}" + (" --previous" if previous else "")
                                        + " --tail=200"), READ_ONLY,
                                "logs of the crashed instance" if previous else ""))
    return cmds


# -- checks ------------------------------------------------------------------------------------------

@check(API, title="Kubernetes API answers", needs=("kubernetes.namespace",), permissions=("GET /version/",), smoke=True)
def check_api(ctx):
    """The Kubernetes API server answers /version/ with our kubeconfig, context or ``kubernetes.api_url``.

    Every other kubernetes check depends on it. With no kubeconfig on this machine and no
    ``kubernetes.api_url`` the layer is skipped. Fix: `gcloud container clusters get-credentials CLUSTER`
    (or set kubernetes.kubeconfig/context), or port-forward and set kubernetes.api_url."""
    conn = connection(ctx)
    if conn.status == "unconfigured":
        return skip(conn.detail, reason=Reason.NOT_CONFIGURED,
                    hint="set kubernetes.kubeconfig (and kubernetes.context) or kubernetes.api_url")
    if conn.status != "ok":
        return error(f"cannot build a Kubernetes client: {conn.detail}", reason=Reason.UNEXPECTED)
    from kubernetes import client

    listing = Listing("pods", "", address=conn.address)
    try:
        resp = client.VersionApi(conn.client).get_code(_request_timeout=ctx.timeout(), _preload_content=False)
        info = json.loads(resp.data)
        if not isinstance(info, dict):
            raise ValueError(f"a JSON {type(info).__name__}, not the version object")
    except Exception as exc:
        _classify(exc, listing)
        if listing.status in ("unreachable", "timeout"):
            return unreachable("Kubernetes API", conn.address, listing.detail, timed_out=listing.status == "timeout",
                               commands=[Command(kubectl(ctx, "cluster-info", None), READ_ONLY)])
        if listing.status == "unauthorized":
            return error("the API server rejected our credentials (401)", reason=Reason.AUTH,
                         evidence={"address": conn.address},
                         hint="Refresh the credentials: `gcloud container clusters get-credentials CLUSTER`.")
        status = f"answered HTTP {listing.http_status}" if listing.http_status else "failed"
        return error(f"GET /version/ {status}: {listing.detail}"[:300],
                     evidence={"address": conn.address})
    ctx_name = kube_section(ctx).get("context") or ""
    return ok(f"API server {info.get('gitVersion', '?')} answers at {conn.address}",
              evidence={"address": conn.address, "version": info.get("gitVersion"), "platform": info.get("platform"),
                        "context": ctx_name, "namespace": namespace(ctx)})


def _needed_permissions(ctx) -> list[tuple[str, str, bool]]:
    """(resource key, namespace, required) for every list the checks make."""
    ns, tns = namespace(ctx), traefik_namespace(ctx)
    needed = [("pods", ns, True), ("deployments", ns, True), ("events", ns, True), ("ingresses", ns, True),
              ("ingressclasses", "", False), ("podmetrics", ns, False),
              ("pods", ALL_NAMESPACES, False), ("ingresses", ALL_NAMESPACES, False)]  # to find the controller
    if tns != ns:
        needed.append(("pods", tns, False))
    return needed


@check(PERMISSIONS, title="Our credentials may read what the checks need", depends_on=(API,),
       permissions=("create selfsubjectaccessreviews",), safety=EPHEMERAL_WRITE)
def check_permissions(ctx):
    """Asks the API server (SelfSubjectAccessReview) whether our identity may list what the checks read.

    Not a plain read: each question is a POST that *creates* a SelfSubjectAccessReview, which the API
    server answers and never stores (safety class `ephemeral-write`; RBAC: create
    selfsubjectaccessreviews.authorization.k8s.io, granted to every authenticated user by default).

    Required: list pods, deployments (apps), events and ingresses (networking.k8s.io) in the namespace.
    Optional: ingress classes (cluster-wide), pod metrics (metrics.k8s.io) and pods in the Traefik
    namespace. A missing right is an `error` with the exact Role rule to grant: without it the other
    checks could only guess. Fix: bind a read-only Role with those rules to the identity we use."""
    from kubernetes import client

    conn = connection(ctx)
    api = client.AuthorizationV1Api(conn.client)
    allowed, denied = [], []
    for resource, ns, required in _needed_permissions(ctx):
        group, name, cluster, _ = RESOURCES[resource]
        wide = cluster or ns == ALL_NAMESPACES
        attrs = client.V1ResourceAttributes(verb="list", group=group, resource=name,
                                            namespace=None if wide else ns)
        body = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=attrs))
        label = f"list {name}{'.' + group if group else ''}" + (
            " in all namespaces" if ns == ALL_NAMESPACES else "" if cluster else f" in {ns}")
        try:
            resp = api.create_self_subject_access_review(body, _request_timeout=ctx.timeout(), _preload_content=False)
            status = (json.loads(resp.data).get("status") or {})
        except Exception as exc:
            listing = _classify(exc, Listing(resource, ns, address=conn.address))
            if listing.status in ("unreachable", "timeout"):
                return unreachable("Kubernetes API", conn.address, listing.detail,
                                   timed_out=listing.status == "timeout")
            return error(f"cannot ask the API server what we may do (SelfSubjectAccessReview): "
                         f"HTTP {listing.http_status} {listing.detail}"[:300], reason=Reason.FORBIDDEN
                         if listing.status == "forbidden" else Reason.UNEXPECTED,
                         commands=[Command(can_i(ctx, "pods", namespace(ctx)), READ_ONLY)])
        entry = {"permission": label, "required": required, "rule": rbac_rule(resource, ns)}
        (allowed if status.get("allowed") else denied).append(entry)
    ev = {"allowed": [a["permission"] for a in allowed], "denied": [d["permission"] for d in denied]}
    if not denied:
        return ok(f"all {len(allowed)} permissions granted", evidence=ev)
    rules = "\n".join(f"- {d['rule']}" for d in denied)
    cmds = [Command(can_i(ctx, r, ns), READ_ONLY) for r, ns, _ in _needed_permissions(ctx)
            if any(d["permission"].startswith(f"list {RESOURCES[r][1]}") for d in denied)][:4]
    ns = namespace(ctx)
    cmds.append(Command(kubectl(ctx, "create role studiodoctor-read --verb=list,get "
                                     "--resource=pods,events,deployments.apps,ingresses.networking.k8s.io"), MUTATING,
                        "then bind it: kubectl create rolebinding studiodoctor-read --role=studiodoctor-read "
                        f"--user=<our identity> -n {ns}"))
    required = [d for d in denied if d["required"]]
    ev["rules_to_grant"] = [d["rule"] for d in denied]
    if required:
        return error(f"missing {len(required)} required permission(s): "
                     + "; ".join(f"{d['permission']} (grant {d['rule']})" for d in required),
                     reason=Reason.FORBIDDEN, evidence=ev, hint=f"Grant these rules (read-only):\n{rules}",
                     commands=cmds)
    return warn("missing optional permission(s): " + ", ".join(d["permission"] for d in denied),
                reason=Reason.FORBIDDEN, evidence=ev,
                hint=f"The checks that need them report an error until granted:\n{rules}", commands=cmds)


@check(DEPLOYMENTS, title="Deployments have their desired replicas available", depends_on=(API,),
       permissions=("list deployments.apps",),
       explained_by=(PODS_CRASHING, PODS_OOMKILLED, PODS_PENDING, PODS_READY, *READINESS_EXPLAINERS), smoke=True)
def check_deployments(ctx):
    """Each Deployment of the namespace: desired vs available replicas, and rollouts stuck.

    Studio runs a frontend Deployment (app + nginx-proxy, 5 replicas in the chart) and a workers
    Deployment (Celery). 0 available = the Service has no endpoints = 502/503 at the ingress.
    A Progressing condition with ProgressDeadlineExceeded means the rollout is stuck (new pods never
    became Ready): look at the new pods' events and logs; `kubectl rollout undo` reverts."""
    ns = namespace(ctx)
    listing = list_objects(ctx, "deployments", ns)
    if not listing.ok:
        return listing_problem(ctx, listing)
    if not listing.items:
        return warn(f"no Deployments in namespace {ns} (is kubernetes.namespace right?)",
                    commands=[Command(kubectl(ctx, "get deployments -A", None), READ_ONLY)])
    rows, down, degraded, stuck = {}, [], [], []
    for d in listing.items:
        name = (d.get("metadata") or {}).get("name", "?")
        spec, st = d.get("spec") or {}, d.get("status") or {}
        desired = spec.get("replicas", 1)
        available = st.get("availableReplicas") or 0
        conds = {c.get("type"): c for c in st.get("conditions") or []}
        prog = conds.get("Progressing") or {}
        rows[name] = {"desired": desired, "available": available, "ready": st.get("readyReplicas") or 0,
                      "updated": st.get("updatedReplicas") or 0}
        if prog.get("reason") == "ProgressDeadlineExceeded":
            stuck.append(name)
            rows[name]["rollout"] = f"stuck: {prog.get('message', '')}"
        if desired and available == 0:
            down.append(name)
        elif available < desired:
            degraded.append(name)
    ev = {"namespace": ns, "deployments": rows, "roles": deployment_roles(listing.items)}
    cmds = [Command(kubectl(ctx, "get deployments -o wide"), READ_ONLY)]
    target = (down + stuck + degraded or [None])[0]
    if target:
        cmds += [Command(kubectl(ctx, f"rollout status deployment/{target} --timeout=5s"), READ_ONLY),
                 Command(kubectl(ctx, f"describe deployment {target}"), READ_ONLY),
                 Command(kubectl(ctx, f"rollout undo deployment/{target}"), MUTATING,
                         "only if a bad rollout is the cause")]
    desc = lambda n: f"{n} {rows[n]['available']}/{rows[n]['desired']} available"  # noqa: E731
    if down or stuck:
        parts = [desc(n) + (", rollout stuck (ProgressDeadlineExceeded)" if n in stuck else "") for n in down]
        parts += [f"{n} rollout stuck (ProgressDeadlineExceeded)" for n in stuck if n not in down]
        return fail("; ".join(parts), evidence=ev, commands=cmds,
                    hint="No available replica means the Service has no endpoints (the ingress answers 502/503). "
                         "Look at the pods of the deployment (kubernetes.pods_* checks) for why they are not Ready.")
    if degraded:
        return warn("degraded: " + "; ".join(desc(n) for n in degraded), evidence=ev, commands=cmds,
                    hint="Some replicas are not available; the rest serve traffic with less capacity.")
    return ok(f"{len(rows)} deployment(s) fully available: " + ", ".join(desc(n) for n in rows)[:200], evidence=ev,
              commands=cmds)


@check(PODS_READY, title="Pods are Ready", depends_on=(API,), permissions=("list pods",),
       explained_by=(PODS_CRASHING, PODS_OOMKILLED, *READINESS_EXPLAINERS), smoke=True)
def check_pods_ready(ctx):
    """Running pods whose Ready condition is False, grouped by workload.

    The frontend's readiness probe is GET /healthz on 8081 (straight to gunicorn, touching the
    database): a pod that is Running but not Ready gets no traffic. A workload with no Ready pod
    is a `fail` (its Service has no endpoints); some pods not Ready is a `warn`. Pending pods are
    reported by kubernetes.pods_pending, crash loops by kubernetes.pods_crashing."""
    listing, a = pod_analysis(ctx)
    if a is None:
        return listing_problem(ctx, listing)
    if (empty := no_pods(ctx, a)) is not None:
        return empty
    ns = namespace(ctx)
    workloads = {w: f"{v['ready']}/{v['pods']} ready" for w, v in a["workloads"].items()}
    ev = {"namespace": ns, "pods": a["total"], "workloads": workloads, "not_ready": a["not_ready"][:20]}
    dead = [w for w, v in a["workloads"].items() if v["pods"] and not v["ready"]]
    first = a["not_ready"][0]["pod"] if a["not_ready"] else None
    container = ((a["not_ready"][0].get("containers") or [None])[0]) if a["not_ready"] else None
    if dead:
        return fail(f"no Ready pod in {', '.join(dead)} ({'; '.join(workloads[w] for w in dead)})", evidence=ev,
                    commands=_pod_commands(ctx, first, container),
                    hint="A workload without a Ready pod gets no traffic. For the frontend, readiness is "
                         "GET /healthz on 8081: check the app and its database.")
    if a["not_ready"]:
        return warn(f"{len(a['not_ready'])} pod(s) not Ready: {_names(a['not_ready'])}", evidence=ev,
                    commands=_pod_commands(ctx, first))
    return ok(f"all {a['total']} pods Ready in {len(workloads)} workload(s)", evidence=ev)


@check(PODS_CRASHING, title="No container crash-looping or failing to pull", depends_on=(API,),
       permissions=("list pods",), smoke=True)
def check_pods_crashing(ctx):
    """Containers waiting in CrashLoopBackOff, ImagePullBackOff/ErrImagePull or config errors.

    CrashLoopBackOff: the process exits (read `kubectl logs --previous`); for Studio's app that is
    often a settings or database error at import time. ImagePullBackOff: the image tag does not exist
    or the registry refuses us. CreateContainerConfigError: a Secret/ConfigMap key is missing."""
    listing, a = pod_analysis(ctx)
    if a is None:
        return listing_problem(ctx, listing)
    if (empty := no_pods(ctx, a)) is not None:
        return empty
    crashing = a["crashing"]
    if not crashing:
        return ok(f"no container crash-looping among {a['total']} pods", evidence={"pods": a["total"]})
    by_reason: dict[str, list] = {}
    for c in crashing:
        by_reason.setdefault(c["reason"], []).append(c)
    first = crashing[0]
    summary = "; ".join(f"{r} in {_names(v)} ({', '.join(sorted({c['container'] for c in v}))})"
                        for r, v in by_reason.items())
    hint = " ".join(f"{r}: {CRASH_REASONS[r]}." for r in by_reason)
    return fail(summary, evidence={"containers": crashing[:20], "count": len(crashing)}, hint=hint,
                commands=_pod_commands(ctx, first["pod"], first["container"],
                                       previous=first["reason"] == "CrashLoopBackOff"))


@check(PODS_OOMKILLED, title="No container OOMKilled recently", depends_on=(API,), permissions=("list pods",))
def check_pods_oomkilled(ctx):
    """Containers whose current or last termination is OOMKilled (exit 137: over the memory limit).

    Within ``kubernetes.restart_window_minutes`` (60) it is a `fail`, older a `warn`. Studio's app
    has a 2Gi limit and the workers 8Gi: large publishes or imports hit it. Fix: find the request or
    task that grows memory; raise the limit in the chart values only with evidence."""
    listing, a = pod_analysis(ctx)
    if a is None:
        return listing_problem(ctx, listing)
    if (empty := no_pods(ctx, a)) is not None:
        return empty
    window = float(kube_setting(ctx, "restart_window_minutes", 60)) * 60
    ooms = a["oomkilled"]
    if not ooms:
        return ok(f"no OOMKilled container among {a['total']} pods", evidence={"pods": a["total"]})
    recent = [o for o in ooms if o["age_s"] is not None and o["age_s"] <= window]
    first = (recent or ooms)[0]
    desc = "; ".join(f"{o['pod']}/{o['container']} (limit {o['memory_limit']}, "
                     f"{ago_text(o['age_s']) if o['age_s'] is not None else 'time unknown'}, {o['restarts']} restarts)"
                     for o in (recent or ooms)[:4])
    ev = {"oomkilled": ooms[:20], "window_minutes": window / 60}
    cmds = _pod_commands(ctx, first["pod"], first["container"], previous=True) + [
        Command(kubectl(ctx, "top pods --containers"), READ_ONLY, "needs the metrics API")]
    hint = "The container used more memory than its limit and the kernel killed it (exit 137)."
    if recent:
        return fail(f"OOMKilled in the last {window / 60:g} min: {desc}", evidence=ev, commands=cmds, hint=hint)
    return warn(f"OOMKilled earlier: {desc}", evidence=ev, commands=cmds, hint=hint)


@check(PODS_RESTARTS, title="No container restarted in the last hour", depends_on=(API,),
       permissions=("list pods",))
def check_pods_restarts(ctx):
    """Containers whose last termination finished within ``kubernetes.restart_window_minutes`` (60).

    Each restart drops the requests in flight (Celery tasks too, unless soft shutdown finishes
    them). The evidence names the last exit reason and code: OOMKilled (137), Error (1), or a
    SIGKILL after the grace period (137 with reason Error)."""
    listing, a = pod_analysis(ctx)
    if a is None:
        return listing_problem(ctx, listing)
    if (empty := no_pods(ctx, a)) is not None:
        return empty
    window = float(kube_setting(ctx, "restart_window_minutes", 60))
    r = a["restarts"]
    if not r:
        return ok(f"no restart in the last {window:g} min among {a['total']} pods", evidence={"pods": a["total"]})
    desc = "; ".join(f"{x['pod']}/{x['container']} x{x['restarts']} (last {x['last_reason'] or '?'} "
                     f"exit {x['last_exit_code']}, {ago_text(x['age_s'])})" for x in r[:4])
    return warn(f"{len(r)} container(s) restarted in the last {window:g} min: {desc}",
                evidence={"restarts": r[:20], "window_minutes": window},
                commands=_pod_commands(ctx, r[0]["pod"], r[0]["container"], previous=True))


@check(PODS_PENDING, title="No pod stuck Pending", depends_on=(API,), permissions=("list pods",))
def check_pods_pending(ctx):
    """Pending pods with the scheduler's reason (PodScheduled=False: Insufficient memory/cpu,
    node affinity, taints, unbound PVCs), or scheduled pods whose containers do not start.

    Studio's pods need nodes labelled ``full-gcp-access-scope=true``: a node pool change leaves them
    Pending with "didn't match Pod's node affinity". Fix: free or add capacity, or fix the selector."""
    listing, a = pod_analysis(ctx)
    if a is None:
        return listing_problem(ctx, listing)
    if (empty := no_pods(ctx, a)) is not None:
        return empty
    pending = a["pending"]
    ev = {"pending": pending[:20], "recently_created": a["pending_young"][:20]}
    if not pending:
        note = f" ({len(a['pending_young'])} just created)" if a["pending_young"] else ""
        return ok(f"no pod stuck Pending among {a['total']} pods{note}", evidence=ev)
    unsched = [p for p in pending if p.get("reason") == "Unschedulable" or "nodes are available" in p.get("message", "")]
    first = pending[0]
    summary = "; ".join(f"{p['pod']} Pending {ago_text(p['age_s']) if p['age_s'] else ''}: "
                        f"{p['reason']}: {p['message']}" for p in pending[:3])
    cmds = _pod_commands(ctx, first["pod"]) + [
        Command(kubectl(ctx, "get events --field-selector reason=FailedScheduling"), READ_ONLY),
        Command(kubectl(ctx, "describe nodes", None), READ_ONLY, "allocatable vs requested")]
    return fail(f"{len(pending)} pod(s) Pending: {summary}"[:600], evidence=ev, commands=cmds,
                hint=("The scheduler cannot place the pod: " if unsched else "The pod does not start: ")
                + "see its events; free or add node capacity, or fix affinity/taints/volumes.")


@check(EVENTS, title="Warning events of the last 30 minutes", depends_on=(API,), permissions=("list events",))
def check_events(ctx):
    """Warning events of the namespace in the last ``kubernetes.events_window_minutes`` (30), grouped by reason.

    Events are the cluster's own account of what went wrong (BackOff, Unhealthy readiness probes,
    FailedScheduling, FailedMount, Evicted, OOMKilling). They are evidence, not a verdict: `warn`
    when any is present. One list call with ``fieldSelector=type=Warning``."""
    ns = namespace(ctx)
    listing = list_objects(ctx, "events", ns, field_selector="type=Warning")
    if not listing.ok:
        return listing_problem(ctx, listing)
    window = float(kube_setting(ctx, "events_window_minutes", 30))
    now = datetime.now(timezone.utc)
    groups: dict[str, dict] = {}
    for e in listing.items:
        if e.get("type") != "Warning":
            continue
        series = e.get("series") or {}
        when = (parse_time(series.get("lastObservedTime")) or parse_time(e.get("lastTimestamp"))
                or parse_time(e.get("eventTime")) or parse_time((e.get("metadata") or {}).get("creationTimestamp")))
        if not when or (now - when).total_seconds() > window * 60:
            continue
        reason = e.get("reason") or "?"
        obj = e.get("involvedObject") or {}
        g = groups.setdefault(reason, {"events": 0, "count": 0, "objects": [], "message": "", "last": ""})
        g["events"] += 1
        g["count"] += int(series.get("count") or e.get("count") or 1)
        ref = f"{(obj.get('kind') or '').lower()}/{obj.get('name')}"
        if ref not in g["objects"] and len(g["objects"]) < 10:
            g["objects"].append(ref)
        stamp = when.isoformat()
        if stamp >= g["last"]:
            g["last"], g["message"] = stamp, (e.get("message") or "")[:300]
    cmds = [Command(kubectl(ctx, "get events --field-selector type=Warning --sort-by=.lastTimestamp"), READ_ONLY)]
    if not groups:
        return ok(f"no Warning event in the last {window:g} min in {ns}", evidence={"namespace": ns},
                  commands=cmds)
    order = sorted(groups, key=lambda r: -groups[r]["count"])
    summary = ", ".join(f"{r} x{groups[r]['count']} ({len(groups[r]['objects'])} object(s))" for r in order[:5])
    return warn(f"Warning events in the last {window:g} min: {summary}",
                evidence={"namespace": ns, "by_reason": {r: groups[r] for r in order}},
                commands=cmds, hint=f"Latest {order[0]}: {groups[order[0]]['message']}")


@check(MEMORY, title="Memory use below the containers' limits", depends_on=(API,),
       permissions=("list pods.metrics.k8s.io",))
def check_memory(ctx):
    """Container memory use (metrics API, metrics.k8s.io) against each container's memory limit.

    Skipped when the cluster serves no metrics API. At ``kubernetes.memory_warn_percent`` (90) of
    the limit a container is close to being OOMKilled: a `warn`. Containers without a limit are listed."""
    ns = namespace(ctx)
    metrics = list_objects(ctx, "podmetrics", ns)
    if metrics.status == "notfound":
        return skip("the metrics API (metrics.k8s.io) is not served by this cluster", reason=Reason.NOT_APPLICABLE)
    if not metrics.ok:
        return listing_problem(ctx, metrics)
    pods, a = pod_analysis(ctx)
    if a is None:
        return listing_problem(ctx, pods)
    if (empty := no_pods(ctx, a)) is not None:
        return empty
    limits = {(p.get("metadata") or {}).get("name"): _limits(p) for p in pods.items if _active(p)}
    threshold = float(kube_setting(ctx, "memory_warn_percent", 90))
    rows, no_limit = [], []
    measured = [m for m in metrics.items if (m.get("metadata") or {}).get("name") in limits]
    if limits and not measured:
        return error(f"the metrics API returned no memory usage for any of the {len(limits)} pods in {ns}: "
                     "cannot compare memory with the limits", reason=Reason.UNEXPECTED,
                     evidence={"pods": len(limits), "pod_metrics": len(metrics.items)},
                     hint="metrics-server may be starting or failing to scrape the nodes: "
                          "kubectl -n kube-system logs deploy/metrics-server",
                     commands=[Command(kubectl(ctx, "top pods --containers"), READ_ONLY)])
    for m in measured:
        pname = (m.get("metadata") or {}).get("name")
        for c in m.get("containers") or []:
            used = parse_quantity((c.get("usage") or {}).get("memory"))
            limit = limits.get(pname, {}).get(c.get("name"))
            if used is None:
                continue
            if not limit:
                no_limit.append(f"{pname}/{c.get('name')}")
                continue
            rows.append({"pod": pname, "container": c.get("name"), "used": mib(used), "limit": mib(limit),
                         "percent": round(100 * used / limit, 1)})
    rows.sort(key=lambda r: -r["percent"])
    ev = {"top": rows[:10], "containers": len(rows), "without_limit": no_limit[:10], "warn_percent": threshold}
    high = [r for r in rows if r["percent"] >= threshold]
    cmds = [Command(kubectl(ctx, "top pods --containers --sort-by=memory"), READ_ONLY)]
    if high:
        return warn("near the memory limit: " + "; ".join(f"{r['pod']}/{r['container']} {r['used']} of {r['limit']} "
                                                          f"({r['percent']}%)" for r in high[:4]),
                    evidence=ev, commands=cmds, hint="Close to the limit the kernel OOM-kills the container.")
    if not rows:
        return warn(f"nothing to compare: no container with both metrics and a memory limit "
                    f"({len(no_limit)} without limit)", evidence=ev, commands=cmds,
                    hint="Without a memory limit a container is not OOM-killed at a limit, but can exhaust its node.")
    return ok(f"highest memory use {rows[0]['percent']}% of limit ({rows[0]['pod']}/{rows[0]['container']})",
              evidence=ev, commands=cmds)


# the ingress checks (controller detection, its pods) live in their own module
from checks import kube_ingress  # noqa: E402,F401  (registers them after the checks above)
