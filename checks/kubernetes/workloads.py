"""kubernetes.deployments: each Deployment of Studio's namespace, desired vs available replicas, rollouts stuck."""

from __future__ import annotations

from checks.kubernetes.common import (API, DEPLOYMENTS, PODS_CRASHING, PODS_OOMKILLED, PODS_PENDING, PODS_READY,
                                      READINESS_EXPLAINERS, SDK_IMPORTS, check)  # noqa: F401
from studiodoctor.backends.kube_pods import deployment_roles
from studiodoctor.backends.kubernetes import kubectl, list_objects, listing_problem, namespace
from studiodoctor.model import MUTATING, READ_ONLY, Command, fail, ok, warn


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
