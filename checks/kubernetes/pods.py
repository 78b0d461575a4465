"""The pods of Studio's namespace, from ONE list per run analysed once (studiodoctor.backends.kube_pods):
Ready, crash-looping, OOMKilled, restarted, Pending."""

from __future__ import annotations

from checks.kubernetes.common import (API, PODS_CRASHING, PODS_OOMKILLED, PODS_PENDING, PODS_READY, PODS_RESTARTS,
                                      READINESS_EXPLAINERS, SDK_IMPORTS, check)  # noqa: F401
from studiodoctor.backends.kube_pods import CRASH_REASONS, ago_text, names, no_pods, pod_analysis, pod_commands
from studiodoctor.backends.kubernetes import kube_setting, kubectl, listing_problem, namespace
from studiodoctor.model import READ_ONLY, Command, fail, ok, warn


@check(PODS_READY, title="Pods are Ready", depends_on=(API,), permissions=("list pods",),
       explained_by=(PODS_CRASHING, PODS_OOMKILLED, *READINESS_EXPLAINERS), smoke=True)
def check_pods_ready(ctx):
    """Running pods whose Ready condition is False, grouped by workload.

    The frontend's readiness probe is GET /healthz on 8081 (straight to gunicorn, touching the
    database): a pod that is Running but not Ready gets no traffic. A workload with no Ready pod
    is a `fail` (its Service has no endpoints: the ingress answers 503). A pod whose running container
    keeps failing its readiness probe (not Ready although the probe has had its whole failure budget,
    initialDelaySeconds + periodSeconds x failureThreshold, since the container started) is a `fail` too,
    even one pod of many: broken now, at any age. Other pods not Ready (still starting, terminating) are
    a `warn`. Pending pods are reported by kubernetes.pods_pending, crash loops by kubernetes.pods_crashing.
    Each not-Ready pod's evidence carries its HTTP readiness probe (path, port, timeoutSeconds): an app slower
    than that timeout explains the pods not Ready (the rule app-slower-than-readiness-probe), even when the
    app itself only warns."""
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
                    commands=pod_commands(ctx, first, container),
                    hint="A workload without a Ready pod gets no traffic. For the frontend, readiness is "
                         "GET /healthz on 8081: check the app and its database.")
    failing = [p for p in a["not_ready"] if p.get("probe_failing")]
    if failing:
        first = failing[0]
        per = "; ".join(f"{w} {workloads[w]}" for w in dict.fromkeys(p["workload"] for p in failing))
        return fail(f"readiness probe failing on {len(failing)} running pod(s): {names(failing)} ({per})",
                    evidence=ev, commands=pod_commands(ctx, first["pod"], first["probe_failing"][0]),
                    hint="The container runs but its readiness probe keeps failing: it gets no traffic, and "
                         "requests it had in flight failed. For the frontend the probe is GET /healthz on 8081: "
                         "read the pod's events (Unhealthy) and the container's logs; check its database.")
    if a["not_ready"]:
        return warn(f"{len(a['not_ready'])} pod(s) not Ready: {names(a['not_ready'])}", evidence=ev,
                    commands=pod_commands(ctx, first))
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
    summary = "; ".join(f"{r} in {names(v)} ({', '.join(sorted({c['container'] for c in v}))})"
                        for r, v in by_reason.items())
    hint = " ".join(f"{r}: {CRASH_REASONS[r]}." for r in by_reason)
    return fail(summary, evidence={"containers": crashing[:20], "count": len(crashing)}, hint=hint,
                commands=pod_commands(ctx, first["pod"], first["container"],
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
    cmds = pod_commands(ctx, first["pod"], first["container"], previous=True) + [
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
                commands=pod_commands(ctx, r[0]["pod"], r[0]["container"], previous=True))


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
    cmds = pod_commands(ctx, first["pod"]) + [
        Command(kubectl(ctx, "get events --field-selector reason=FailedScheduling"), READ_ONLY),
        Command(kubectl(ctx, "describe nodes", None), READ_ONLY, "allocatable vs requested")]
    return fail(f"{len(pending)} pod(s) Pending: {summary}"[:600], evidence=ev, commands=cmds,
                hint=("The scheduler cannot place the pod: " if unsched else "The pod does not start: ")
                + "see its events; free or add node capacity, or fix affinity/taints/volumes.")
