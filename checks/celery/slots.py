"""Worker slots, read-only, from the workers' own heartbeats: celery.busy_slots.

Every Celery worker publishes a ``worker-heartbeat`` event every ``freq`` seconds (2 s) for as long as its
main process runs, task events or not (Studio runs ``--task-events`` besides), with ``active``: how many
tasks it runs now. On kombu's Redis transport the event exchange is a fanout, PUBLISHed on the channel
``/<db>.celeryev/worker.heartbeat`` as kombu's JSON envelope (``body`` base64 JSON, ``properties.body_encoding``),
measured on the lab's real worker. Listening on that one channel (SUBSCRIBE) for a heartbeat period and a
margin counts every live worker's busy slots and writes nothing: what the in-cluster doctor may run for a
laptop, where Celery's broadcast ``inspect`` (celery.saturation, ``broker-control``) may not run.

The tasks that wait are read as celery.saturation reads them (``LLEN`` on the queues; kombu's ``unacked``
hash and its ``unacked_index``, scored with the time of each delivery). Pure parts (an event, a worker's
command line, a delivery's wait) are functions tests call directly.
"""

from __future__ import annotations

import base64
import json
import math
import time
from datetime import datetime, timezone
from urllib.parse import urlsplit

from studiodoctor.backends import grants
from studiodoctor.model import READ_ONLY, Command, Reason, error, fail, ok
from studiodoctor.registry import check
from .common import SDK_IMPORTS as _CELERY_SDKS
from .common import (BUSY_SLOTS, HEARTBEAT_CHANNEL, REDIS_REACHABLE, _address, _broker_url, _describe, _kubectl,
                     _no_broker, _no_permission, _not_redis, _queue_depths, _redis_cli, _redis_client, _redis_failure,
                     _setting, _unacked_deliveries, heartbeat_acl)
from .consumers import connected_workers

# the workers Deployment's command line is read through the Kubernetes API (the runner preloads it)
SDK_IMPORTS = (*_CELERY_SDKS, "studiodoctor.backends.kubernetes")
HEARTBEAT = "worker-heartbeat"
_MAX_DELIVERIES = 200            # the oldest unacked deliveries read


# --- pure parts ------------------------------------------------------------------------------------
def parse_event(raw) -> dict | None:
    """A Celery event from kombu's Redis fanout message (JSON envelope, body base64 or utf-8 JSON), or None."""
    try:
        envelope = json.loads(raw)
        body = envelope["body"]
        if (envelope.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body, validate=True)
        event = json.loads(body)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return event if isinstance(event, dict) else None


def _number(value) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def heartbeat(event: dict | None) -> dict | None:
    """A worker's heartbeat, checked: {hostname, active, processed, freq, timestamp}; None for anything else."""
    if not isinstance(event, dict) or event.get("type") != HEARTBEAT or not isinstance(event.get("hostname"), str):
        return None
    active, stamp = _number(event.get("active")), _number(event.get("timestamp"))
    if active is None or active < 0 or stamp is None:
        return None
    processed = _number(event.get("processed"))
    return {"hostname": event["hostname"][:200], "active": int(active),
            "processed": int(processed) if processed is not None else None,
            "freq": _number(event.get("freq")) or 2.0, "timestamp": stamp}


def concurrency_in(command: str) -> int | None:
    """The pool size a ``celery ... worker`` command line sets (``--concurrency=N``, ``--concurrency N``,
    ``-c N``, ``-cN``, ``--autoscale=MAX,MIN``: MAX), or None when it sets none."""
    words = command.replace("'", " ").replace('"', " ").split()
    if "worker" not in words:
        return None
    after = words[words.index("worker") + 1:]
    for i, word in enumerate(after):
        nxt = after[i + 1] if i + 1 < len(after) else ""
        value = (word.partition("=")[2] if word.startswith(("--concurrency=", "--autoscale=")) else
                 nxt if word in ("--concurrency", "-c", "--autoscale") else
                 word[2:] if word.startswith("-c") and word[2:].isdigit() else "")
        value = value.split(",")[0]
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def _eta(headers: dict) -> float | None:
    """A task message's ``eta`` (Celery protocol 2, ISO 8601) as epoch seconds; None when it has none."""
    raw = headers.get("eta")
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(str(raw))
    except ValueError:
        return float("inf")   # an eta we cannot read: counted as scheduled, never as waiting for a slot
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def deliveries(scored: list[tuple[bytes, float]], bodies: list) -> list[dict]:
    """kombu's unacked deliveries: [{"task", "id", "delivered_at", "eta"}] from ``unacked_index`` (tag, score =
    the time the worker took it) and the ``unacked`` hash's ``[message, exchange, routing_key]``."""
    out = []
    for (tag, score), raw in zip(scored, bodies):
        try:
            message = json.loads(raw)[0]
            headers = message.get("headers") or {}
        except (ValueError, TypeError, IndexError, KeyError, AttributeError):
            headers = {}
        if not isinstance(headers, dict):
            headers = {}
        out.append({"task": headers.get("task") if isinstance(headers.get("task"), str) else None,
                    "id": headers.get("id") if isinstance(headers.get("id"), str) else None,
                    "delivered_at": float(score), "eta": _eta(headers)})
    return out


def waiting_deliveries(held: list[dict], now: float, period: float, busy: int, acks_late: bool) -> dict:
    """Which deliveries wait for a slot. Without ``acks_late`` (Studio's) a task is acknowledged when it starts,
    so an unacked delivery is one a worker took and has not started; one not due later (``eta``) that it has
    held for a whole heartbeat ``period`` has waited for a free slot (a worker with one starts it at once).
    With ``acks_late`` the running tasks are unacked too: the ``busy`` oldest are taken for them."""
    due = sorted((d for d in held if d["eta"] is None or d["eta"] <= now), key=lambda d: d["delivered_at"])
    scheduled = len(held) - len(due)
    if acks_late:
        due = due[busy:]
    return {"prefetched": due, "held": [d for d in due if now - d["delivered_at"] >= period], "scheduled": scheduled}


# --- what the broker and the cluster say -----------------------------------------------------------
def listen(ctx, url: str, channel: str, window: float, expected: int = 0, grace: float = 0.0) -> dict:
    """Every worker's last heartbeat on ``channel`` within ``window`` seconds (SUBSCRIBE, then closed):
    {"workers": {hostname: heartbeat + "received" (monotonic)}, "unreadable": n, "listened_s": s}. While fewer
    than ``expected`` workers were heard, it listens up to ``grace`` seconds more (a heartbeat late on a loaded
    machine), within the check's deadline."""
    pubsub = _redis_client(ctx, url).pubsub(ignore_subscribe_messages=True)
    workers, unreadable = {}, 0
    t0 = time.monotonic()
    late = max(t0 + window, min(t0 + window + grace, ctx.deadline - 0.5))
    try:
        pubsub.subscribe(channel)
        while (left := (t0 + window if len(workers) >= expected else late) - time.monotonic()) > 0:
            msg = pubsub.get_message(timeout=left)  # raises the SUBSCRIBE's NOPERM, if any
            if not msg or msg.get("type") != "message":
                continue
            beat = heartbeat(parse_event(msg.get("data")))
            if beat is None:
                unreadable += 1
                continue
            workers[beat["hostname"]] = {**beat, "received": time.monotonic()}
    finally:
        pubsub.close()   # drops the connection: no UNSUBSCRIBE needed, nothing left subscribed
    return {"workers": workers, "unreadable": unreadable, "listened_s": time.monotonic() - t0}


def _unacked(ctx, url: str) -> list[dict]:
    return deliveries(*_unacked_deliveries(ctx, url, _MAX_DELIVERIES))


def slots_per_worker(ctx) -> tuple[int | None, str]:
    """(slots per worker, where that number comes from): ``celery.concurrency``, else the ``--concurrency``
    of the workers Deployment's command (found by what its pods run), else (None, why it is unknown)."""
    stated = int(_setting(ctx, "concurrency") or 0)
    if stated > 0:
        return stated, "celery.concurrency"
    from studiodoctor.backends.kube_pods import deployment_roles
    from studiodoctor.backends.kubernetes import list_objects, namespace

    listing = list_objects(ctx, "deployments", namespace(ctx))
    if not listing.ok:
        return None, f"the workers Deployment is not readable here ({listing.status}{': ' if listing.detail else ''}" \
                     f"{listing.detail[:120]}); set celery.concurrency"
    role = deployment_roles(listing.items).get("workers")
    if not role:
        return None, f"no Deployment in namespace {namespace(ctx)} runs a celery worker; set celery.concurrency"
    runs = role.get("command") or ""
    size = concurrency_in(runs)
    if size:
        return size, f"--concurrency {size} in deploy/{role['deployment']} (container {role['container']})"
    return None, (f"deploy/{role['deployment']} runs `{runs[:100]}` with no --concurrency in its pod spec (Celery's "
                  f"default is the node's CPU count); set celery.concurrency")


# --- the check -----------------------------------------------------------------------------------
def _channel(ctx, url: str) -> tuple[str, str]:
    db = urlsplit(url).path.strip("/") or "0"
    default = str(ctx.setting("key_prefix", "")) + HEARTBEAT_CHANNEL.format(db=db)
    return str(ctx.setting("heartbeat_channel", "") or default), db


def _refused(ctx, url: str, exc: Exception, channel: str, db: str):
    """SUBSCRIBE refused: by the ACL (error naming the grant), or anything else (error or unreachable)."""
    _, text = _describe(exc)
    if _no_permission(exc, text):
        user = urlsplit(url).username or "default"
        lacks, grant = grants.redis_nopermission(user, text, (f"&{channel}",))
        return error(f"{lacks}: {grant} (listening to the workers' heartbeats on {channel}: {text})",
                     reason=Reason.FORBIDDEN, evidence={"broker": _address(url), "redis_user": user, "channel": channel},
                     hint=f"celery.busy_slots reads with: ACL SETUSER {user} {' '.join(heartbeat_acl(db))} "
                          "(SUBSCRIBE writes nothing)")
    if "unknown command" in text.lower():
        return error(f"this Redis does not allow SUBSCRIBE ({text}): the workers' heartbeats cannot be read here",
                     reason=Reason.FORBIDDEN, evidence={"broker": _address(url), "channel": channel})
    return _redis_failure(ctx, url, exc, f"the workers' heartbeats ({channel})")


@check(BUSY_SLOTS, title="Celery worker slots vs waiting tasks, from the workers' heartbeats",
       depends_on=(REDIS_REACHABLE,),
       permissions=("Redis: SUBSCRIBE on the workers' heartbeat channel (+subscribe &/<db>.celeryev/worker.heartbeat)",
                    "LLEN on the queues", "ZRANGE and HGET on kombu's unacked deliveries",
                    "CLIENT LIST (Redis ACL +client|list)", "list deployments.apps"))
def check_busy_slots(ctx):
    """Busy worker slots vs waiting tasks, read-only: the workers' heartbeats, the queues and kombu's deliveries.

    Each live Celery worker publishes a heartbeat every 2 s carrying how many tasks it runs (`active`); on
    Redis they go to the channel `/<db>.celeryev/worker.heartbeat`, which this check listens to (SUBSCRIBE)
    for `celery.heartbeat_window` seconds (3; up to 2 s more while it heard fewer workers than the broker shows
    connected). Slots per worker come from `celery.concurrency`, else from the `--concurrency` of the workers
    Deployment's command (Studio's chart runs `make prodceleryworkers`, whose `--concurrency=3` the pod spec
    does not show: then it is unknown, and said so). Waiting tasks: those on the queues, and those a worker
    took and has not started (kombu's unacked deliveries: Studio's tasks are acknowledged when they start;
    one with a future `eta` is scheduled, not waiting). A `fail`: every slot busy while tasks wait, or
    deliveries a worker has held a whole heartbeat period (2 s) without starting them (a worker with a free
    slot starts one at once: proven without knowing the concurrency). No heartbeat in the window, or fewer
    workers heard than the broker shows connected while tasks wait, is an `error` (their slots are unknown),
    never `ok` (with nothing waiting no slot is short, whoever is silent); so is
    a Redis user without `+subscribe &/<db>.celeryev/worker.heartbeat` (named in the error). Unlike
    celery.saturation's broadcast `inspect`, nothing is written: the in-cluster doctor runs it for a laptop.
    Fix: wait, scale the workers Deployment, or find a task that never ends (`celery inspect active`)."""
    url = _broker_url(ctx)
    if not url:
        return _no_broker()
    if (res := _not_redis(url)) is not None:
        return res
    channel, db = _channel(ctx, url)
    window = float(_setting(ctx, "heartbeat_window"))
    if ctx.remaining() < window + 0.5:
        return error(f"{ctx.remaining():.1f} s left in the run: too little to listen {window:g} s for the workers' "
                     "heartbeats", reason=Reason.TIMEOUT)
    seen = connected_workers(ctx, url)     # before listening: our subscription is no worker anyway (SUBSCRIBE)
    # the workers connected to the broker now (else the profile's count): each should be heard; a stopped one
    # has no slots to count, so celery.expected_workers does not extend the wait once CLIENT LIST answered
    expected = int(_setting(ctx, "expected_workers") or 0) if "error" in seen else len(seen["workers"])
    try:
        heard = listen(ctx, url, channel, window, expected, grace=2.0)
    except Exception as exc:
        return _refused(ctx, url, exc, channel, db)
    try:
        queued = sum(q["total"] for q in _queue_depths(ctx, url).values())
        held = _unacked(ctx, url)
    except Exception as exc:
        return _redis_failure(ctx, url, exc, "the queues and kombu's unacked deliveries")
    size, size_from = slots_per_worker(ctx)
    return _verdict(ctx, url, channel, heard, seen, queued, held, size, size_from, expected)


def _verdict(ctx, url, channel, heard, seen, queued, held, size, size_from, expected):
    workers = heard["workers"]
    connected = None if "error" in seen else len(seen["workers"])
    busy = sum(w["active"] for w in workers.values())
    slots = size * len(workers) if size else None
    # the workers' clock now (kombu scores a delivery with the worker's time.time()): a heartbeat's timestamp
    # plus the time since it arrived, never this machine's clock
    now = max((w["timestamp"] + time.monotonic() - w["received"] for w in workers.values()), default=time.time())
    period = max((w["freq"] for w in workers.values()), default=2.0)
    wait = waiting_deliveries(held, now, period, busy, bool(_setting(ctx, "acks_late")))
    waiting = queued + len(wait["prefetched"])
    names = sorted({d["task"] or "?" for d in wait["prefetched"]})
    evidence = {"channel": channel, "listened_s": round(heard["listened_s"], 2), "workers_heard": len(workers),
                "workers_connected": connected, "busy": busy, "slots": slots, "slots_per_worker": size,
                "slots_from": size_from, "waiting": waiting, "queued": queued, "prefetched": len(wait["prefetched"]),
                "held_a_heartbeat_period": len(wait["held"]), "scheduled": wait["scheduled"], "waiting_tasks": names,
                "workers": {h: {"active": w["active"], "processed": w["processed"], "freq_s": w["freq"]}
                            for h, w in sorted(workers.items())}}
    if heard["unreadable"]:
        evidence["unreadable_messages"] = heard["unreadable"]
    if wait["held"]:
        evidence["longest_held_s"] = round(now - wait["held"][0]["delivered_at"], 1)
    cmds = [Command(_kubectl(ctx, "workers", "celery -A contentcuration inspect active"), READ_ONLY),
            Command(_redis_cli(url, f"SUBSCRIBE {channel}"), READ_ONLY, "each worker's heartbeat: active = tasks running")]
    if not workers:
        on = f"{connected} worker(s) connected to the broker" if connected else "no worker connected to the broker"
        return error(f"no Celery worker heartbeat on {channel} within {heard['listened_s']:.1f} s ({on}): their busy "
                     f"slots are unknown", reason=Reason.UNEXPECTED, evidence=evidence, commands=cmds,
                     hint="a worker that runs sends one every 2 s: none means no worker runs (celery.consumers), or "
                          "they run with --without-heartbeat or events disabled")
    of = f"{busy} of {slots} worker slots busy" if slots else f"{busy} task(s) running (slots per worker unknown)"
    summary = f"{of} on {len(workers)} worker(s), {waiting} task(s) waiting"
    full = bool(slots) and busy >= slots and waiting > 0
    if full or wait["held"]:
        held = (f", {len(wait['held'])} of them taken by a worker and held up to {evidence['longest_held_s']:.0f} s "
                f"without starting" if wait["held"] else "")
        tasks = f"{', '.join(names)}; " if names else ""
        return fail(f"{summary} ({tasks}{queued} on the queue{held})", evidence=evidence,
                    commands=cmds, hint="every slot is taken while tasks wait: nothing new runs until a slot frees "
                                        "(a long publish holds one for its whole duration). Scale the workers "
                                        "deployment or look for a task that never finishes")
    if len(workers) < expected and waiting == 0:
        # no task waits, so no task lacks a slot, whatever the unheard workers run: the finding (saturation)
        # is disproved without their count; who runs at all is celery.consumers' and celery.workers' question
        evidence["workers_unheard"] = expected - len(workers)
        return ok(f"{summary}: no task waits, so no slot is short (the broker shows {expected} worker(s) "
                  f"connected, {len(workers)} heard)", evidence=evidence)
    if len(workers) < expected:
        which = "connected" if connected is not None else "expected"
        return error(f"{summary}; only {len(workers)} of {expected} {which} worker(s) sent a heartbeat within "
                     f"{heard['listened_s']:.1f} s: the others' slots are unknown", reason=Reason.UNEXPECTED,
                     evidence=evidence, commands=cmds)
    return ok(summary + ("" if slots else f" ({size_from})"), evidence=evidence)
