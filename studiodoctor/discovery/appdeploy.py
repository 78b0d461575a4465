"""The app container of Studio's frontend Deployment, read through the kubernetes layer's client (one
shared list call per run). Used by the layers that compare what runs with what a SaaS knows: sentry
(the image tag vs the release) and email (the Postmark key is wired into the container's env).

Which Deployment: ``<layer>.deployment``, else ``kubernetes.app_deployment``, else the one whose pods run
gunicorn (``backends.kube_pods.deployment_roles``: discovered, never guessed from a name); which container:
``<layer>.container``, else the discovered gunicorn container, else ``app``, else the first."""

from __future__ import annotations

from ..model import Reason, error, skip


def app_container(ctx):
    """(deployment name, container dict) or the Result to return when it cannot tell."""
    from studiodoctor.backends import kubernetes as kc
    from studiodoctor.backends.kube_pods import deployment_roles

    conn = kc.connection(ctx)
    if conn.status == "unconfigured":
        return skip(f"Kubernetes is not configured ({conn.detail}): cannot read the app's Deployment",
                    reason=Reason.NOT_CONFIGURED)
    ns = kc.namespace(ctx)
    listing = kc.list_objects(ctx, "deployments", ns)
    if not listing.ok:
        res = kc.listing_problem(ctx, listing)
        res.summary = f"cannot read the app's Deployment: {res.summary}"
        return res
    app = deployment_roles(listing.items).get("app") or {}
    name = ctx.setting("deployment", "") or ctx.section("kubernetes").get("app_deployment") or app.get("deployment")
    dep = next((d for d in listing.items if (d.get("metadata") or {}).get("name") == name), None) if name else None
    if dep is None:
        names = [(d.get("metadata") or {}).get("name") for d in listing.items]
        what = f"deployment {name} not found" if name else "no Deployment runs gunicorn"
        return error(f"{what} in namespace {ns} (have: {', '.join(map(str, names))[:150]}); "
                     f"set {ctx.check.layer}.deployment or kubernetes.app_deployment",
                     evidence={"namespace": ns, "deployments": names})
    containers = (((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    discovered = app.get("container") if app.get("deployment") == name else None
    wanted = ctx.setting("container", "") or discovered or "app"
    c = next((c for c in containers if c.get("name") == wanted), containers[0] if containers else None)
    if not isinstance(c, dict):
        return error(f"deployment {name} has no container", evidence={"deployment": name})
    return name, c


def image_tag(image: str) -> str:
    """``gcr.io/p/studio-app:abc123@sha256:...`` -> ``abc123`` (``latest`` when untagged)."""
    image = image.split("@", 1)[0]
    last = image.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"
