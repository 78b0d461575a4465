"""What the layers read from Studio's pods and Deployments, as pure functions over the raw JSON the
backend lists (``studiodoctor.backends.kubernetes``): one pass over a pod list gives every pod check
its facts (``analyse_pods``, timed by ``benchmarks/k8s_scan.py``); which Deployment runs what
(``deployment_roles``); Kubernetes times and quantities."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from studiodoctor.backends.kubernetes import Listing, kube_setting, kubectl, list_objects, namespace
from studiodoctor.model import READ_ONLY, Command, Reason, error

# Waiting reasons that mean "this container cannot run" (a Pending pod with these is not a scheduling issue).
CRASH_REASONS = {
    "CrashLoopBackOff": "the container keeps exiting; read its previous logs",
    "ImagePullBackOff": "the image cannot be pulled: wrong tag, deleted image or registry credentials",
    "ErrImagePull": "the image cannot be pulled: wrong tag, deleted image or registry credentials",
    "InvalidImageName": "the image reference is malformed",
    "CreateContainerConfigError": "a referenced Secret or ConfigMap (key) is missing",
    "CreateContainerError": "the runtime could not create the container (command, mounts)",
    "RunContainerError": "the runtime could not start the container",
}


# -- time and quantities ----------------------------------------------------------------------------

def parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def ago_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 172800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60, "k": 1e3, "K": 1e3,
           "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "m": 1e-3}


def parse_quantity(q: Any) -> float | None:
    """Kubernetes quantity -> number ("2Gi" -> 2147483648, "500m" -> 0.5); None when unreadable."""
    if q is None:
        return None
    if isinstance(q, (int, float)):
        return float(q)
    text = str(q).strip()
    try:
        for suffix in ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "K", "M", "G", "T", "P", "E", "m"):
            if text.endswith(suffix):
                return float(text[: -len(suffix)]) * _SUFFIX[suffix]
        return float(text)
    except ValueError:
        return None


def mib(value: float | None) -> str:
    if value is None:
        return "?"
    if value >= 2**30 and value % 2**30 == 0:
        return f"{value / 2**30:.0f}Gi"
    return f"{value / 2**20:.0f}Mi"


# -- pod analysis (pure functions: the benchmark times these) -----------------------------------------

def workload_of(p: dict) -> str:
    meta = p.get("metadata") or {}
    owners = meta.get("ownerReferences") or []
    labels = meta.get("labels") or {}
    if owners:
        name = owners[0].get("name", "")
        h = labels.get("pod-template-hash")
        if owners[0].get("kind") == "ReplicaSet" and h and name.endswith("-" + h):
            return name[: -len(h) - 1]
        return name
    return meta.get("name", "?")


def statuses(p: dict) -> list[dict]:
    st = p.get("status") or {}
    return list(st.get("initContainerStatuses") or []) + list(st.get("containerStatuses") or [])


def limits_of(p: dict) -> dict[str, float | None]:
    out = {}
    for c in (p.get("spec") or {}).get("containers") or []:
        out[c.get("name")] = parse_quantity(((c.get("resources") or {}).get("limits") or {}).get("memory"))
    return out


def condition(p: dict, ctype: str) -> dict:
    for cond in (p.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return cond
    return {}


def active(p: dict) -> bool:
    meta = p.get("metadata") or {}
    phase = (p.get("status") or {}).get("phase")
    return not meta.get("deletionTimestamp") and phase not in ("Succeeded",)


def readiness_failed(pod: dict, cs: dict, now: datetime) -> bool:
    """A running container that is not Ready although its readiness probe has had its whole failure
    budget since the container started (initialDelaySeconds + periodSeconds x failureThreshold, the
    kubelet's defaults 0 + 10 x 3): the probe is failing now, not still warming up. Not an age threshold
    of ours: the probe's own definition of failing. Containers without a readiness probe never count."""
    spec = next((c for c in (pod.get("spec") or {}).get("containers", []) if c.get("name") == cs.get("name")), {})
    probe = spec.get("readinessProbe")
    started = parse_time(((cs.get("state") or {}).get("running") or {}).get("startedAt"))
    if not probe or started is None or cs.get("started") is False:
        return False
    budget = (float(probe.get("initialDelaySeconds") or 0)
              + float(probe.get("periodSeconds") or 10) * float(probe.get("failureThreshold") or 3))
    return (now - started).total_seconds() >= budget


def http_readiness(pod: dict, container: str) -> dict | None:
    """The httpGet readiness probe of ``container`` as the kubelet runs it: {"container", "path", "port",
    "timeout_s"} (a named port resolved through the container's ports; timeoutSeconds defaults to 1 s, as
    Kubernetes'), or None when the container has no such probe."""
    spec = next((c for c in (pod.get("spec") or {}).get("containers") or [] if c.get("name") == container), {})
    get = (spec.get("readinessProbe") or {}).get("httpGet")
    if not isinstance(get, dict):
        return None
    port = get.get("port")
    if isinstance(port, str) and not port.isdigit():
        port = next((p.get("containerPort") for p in spec.get("ports") or [] if p.get("name") == port), port)
    return {"container": container, "path": get.get("path") or "/", "port": port,
            "timeout_s": float(spec["readinessProbe"].get("timeoutSeconds") or 1)}


def analyse_pods(pods: list[dict], now: datetime, *, restart_window: float = 3600,
                 pending_grace: float = 300) -> dict:
    """Everything the pod checks report, from one pass over the pod list."""
    out: dict[str, Any] = {"total": 0, "workloads": {}, "not_ready": [], "crashing": [], "oomkilled": [],
                           "restarts": [], "pending": [], "pending_young": []}
    for p in pods:
        if not active(p):
            continue
        out["total"] += 1
        meta, st = p.get("metadata") or {}, p.get("status") or {}
        name, wl = meta.get("name", "?"), workload_of(p)
        phase = st.get("phase", "Unknown")
        ready = condition(p, "Ready").get("status") == "True"
        w = out["workloads"].setdefault(wl, {"pods": 0, "ready": 0})
        w["pods"] += 1
        w["ready"] += ready
        limits = limits_of(p)
        crash_here = False
        for cs in statuses(p):
            cname = cs.get("name", "?")
            state, last = cs.get("state") or {}, cs.get("lastState") or {}
            waiting = state.get("waiting") or {}
            term_last = last.get("terminated") or {}
            term_now = state.get("terminated") or {}
            restarts = int(cs.get("restartCount") or 0)
            if waiting.get("reason") in CRASH_REASONS:
                crash_here = True
                out["crashing"].append({
                    "pod": name, "workload": wl, "container": cname, "reason": waiting["reason"],
                    "message": (waiting.get("message") or "")[:300], "restarts": restarts, "image": cs.get("image"),
                    "last_exit_code": term_last.get("exitCode"), "last_reason": term_last.get("reason")})
            for term, which in ((term_now, "state"), (term_last, "lastState")):
                if term.get("reason") == "OOMKilled":
                    finished = parse_time(term.get("finishedAt"))
                    age = (now - finished).total_seconds() if finished else None
                    out["oomkilled"].append({
                        "pod": name, "workload": wl, "container": cname, "restarts": restarts,
                        "finished_at": term.get("finishedAt"), "age_s": age, "exit_code": term.get("exitCode"),
                        "memory_limit": mib(limits.get(cname)) if limits.get(cname) else "none"})
            finished = parse_time(term_last.get("finishedAt"))
            if restarts and finished and (now - finished).total_seconds() <= restart_window:
                out["restarts"].append({
                    "pod": name, "workload": wl, "container": cname, "restarts": restarts,
                    "last_reason": term_last.get("reason"), "last_exit_code": term_last.get("exitCode"),
                    "last_finished": term_last.get("finishedAt"),
                    "age_s": (now - finished).total_seconds()})
        if phase == "Pending" and not crash_here:
            sched = condition(p, "PodScheduled")
            created = parse_time(meta.get("creationTimestamp"))
            age = (now - created).total_seconds() if created else None
            entry = {"pod": name, "workload": wl, "age_s": age}
            if sched.get("status") == "False":
                entry.update(reason=sched.get("reason") or "Unschedulable", message=(sched.get("message") or "")[:400])
                out["pending"].append(entry)
            else:
                waits = sorted({(cs.get("state") or {}).get("waiting", {}).get("reason") or "waiting"
                                for cs in statuses(p)} or {"ContainerCreating"})
                entry.update(reason=", ".join(waits), message="scheduled but containers not started")
                (out["pending"] if age is None or age > pending_grace else out["pending_young"]).append(entry)
        elif phase not in ("Pending",) and not ready:
            reasons, probe_failing = [], []
            for cs in statuses(p):
                if cs.get("ready"):
                    continue
                waiting = (cs.get("state") or {}).get("waiting") or {}
                if waiting.get("reason"):
                    reasons.append(f"{cs.get('name')}: {waiting['reason']}")
                elif (cs.get("state") or {}).get("running"):
                    reasons.append(f"{cs.get('name')}: running, readiness probe failing")
                    if readiness_failed(p, cs, now):
                        probe_failing.append(cs.get("name"))
                elif (cs.get("state") or {}).get("terminated"):
                    reasons.append(f"{cs.get('name')}: terminated "
                                   f"({(cs['state']['terminated'].get('reason') or 'exit')})")
            if phase == "Failed":
                reasons.append(f"pod Failed: {st.get('reason') or ''} {st.get('message') or ''}".strip())
            unready = [cs.get("name") for cs in statuses(p) if not cs.get("ready")]
            probes = [r for r in (http_readiness(p, c) for c in unready) if r]
            out["not_ready"].append({"pod": name, "workload": wl, "phase": phase,
                                     "why": reasons or ["Ready condition False"], "probe_failing": probe_failing,
                                     "containers": unready, **({"readiness": probes} if probes else {})})
    return out


def pods_listing(ctx) -> Listing:
    return list_objects(ctx, "pods", namespace(ctx), label_selector=kube_setting(ctx, "app_selector", "") or None)


def pod_analysis(ctx):
    """(listing, analysis) shared by the pod checks of a run."""
    listing = pods_listing(ctx)
    if not listing.ok:
        return listing, None

    def build():
        return analyse_pods(listing.items, datetime.now(timezone.utc),
                            restart_window=float(kube_setting(ctx, "restart_window_minutes", 60)) * 60,
                            pending_grace=float(kube_setting(ctx, "pending_grace_seconds", 300)))

    return listing, ctx.shared.get(f"kubernetes:pod-analysis:{namespace(ctx)}", build)


def _runs(c: dict) -> str:
    return " ".join(str(x) for x in [c.get("image") or ""] + list(c.get("command") or []) + list(c.get("args") or []))


def deployment_roles(deployments: list[dict]) -> dict[str, dict]:
    """Which Deployment is Studio's app, its workers, its Cloud SQL proxy, told by what their pods run
    (gunicorn; celery worker; cloud-sql-proxy), never by name: {role: {deployment, selector, container, ...}}
    (the app's nginx container, the workers' command line).
    The runbook binds its commands to these names (studiodoctor.diagnosis.symptoms.template_values)."""
    roles: dict[str, dict] = {}
    for d in deployments:
        meta, spec = d.get("metadata") or {}, d.get("spec") or {}
        containers = (((spec.get("template") or {}).get("spec") or {}).get("containers")) or []
        labels = (spec.get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        for c in containers:
            text = _runs(c).lower()
            role = ("app" if "gunicorn" in text else "workers" if "celery" in text and "worker" in text
                    else "cloudsql" if "cloud-sql-proxy" in text or "cloud_sql_proxy" in text else "")
            if not role or role in roles:
                continue
            entry = {"deployment": meta.get("name", ""), "selector": selector, "container": c.get("name", "")}
            if role == "app":
                web = [o.get("name") for o in containers if o is not c and "nginx" in str(o.get("image", "")).lower()]
                if web:
                    entry["nginx_container"] = web[0]
            if role == "workers":   # its command line: the pool size it sets, if it sets one (celery.busy_slots)
                entry["command"] = " ".join(str(x) for x in [*(c.get("command") or []), *(c.get("args") or [])])
            roles[role] = entry
    return roles


def no_pods(ctx, a: dict | None):
    """The Result when there is nothing to examine: zero pods is a wrong namespace or selector, never ok."""
    if a is None or a["total"]:
        return None
    ns, selector = namespace(ctx), kube_setting(ctx, "app_selector", "")
    where = f"namespace {ns}" + (f" with labels {selector}" if selector else "")
    return error(f"no pods in {where}: nothing to examine (set kubernetes.namespace"
                 + (" / kubernetes.app_selector" if selector else "") + " to where Studio runs)",
                 reason=Reason.NOT_CONFIGURED, evidence={"namespace": ns, "selector": selector, "pods": 0},
                 hint="Find Studio's namespace with the command below (the one whose pods run gunicorn/celery), "
                      "then set kubernetes.namespace in the profile.",
                 commands=[Command(kubectl(ctx, "get pods -A -o wide", None), READ_ONLY)])


def names(entries: list[dict], limit: int = 4, key: str = "pod") -> str:
    shown = sorted({e[key] for e in entries})
    more = len(shown) - limit
    return ", ".join(shown[:limit]) + (f" (+{more} more)" if more > 0 else "")


def pod_commands(ctx, pod: str | None, container: str | None = None, previous: bool = False) -> list[Command]:
    cmds = [Command(kubectl(ctx, "get pods -o wide"), READ_ONLY)]
    if pod:
        cmds.append(Command(kubectl(ctx, f"describe pod {pod}"), READ_ONLY, "events and last state"))
        if container:
            cmds.append(Command(kubectl(ctx, f"logs {pod} -c {container}" + (" --previous" if previous else "")
                                        + " --tail=200"), READ_ONLY,
                                "logs of the crashed instance" if previous else ""))
    return cmds
