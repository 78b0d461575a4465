"""Least-privilege RBAC for running studiodoctor in the cluster, generated from the checks' own
declared ``permissions`` (one source of truth with the ``kubernetes.permissions`` check, which asks the
API server about the same resources, ``studiodoctor.backends.kubernetes.RESOURCES``).

In a module that talks to the Kubernetes API (its ``SDK_IMPORTS`` names ``studiodoctor.backends.kubernetes``),
a permission written ``<verb> <resource>[.<group>][ in the Traefik namespace| in all namespaces]`` (verb in lower case: get, list,
watch) is a Kubernetes API permission. It applies to the check's namespace: Studio's
(``kubernetes.namespace``), or Traefik's for the traefik layer and for "in the Traefik namespace";
cluster-scoped resources (as ``RESOURCES`` marks them) go to a ClusterRole. What Kubernetes already
grants every authenticated identity (``DEFAULT_GRANTED``) is not repeated. Anything else a kube check
declares in that form is an error, so a new declaration cannot be forgotten here.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

NAME = "studiodoctor"
VERBS = ("get", "list", "watch")
_PERM = re.compile(r"^(?P<verb>[a-z]+) (?P<resource>[a-z]+)(?:\.(?P<group>[a-z0-9.-]+))?(?P<rest> .*)?$")
# granted to every authenticated identity by the default ClusterRoles system:public-info-viewer
# (GET /version/) and system:basic-user (selfsubjectaccessreviews): nothing to add
DEFAULT_GRANTED = {"GET /version/", "create selfsubjectaccessreviews"}


class RbacError(Exception):
    """A declared permission the generator cannot turn into a rule."""


@dataclass(frozen=True, order=True)
class Grant:
    scope: str      # a namespace, or "" for cluster-scoped
    group: str
    resource: str
    verb: str


def _uses_kubernetes(chk) -> bool:
    return "studiodoctor.backends.kubernetes" in getattr(sys.modules.get(chk.func.__module__), "SDK_IMPORTS", ())


def needed_grants(registry, namespace: str, traefik_namespace: str) -> dict[Grant, list[str]]:
    """Every grant the checks declare, with the ids of the checks that need it."""
    from studiodoctor.backends.kubernetes import RESOURCES

    cluster = {(g, r) for g, r, is_cluster, _ in RESOURCES.values() if is_cluster}
    known = {(g, r) for g, r, _, _ in RESOURCES.values()}
    grants: dict[Grant, list[str]] = {}
    for chk in registry.checks.values():
        if not _uses_kubernetes(chk):
            continue
        for perm in chk.permissions:
            m = _PERM.match(perm)
            if perm in DEFAULT_GRANTED or not m or m["verb"] not in (*VERBS, "create"):
                continue  # not a Kubernetes API permission (Traefik's HTTP API, a TLS handshake)
            key = (m["group"] or "", m["resource"])
            if m["verb"] not in VERBS or key not in known:
                raise RbacError(f"{chk.id}: cannot grant {perm!r} (read verbs on backends.kubernetes.RESOURCES only)")
            if key in cluster or "all namespaces" in (m["rest"] or "").lower():
                scope = ""
            elif chk.layer == "traefik" or "traefik namespace" in (m["rest"] or "").lower():
                scope = traefik_namespace
            else:
                scope = namespace
            grants.setdefault(Grant(scope, key[0], key[1], m["verb"]), []).append(chk.id)
    return grants


def _rules(grants) -> list[dict]:
    by_group: dict[tuple[str, tuple[str, ...]], set[str]] = {}
    for g in grants:
        verbs = tuple(sorted(v.verb for v in grants if (v.group, v.resource) == (g.group, g.resource)))
        by_group.setdefault((g.group, verbs), set()).add(g.resource)
    return [{"apiGroups": [group], "resources": sorted(res), "verbs": list(verbs)}
            for (group, verbs), res in sorted(by_group.items())]


def manifests(registry, namespace: str = "studio", traefik_namespace: str = "kube-system") -> list[dict]:
    """ServiceAccount, Roles/RoleBindings per namespace and a ClusterRole/Binding, as dicts."""
    grants = needed_grants(registry, namespace, traefik_namespace)
    labels = {"app.kubernetes.io/name": NAME}
    subject = [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]
    docs: list[dict] = [{"apiVersion": "v1", "kind": "ServiceAccount",
                         "metadata": {"name": NAME, "namespace": namespace, "labels": labels},
                         "automountServiceAccountToken": True}]
    for scope in sorted({g.scope for g in grants}, key=lambda s: (s == "", s != namespace, s)):
        mine = [g for g in grants if g.scope == scope]
        users = sorted({cid for g in mine for cid in grants[g]})
        note = {"studiodoctor/needed-by": ", ".join(users)}
        if scope:
            meta = {"name": f"{NAME}-read", "namespace": scope, "labels": labels, "annotations": note}
            docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta,
                         "rules": _rules(mine)})
            docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                         "metadata": {"name": f"{NAME}-read", "namespace": scope, "labels": labels},
                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{NAME}-read"},
                         "subjects": subject})
        else:
            meta = {"name": f"{NAME}-read-cluster", "labels": labels, "annotations": note}
            docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta,
                         "rules": _rules(mine)})
            docs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                         "metadata": {"name": f"{NAME}-read-cluster", "labels": labels},
                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                     "name": f"{NAME}-read-cluster"},
                         "subjects": subject})
    return docs


def granted(docs: list[dict]) -> set[Grant]:
    """What a set of RBAC manifests grants (Roles by namespace, ClusterRoles cluster-wide)."""
    out = set()
    for doc in docs:
        if doc.get("kind") not in ("Role", "ClusterRole"):
            continue
        scope = doc["metadata"].get("namespace", "") if doc["kind"] == "Role" else ""
        for rule in doc.get("rules", []):
            for group in rule.get("apiGroups", []):
                for res in rule.get("resources", []):
                    for verb in rule.get("verbs", []):
                        out.add(Grant(scope, group, res, verb))
    return out


HEADER = ("# GENERATED by deploy/generate_rbac.py from the checks' declared permissions: do not edit.\n"
          "# Regenerate after changing a check's permissions; tests/automation/test_deploy.py fails when stale.\n")


def render_yaml(docs: list[dict]) -> str:
    import yaml

    return HEADER + "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)
