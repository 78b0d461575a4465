"""kubernetes.memory: containers' memory use (metrics.k8s.io) against their limits."""

from __future__ import annotations

from checks.kubernetes.common import API, MEMORY, SDK_IMPORTS, check  # noqa: F401
from studiodoctor.backends.kube_pods import active, limits_of, mib, no_pods, parse_quantity, pod_analysis
from studiodoctor.backends.kubernetes import kube_setting, kubectl, list_objects, listing_problem, namespace
from studiodoctor.model import READ_ONLY, Command, Reason, error, ok, skip, warn


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
    limits = {(p.get("metadata") or {}).get("name"): limits_of(p) for p in pods.items if active(p)}
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
