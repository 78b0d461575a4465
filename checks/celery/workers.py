"""The workers (broker-control broadcasts): celery.workers (ping), celery.saturation (slots vs waiting tasks)."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from studiodoctor.backends import grants
from studiodoctor.model import (BROKER_CONTROL, READ_ONLY, Command, Reason, error, fail, ok, skip,
                                unreachable, warn)
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import (CONTROL_ACL, REDIS_REACHABLE, _REDIS_SCHEMES, SATURATION, WORKERS, _address,
                     _broker_url, _deployment, _describe, _kube, _kubectl, _no_broker, _no_permission, _ping,
                     _ping_command, _queue_depths, _setting, _slots, _unacked_task_ids)


# --- checks ---------------------------------------------------------------------------------------
@check(WORKERS, title="Celery workers answer ping", depends_on=(REDIS_REACHABLE,), safety=BROKER_CONTROL,
       permissions=("Redis (what `celery inspect ping` does): " + " ".join(CONTROL_ACL),))  # writes: no smoke
def check_workers(ctx):
    """Celery workers answer a broadcast ping within a short deadline.

    Studio runs its publishing, imports and change application in Celery workers (deployment
    `<release>-workers`, no liveness probe): when none answers, edits are never applied and publishes
    never start. The ping collects every reply for `celery.ping_timeout` seconds (default 2). None
    answering is a `fail`; fewer than `celery.expected_workers` (if set) a `warn`. The ping writes to the
    broker what `celery inspect ping` writes (safety class `broker-control`): a control message on the
    `celery.pidbox` channel and a temporary reply queue with its binding, removed afterwards; a Redis
    user without those grants gets an `error` naming them, never a broker failure. Fix: look at the
    workers' pods (`kubectl get pods -l tier=workers`, CrashLoopBackOff, OOMKilled: the limit is 8Gi)
    and their logs; restart the deployment."""
    url = _broker_url(ctx)
    if not url:
        return _no_broker()
    expected = max(0, int(_setting(ctx, "expected_workers") or 0))
    pinged = _ping(ctx, url)
    commands = [_ping_command(ctx),
                Command(f"{_kube(ctx)} get pods -l tier=workers", READ_ONLY),
                Command(f"{_kube(ctx)} logs -l tier=workers --tail=200", READ_ONLY)]
    if "error" in pinged:
        return _control_failure(url, pinged["error"], "ping the workers", commands)
    names = sorted(pinged["workers"])
    evidence = {"workers": names, "answered": len(names), "expected": expected or None,
                "waited_s": round(pinged["seconds"], 2)}
    if not names:
        return fail(f"no Celery worker answered a ping within {pinged['wait']:g} s", evidence=evidence,
                    commands=commands,
                    hint="the workers are down or not connected to this broker: check the workers "
                         "deployment's pods and logs, then restart it "
                         f"({_kube(ctx)} rollout restart deploy/{_deployment(ctx, 'workers')})")
    bad = [n for n in names if not isinstance(pinged["workers"][n], dict) or pinged["workers"][n].get("ok") != "pong"]
    if bad:
        evidence["bad_replies"] = {n: pinged["workers"][n] for n in bad}
        return warn(f"{len(bad)} worker(s) answered ping without 'pong': {', '.join(bad)}", evidence=evidence,
                    commands=commands)
    if len(names) < expected:
        return warn(f"{len(names)} of {expected} expected Celery workers answered ping: {', '.join(names)}",
                    evidence=evidence, commands=commands,
                    hint="some worker pods are missing or not ready; compare with the deployment's replicas")
    return ok(f"{len(names)} worker(s) answered ping within {pinged['wait']:g} s: {', '.join(names)}",
              evidence=evidence)


def _control_failure(url: str, exc: Exception, doing: str, commands: list[Command]):
    """A control call that raised: no permission -> error naming the ACL grant; unreachable -> fail."""
    timed_out, text = _describe(exc)
    if _no_permission(exc, text):
        user = urlsplit(url).username or "default"
        db = urlsplit(url).path.strip("/") or "0"
        control = (*CONTROL_ACL, f"&/{db}.celery.pidbox")
        text = "this user has no permissions to run the 'multi' command" if "EXEC without MULTI" in text else text
        lacks, grant = grants.redis_nopermission(user, text, control)
        return error(f"our Redis user {user!r} may not {doing} (a broadcast writes a control message): "
                     f"{lacks}: {grant} ({text})",
                     reason=Reason.FORBIDDEN, evidence={"broker": _address(url), "redis_user": user},
                     hint=f"grant it what `celery inspect` needs: ACL SETUSER {user} {' '.join(control)}, "
                          f"or leave the celery layer to a user that has it",
                     commands=commands[:1])
    if "NOAUTH" in text or "WRONGPASS" in text or type(exc).__name__ == "AuthenticationError":
        return error(f"the broker refused our credentials: {text}", reason=Reason.AUTH,
                     evidence={"broker": _address(url)})
    return unreachable("Celery broker", _address(url), text, timed_out=timed_out, commands=commands,
                       hint="the broker must be reachable before workers can be asked anything")


@check(SATURATION, title="Celery worker slots vs waiting tasks", depends_on=(REDIS_REACHABLE, WORKERS),
       safety=BROKER_CONTROL, permissions=("Redis (what `celery inspect active/stats` does): " + " ".join(CONTROL_ACL),
                                           "LLEN on the queues"))
def check_saturation(ctx):
    """Active tasks vs each worker's concurrency, and whether tasks wait while every slot is busy.

    Studio's workers run 3 processes each (`--concurrency=3`); a long publish holds a slot for
    its whole duration. All slots busy while tasks wait (on the queue, or prefetched by a worker
    behind its busy slots: kombu's `unacked` deliveries not running) means new edits and publishes
    queue up behind long tasks: a `fail` at any age, naming the running tasks (thresholds such as
    `celery.max_queue_depth` stay for what is only slow). Fix: wait, scale the
    workers deployment, or find a task that never ends (`celery inspect active`)."""
    url = _broker_url(ctx)
    if not url:
        return _no_broker()
    slots = _slots(ctx, url)
    if "error" in slots:
        timed_out, text = _describe(slots["error"])
        if _no_permission(slots["error"], text):
            return _control_failure(url, slots["error"], "inspect the workers", [])
        return error(f"could not inspect the workers: {text}",
                     reason=Reason.TIMEOUT if timed_out else Reason.UNEXPECTED)
    if not slots["workers"]:
        return skip("no worker answered ping, so there are no slots to count", reason=Reason.NOT_APPLICABLE)
    per_worker, busy, total, running, active_ids, started = {}, 0, 0, [], set(), []
    for name in sorted(slots["workers"]):
        stats = slots["stats"].get(name)
        active = slots["active"].get(name)
        pool = stats.get("pool") if isinstance(stats, dict) else None
        pool = pool if isinstance(pool, dict) else {}
        procs = pool.get("processes")
        size = pool.get("max-concurrency") or (len(procs) if isinstance(procs, list) else 0) or 1
        if not isinstance(stats, dict) or not isinstance(active, list) or isinstance(size, bool) \
                or not isinstance(size, int) or size < 1:
            per_worker[name] = {"answered": False}  # no answer, or one that is not inspect's
            continue
        per_worker[name] = {"active": len(active), "concurrency": size}
        busy += len(active)
        total += size
        running += [t.get("name") for t in active if isinstance(t, dict)]
        active_ids.update(t.get("id") for t in active if isinstance(t, dict))
        started += [(t.get("time_start"), t.get("name")) for t in active
                    if isinstance(t, dict) and isinstance(t.get("time_start"), (int, float))]
    silent = [n for n, w in per_worker.items() if not w.get("answered", True)]
    waiting = queued = prefetched = None
    if urlsplit(url).scheme in _REDIS_SCHEMES:
        try:
            queued = sum(q["total"] for q in _queue_depths(ctx, url).values())
            # delivered to a worker but not running: prefetched behind the busy slots (kombu's unacked
            # deliveries that are not among the active tasks; with acks_late the running ones are there too)
            prefetched = sum(1 for tid in _unacked_task_ids(ctx, url) if tid not in active_ids)
            waiting = queued + prefetched
        except Exception:  # the queue_depth check reports broker errors; here it is context only
            waiting = None
    evidence = {"busy": busy, "slots": total, "workers": per_worker, "waiting": waiting, "queued": queued,
                "prefetched": prefetched, "running_tasks": sorted(set(filter(None, running)))}
    if started:   # the worker's clock (time_start, epoch seconds): the longest task holding a slot
        since, name = min(started)
        evidence["longest_running"] = {"task": name, "running_s": round(max(0.0, time.time() - since), 1)}
    cmd = [Command(_kubectl(ctx, "workers", "celery -A contentcuration inspect active"), READ_ONLY)]
    if total == 0:
        return error(f"worker(s) {', '.join(silent)} answered ping but not inspect stats/active",
                     evidence=evidence, commands=cmd, reason=Reason.UNEXPECTED)
    summary = f"{busy} of {total} worker slots busy, {waiting if waiting is not None else '?'} task(s) waiting"
    if busy >= total and waiting:
        longest = evidence.get("longest_running")
        held = f" (the longest, {longest['task']}, for {longest['running_s']:.0f} s)" if longest else ""
        return fail(summary + f"; running: {', '.join(evidence['running_tasks']) or '?'}{held}", evidence=evidence,
                    commands=cmd, hint="every slot is taken while tasks wait: nothing new runs until a slot frees "
                                       "(a long publish holds one for its whole duration). Scale the workers "
                                       "deployment or look for a task that never finishes")
    if silent:
        return warn(summary + f"; no inspect answer from {', '.join(silent)}", evidence=evidence, commands=cmd)
    return ok(summary, evidence=evidence)
