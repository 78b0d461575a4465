"""Kubernetes: SelfSubjectReview (``kubectl auth whoami``) and one SelfSubjectAccessReview per grant of
``studiodoctor.preflight.rbac.needed_grants`` (both POSTs the API server answers and never stores); a
missing grant is answered with the Role to apply (``role_yaml``)."""

from __future__ import annotations

from ..model import Reason, error
from ..registry import default_registry
from .common import pf, entry, verdict, first_line


@pf("kubernetes.preflight", title="Kubernetes: who we are (SelfSubjectReview) and what the checks may list")
def preflight_kubernetes(ctx):
    """SelfSubjectReview, then a SelfSubjectAccessReview for every grant the RBAC manifest holds."""
    from . import rbac
    from ..backends import kubernetes as kb

    conn = kb.connection(ctx)
    if conn.status == "unconfigured":
        from ..model import skip

        return skip(f"kubernetes: {conn.detail}", reason=Reason.NOT_CONFIGURED)
    if conn.status != "ok":
        return error(f"kubernetes: {conn.detail}", reason=Reason.UNEXPECTED)
    ns, tns = kb.namespace(ctx), kb.traefik_namespace(ctx)
    needed = rbac.needed_grants(default_registry.load_plugins(), ns, tns)
    ApiException = kb.ApiError

    def post(kind: str, body: dict) -> dict:
        path = ("/apis/authentication.k8s.io/v1/selfsubjectreviews" if kind == "SelfSubjectReview"
                else "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
        answer = kb.post(ctx, path, body)
        if not isinstance(answer, dict):
            raise ValueError(f"{kind} answered {type(answer).__name__}, not an object")
        return answer

    try:
        review = post("SelfSubjectReview", {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        status = review.get("status")
        info = status.get("userInfo") if isinstance(status, dict) else None
        info = info if isinstance(info, dict) else {}
        identity = f"{info.get('username', '?')} (SelfSubjectReview; groups {', '.join(map(str, info.get('groups') or [])) or '-'})"
    except ApiException as exc:
        info, identity = {}, f"unknown (SelfSubjectReview answered HTTP {exc.status}: needs Kubernetes >= 1.28)"
    except Exception as exc:  # noqa: BLE001 - network, or an answer that is not JSON
        return error(f"kubernetes: no usable answer from {conn.address}: {first_line(exc)}", reason=Reason.UNEXPECTED)
    entries, missing = [], []
    for grant, ids in sorted(needed.items()):
        resource, _, subresource = grant.resource.partition("/")
        attrs = {"verb": grant.verb, "group": grant.group, "resource": resource,
                 **({"subresource": subresource} if subresource else {}), **({"name": grant.name} if grant.name else {})}
        if grant.scope:
            attrs["namespace"] = grant.scope
        label = f"{grant.verb} {grant.resource}{'.' + grant.group if grant.group else ''}" + (
            f" {grant.name}" if grant.name else "") + (f" in {grant.scope}" if grant.scope else " (cluster)")
        try:
            answer = post("SelfSubjectAccessReview", {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                           "spec": {"resourceAttributes": attrs}})
            status = answer.get("status")
            allowed = isinstance(status, dict) and status.get("allowed") is True
            entries.append(entry(label, ids, allowed, "SelfSubjectAccessReview",
                                  optional=grant.group == "metrics.k8s.io" or grant.resource == "ingressclasses"
                                  or _proxy_optional(ctx, grant)))
            if not allowed:
                missing.append(grant)
        except ApiException as exc:
            entries.append(entry(label, ids, None, "SelfSubjectAccessReview",
                                  detail=f"HTTP {exc.status} asking SelfSubjectAccessReview"))
        except Exception as exc:  # noqa: BLE001
            return error(f"kubernetes: no answer from {conn.address}: {first_line(exc)}", reason=Reason.UNEXPECTED)
    lines = [role_yaml(missing, info.get("username"))] if missing else []
    return verdict("kubernetes", identity, entries, lines, evidence={"api": conn.address})


def _proxy_optional(ctx, grant) -> bool:
    """The API server's proxy is the way in only where the profile gives no address: pods/proxy is needed
    without app.url or nginx.url; services/proxy only where an in-cluster doctor is asked (list services
    where its Service is found by label); pods/portforward only where no doctor answers."""
    if grant.resource == "pods/proxy":
        return all(ctx.profile.value(k) for k in ("app.url", "nginx.url"))
    if grant.resource == "services" and grant.verb == "list":   # the doctor's Service found by label
        return bool(((ctx.profile.value("kubernetes.doctor") or {}).get("service") or "").strip())
    # the in-cluster doctor's proxy and the port-forward are each one way in, the other may serve
    return grant.resource in ("services/proxy", "pods/portforward")


def role_yaml(missing, username: str | None) -> str:
    """A Role (per namespace) or ClusterRole with just the missing rules, bound to our identity."""
    import yaml

    from . import rbac

    user = username or "<our identity>"
    if user.startswith("system:serviceaccount:") and user.count(":") == 3:
        _, _, sa_ns, sa_name = user.split(":")
        subject = {"kind": "ServiceAccount", "name": sa_name, "namespace": sa_ns}
    else:
        subject = {"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}
    docs = []
    for scope in sorted({g.scope for g in missing}):
        kind = "Role" if scope else "ClusterRole"
        meta = {"name": f"{rbac.NAME}-read" + ("" if scope else "-cluster"), **({"namespace": scope} if scope else {})}
        docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta,
                     "rules": rbac._rules([g for g in missing if g.scope == scope])})
        docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind + "Binding", "metadata": dict(meta),
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": meta["name"]},
                     "subjects": [subject]})
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)
