"""kubernetes.api (the API server answers /version/ with our credentials) and kubernetes.permissions
(SelfSubjectAccessReview: may we list what the checks read; the layer's only write, declared)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from checks.kubernetes.common import API, PERMISSIONS, SDK_IMPORTS, check  # noqa: F401
from studiodoctor.backends.kubernetes import (ALL_NAMESPACES, RESOURCES, Listing, can_i, classify, connection, get,
                                              kube_section, kubectl, namespace, post, rbac_rule, traefik_namespace,
                                              untrusted_api)
from studiodoctor.model import EPHEMERAL_WRITE, MUTATING, READ_ONLY, Command, Reason, error, ok, skip, unreachable, warn

SSAR_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
REVIEWS_AT_ONCE = 4  # the backend's connection pool size: a few connections, each reused


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
    listing = Listing("pods", "", address=conn.address)
    try:
        info = get(ctx, "/version/")
        if not isinstance(info, dict):
            raise ValueError(f"a JSON {type(info).__name__}, not the version object")
    except Exception as exc:
        classify(exc, listing)
        if listing.status in ("unreachable", "timeout"):
            return unreachable("Kubernetes API", conn.address, listing.detail, timed_out=listing.status == "timeout",
                               commands=[Command(kubectl(ctx, "cluster-info", None), READ_ONLY)])
        if listing.status == "untrusted":
            return untrusted_api(ctx, listing)
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


# our own credentials' rights: no user of Studio sees them, so a failure here (the reviews not answered in
# time while the API answers our lists) is never the cause of a symptom, only listed beside it
@check(PERMISSIONS, title="Our credentials may read what the checks need", depends_on=(API,),
       permissions=("create selfsubjectaccessreviews",), safety=EPHEMERAL_WRITE, produces=())
def check_permissions(ctx):
    """Asks the API server (SelfSubjectAccessReview) whether our identity may list what the checks read.

    Not a plain read: each question is a POST that *creates* a SelfSubjectAccessReview, which the API
    server answers and never stores (safety class `ephemeral-write`; RBAC: create
    selfsubjectaccessreviews.authorization.k8s.io, granted to every authenticated user by default).

    Required: list pods, deployments (apps), events and ingresses (networking.k8s.io) in the namespace.
    Optional: ingress classes (cluster-wide), pod metrics (metrics.k8s.io) and pods in the Traefik
    namespace. A missing right is an `error` with the exact Role rule to grant: without it the other
    checks could only guess. Fix: bind a read-only Role with those rules to the identity we use.
    It produces no symptom: what our identity may read is the doctor's concern, not Studio's users', so a
    diagnosis lists its failure as unrelated and never names it."""
    conn = connection(ctx)
    needed = _needed_permissions(ctx)

    def review(item):
        resource, ns, _required = item
        group, name, cluster, _ = RESOURCES[resource]
        wide = cluster or ns == ALL_NAMESPACES
        attrs = {"verb": "list", "group": group, "resource": name, **({} if wide else {"namespace": ns})}
        try:
            return post(ctx, SSAR_PATH, {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                                         "spec": {"resourceAttributes": attrs}}), None
        except Exception as exc:  # noqa: BLE001 - classified below, in the order asked
            return None, exc

    # The first question alone (an API that does not answer costs one request), then the rest at most
    # REVIEWS_AT_ONCE at a time: each is a round trip, and nine in a row were this layer's slowest check.
    answers = [review(needed[0])] if needed else []
    if answers and answers[0][1] is None and len(needed) > 1:
        with ThreadPoolExecutor(max_workers=REVIEWS_AT_ONCE) as pool:
            answers += list(pool.map(review, needed[1:]))
    allowed, denied = [], []
    for (resource, ns, required), (answer, exc) in zip(needed, answers):
        group, name, cluster, _ = RESOURCES[resource]
        label = f"list {name}{'.' + group if group else ''}" + (
            " in all namespaces" if ns == ALL_NAMESPACES else "" if cluster else f" in {ns}")
        if exc is None:
            status = (answer.get("status") if isinstance(answer, dict) else None) or {}
        else:
            listing = classify(exc, Listing(resource, ns, address=conn.address))
            if listing.status in ("unreachable", "timeout"):
                return unreachable("Kubernetes API", conn.address, listing.detail,
                                   timed_out=listing.status == "timeout")
            if listing.status == "untrusted":
                return untrusted_api(ctx, listing)
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
