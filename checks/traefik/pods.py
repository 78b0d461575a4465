"""traefik.pods: Traefik's pods not OOMKilled, not restarting, memory below the limit (Kubernetes API)."""

from __future__ import annotations

from checks.kubernetes.common import API as KUBE_API
from studiodoctor.backends.kube_pods import ago_text, analyse_pods, limits_of as _limits, mib, parse_quantity
from studiodoctor.backends.kubernetes import kube_setting, kubectl, list_objects, traefik_namespace
from studiodoctor.model import READ_ONLY, Command, Reason, fail, ok, skip, warn
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import PODS, _applicable


@check(PODS, title="Traefik pods: not OOMKilled, not restarting, memory below limit", depends_on=(KUBE_API,),
       permissions=("list pods in the Traefik namespace", "list pods.metrics.k8s.io"))
@_applicable
def check_pods(ctx):
    """Traefik's own pods, found by what they run (image, ``app.kubernetes.io/name``) in
    ``kubernetes.traefik_namespace`` when set, else in every namespace: Ready, OOMKilled, restarts in
    the restart window, memory vs limit.

    The multiplexing Traefik served every Studio branch with a 1-2Gi memory limit: when it runs out
    of memory it is killed and every hostname answers 502 until it restarts. Skipped when no Traefik
    pod exists there (the ingress controller may be ingress-nginx: see kubernetes.ingress_controller)."""
    from checks.kubernetes.ingress import TRAEFIK, controller_pods, pods_not_found

    pods, looked, failed = controller_pods(ctx, TRAEFIK)
    if not pods:
        if len(failed) == 1 and not looked:
            return failed[0]   # the one place we were told to look could not be read
        return pods_not_found(TRAEFIK, looked, failed) or skip(
            f"no pod runs Traefik in {', '.join(looked)}: the ingress controller may not be Traefik "
            "(kubernetes.ingress_controller says which; kubernetes.traefik_namespace sets where to look)",
            reason=Reason.NOT_APPLICABLE)
    tns = (pods[0].get("metadata") or {}).get("namespace") or traefik_namespace(ctx)
    from datetime import datetime, timezone

    window = float(kube_setting(ctx, "restart_window_minutes", 60)) * 60
    a = analyse_pods(pods, datetime.now(timezone.utc), restart_window=window)
    usage, metrics_note = [], ""
    metrics = list_objects(ctx, "podmetrics", tns)
    if metrics.ok:
        limits = {(p.get("metadata") or {}).get("name"): _limits(p) for p in pods}
        for m in metrics.items:
            name = (m.get("metadata") or {}).get("name")
            if name not in limits:
                continue
            for c in m.get("containers") or []:
                used = parse_quantity((c.get("usage") or {}).get("memory"))
                limit = limits[name].get(c.get("name"))
                if used is not None:
                    usage.append({"pod": name, "container": c.get("name"), "used": mib(used), "limit": mib(limit),
                                  "percent": round(100 * used / limit, 1) if limit else None})
    else:
        metrics_note = ("no metrics API" if metrics.status == "notfound"
                        else f"metrics not readable ({metrics.status})")
    ev = {"namespace": tns, "pods": {w: f"{v['ready']}/{v['pods']} ready" for w, v in a["workloads"].items()},
          "oomkilled": a["oomkilled"], "restarts": a["restarts"], "crashing": a["crashing"],
          "not_ready": a["not_ready"], "memory": usage}
    if metrics_note:
        ev["metrics"] = metrics_note
    first = (pods[0].get("metadata") or {}).get("name", "?")
    cmds = [Command(kubectl(ctx, f"describe pod {first}", tns), READ_ONLY),
            Command(kubectl(ctx, f"logs {first} --previous --tail=100", tns), READ_ONLY, "the killed instance"),
            Command(kubectl(ctx, f"top pod {first} --containers", tns), READ_ONLY)]
    recent_oom = [o for o in a["oomkilled"] if o["age_s"] is not None and o["age_s"] <= window]
    ready = sum(v["ready"] for v in a["workloads"].values())
    problems = []
    if not ready:
        problems.append(f"no Traefik pod Ready in {tns}")
    if a["crashing"]:
        problems.append("; ".join(f"{c['pod']}: {c['reason']}" for c in a["crashing"][:3]))
    if recent_oom:
        problems.append("; ".join(f"{o['pod']} OOMKilled {ago_text(o['age_s'])} (limit {o['memory_limit']}, "
                                  f"{o['restarts']} restarts)" for o in recent_oom[:3]))
    if problems:
        return fail("Traefik: " + "; ".join(problems), evidence=ev, commands=cmds,
                    hint="While Traefik is killed or not Ready every hostname answers 502 at the edge. "
                         "Raise its memory limit or reduce its load (access logs, metrics cardinality).")
    threshold = float(kube_setting(ctx, "memory_warn_percent", 90))
    high = [u for u in usage if u["percent"] is not None and u["percent"] >= threshold]
    warns = []
    if a["restarts"]:
        warns.append("; ".join(f"{r['pod']} restarted {ago_text(r['age_s'])} ({r['last_reason']})"
                               for r in a["restarts"][:3]))
    if a["oomkilled"]:
        warns.append("; ".join(f"{o['pod']} OOMKilled earlier ({o['finished_at']})" for o in a["oomkilled"][:2]))
    if high:
        warns.append("; ".join(f"{u['pod']} memory {u['used']} of {u['limit']} ({u['percent']}%)" for u in high[:3]))
    if a["not_ready"]:
        warns.append(f"{len(a['not_ready'])} Traefik pod(s) not Ready")
    if warns:
        return warn("Traefik: " + "; ".join(warns), evidence=ev, commands=cmds)
    mem = f", memory {usage[0]['used']} of {usage[0]['limit']}" if usage else (f" ({metrics_note})" if metrics_note else "")
    return ok(f"{len(pods)} Traefik pod(s) Ready, no restart in the last {window / 60:g} min{mem}", evidence=ev)
