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

The API server's proxy subresources (``SUBRESOURCES``) are Kubernetes permissions wherever they are
declared (a layer that reaches pods through the API server names no Kubernetes SDK): ``get pods/proxy``
(Studio's namespace), ``get services/proxy named NAME`` (that one Service: ``resourceNames``), and
``create pods/portforward`` (the one write verb granted: the WebSocket that ``kubectl port-forward`` and
``studiodoctor.tunnels`` open; a transport, what goes through it stays read-only). Parts of the doctor that
are no check declare theirs in ``EXTRA_PERMISSIONS``.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

NAME = "studiodoctor"
VERBS = ("get", "list", "watch")
_PERM = re.compile(r"^(?P<verb>[a-z]+) (?P<resource>[a-z]+(?:/[a-z]+)?)(?:\.(?P<group>[a-z0-9.-]+))?(?P<rest> .*)?$")
_NAMED = re.compile(r"\bnamed (?P<name>[a-z0-9][a-z0-9.-]*)")
# the proxy subresources: (group, resource) -> what the doctor reaches through them
SUBRESOURCES = {("", "pods/proxy"): "a frontend pod's nginx and gunicorn, one pod at a time",
                ("", "services/proxy"): "the in-cluster doctor's Service",
                ("", "pods/portforward"): "Redis, the Cloud SQL proxy and Traefik's API, when no in-cluster doctor is"}
# the only verb other than a read that may be granted, and on what: opening a port-forward
CREATE_ALLOWED = {("", "pods/portforward")}
# Permissions of parts that are no check: permission -> who needs it. The Service is deploy/'s (serve.yaml).
EXTRA_PERMISSIONS = {f"get services/proxy named {NAME}": ("vantage: the in-cluster doctor, asked through the API "
                                                          "server (kubernetes.doctor.service)",),
                     "list services": ("vantage: the in-cluster doctor's Service, found by its label (without "
                                       "kubernetes.doctor.service)",),
                     "create pods/portforward": ("tunnels: a port-forward to Redis's or the Cloud SQL proxy's pod "
                                                 "(no in-cluster doctor)",),
                     "create pods/portforward in the Traefik namespace": ("tunnels: a port-forward to Traefik's API "
                                                                          "(no in-cluster doctor)",)}
# granted to every authenticated identity by the default ClusterRoles system:public-info-viewer
# (GET /version/) and system:basic-user (selfsubjectaccessreviews): nothing to add
DEFAULT_GRANTED = {"GET /version/", "create selfsubjectaccessreviews"}


class RbacError(Exception):
    """A declared permission the generator cannot turn into a rule."""


@dataclass(frozen=True, order=True)
class Grant:
    scope: str      # a namespace, or "" for cluster-scoped
    group: str
    resource: str   # a resource, or resource/subresource (pods/proxy)
    verb: str
    name: str = ""  # one object only (resourceNames), or "" for all of them


def _uses_kubernetes(chk) -> bool:
    return "studiodoctor.backends.kubernetes" in getattr(sys.modules.get(chk.func.__module__), "SDK_IMPORTS", ())


def needed_grants(registry, namespace: str, traefik_namespace: str) -> dict[Grant, list[str]]:
    """Every grant the checks declare, with the ids of the checks that need it."""
    from studiodoctor.backends.kubernetes import RESOURCES

    cluster = {(g, r) for g, r, is_cluster, _ in RESOURCES.values() if is_cluster}
    known = {(g, r) for g, r, _, _ in RESOURCES.values()} | set(SUBRESOURCES)
    grants: dict[Grant, list[str]] = {}
    declared = [(chk.id, chk.layer, perm, _uses_kubernetes(chk)) for chk in registry.checks.values()
                for perm in chk.permissions]
    declared += [(who, "", perm, True) for perm, whom in EXTRA_PERMISSIONS.items() for who in whom]
    for who, layer, perm, kube in declared:
        m = _PERM.match(perm)
        if perm in DEFAULT_GRANTED or not m or m["verb"] not in (*VERBS, "create"):
            continue  # not a Kubernetes API permission (Traefik's HTTP API, a TLS handshake)
        key = (m["group"] or "", m["resource"])
        if not kube and key not in SUBRESOURCES:
            continue
        if (m["verb"] not in VERBS and key not in CREATE_ALLOWED) or key not in known:
            raise RbacError(f"{who}: cannot grant {perm!r} (read verbs on backends.kubernetes.RESOURCES only, "
                            "and create on pods/portforward)")
        rest = (m["rest"] or "").lower()
        if key in cluster or "all namespaces" in rest:
            scope = ""
        elif layer == "traefik" or "traefik namespace" in rest:
            scope = traefik_namespace
        else:
            scope = namespace
        named = _NAMED.search(rest)
        grant = Grant(scope, key[0], key[1], m["verb"], named["name"] if named else "")
        grants.setdefault(grant, []).append(who)
    return grants


def _rules(grants) -> list[dict]:
    by_group: dict[tuple[str, str, tuple[str, ...]], set[str]] = {}
    for g in grants:
        verbs = tuple(sorted(v.verb for v in grants if (v.group, v.resource, v.name) == (g.group, g.resource, g.name)))
        by_group.setdefault((g.group, g.name, verbs), set()).add(g.resource)
    return [{"apiGroups": [group], "resources": sorted(res), **({"resourceNames": [name]} if name else {}),
             "verbs": list(verbs)}
            for (group, name, verbs), res in sorted(by_group.items())]


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
                        for name in rule.get("resourceNames") or [""]:
                            out.add(Grant(scope, group, res, verb, name))
    return out


HEADER = ("# GENERATED by deploy/generate_rbac.py from the checks' declared permissions: do not edit.\n"
          "# Regenerate after changing a check's permissions; tests/automation/test_deploy.py fails when stale.\n")


def render_yaml(docs: list[dict]) -> str:
    import yaml

    return HEADER + "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)
