"""kubernetes.events: the Warning events of Studio's namespace in the last minutes, grouped by reason."""

from __future__ import annotations

from datetime import datetime, timezone

from checks.kubernetes.common import API, EVENTS, SDK_IMPORTS, check  # noqa: F401
from studiodoctor.backends.kube_pods import parse_time
from studiodoctor.backends.kubernetes import kube_setting, kubectl, list_objects, listing_problem, namespace
from studiodoctor.model import READ_ONLY, Command, ok, warn


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
