"""Layer `celery`: workers answer ping, their slots, queue depth, unacked deliveries, stuck publishes.

Studio's Celery (facts §4, §6): broker Redis DB 0, one queue ``celery``, kombu's ``unacked`` hash and
``unacked_index`` sorted set, ``visibility_timeout`` 4 h, results in Postgres, publishing flags
``main_tree.publishing`` and stays stuck when a worker dies. Everything here only READS the broker:
LLEN/LINDEX/HLEN/HGET/ZRANGE, never a pop. The exceptions are the broadcast ping and inspect, declared
with safety class ``broker-control``: they do what ``celery inspect ping`` does, publish a control message
and read replies on a temporary queue they bind and remove (``CONTROL_ACL`` lists the Redis grants).
Celery and kombu are imported inside the functions only.
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

from studiodoctor import grants, studio_facts as facts
from studiodoctor.model import BROKER_CONTROL, MUTATING, READ_ONLY, Command, Reason, error, fail, ok, skip, unreachable, warn
from studiodoctor.backends import redis as redis_backend
from studiodoctor.registry import check

# imported by the runner before any check starts (see studiodoctor.runner.preload)
SDK_IMPORTS = ("celery", "kombu.transport.redis", "redis", "psycopg")

WORKERS = "celery.workers"
SATURATION = "celery.saturation"
QUEUE_DEPTH = "celery.queue_depth"
UNACKED = "celery.unacked"
STUCK_PUBLISHES = "celery.stuck_publishes"

REDIS_REACHABLE = "redis.reachable"
POSTGRES_REACHABLE = "postgres.reachable"

# kombu's Redis transport (kombu/transport/redis.py): a queue's messages with priority p live in
# ``queue + sep + str(step)`` for the non-zero steps; step 0 is the plain list named after the queue.
KOMBU_SEP = "\x06\x16"
KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)
UNACKED_KEY = "unacked"
UNACKED_INDEX_KEY = "unacked_index"

DEFAULTS = {
    "queues": ["celery"],
    "expected_workers": 0,          # 0: not stated (the ping reports how many answered, it cannot know more)
    "ping_timeout": 2.0,            # seconds the ping collects replies: every worker that answers within it
    "max_queue_depth": 50,          # Studio's old prober alerted at LLEN celery >= 50
    "visibility_timeout": 14400,    # Studio's broker_transport_options (4 h)
    "unacked_warn_ratio": 0.75,     # warn when the oldest delivery is this close to the visibility timeout
    "publish_stuck_after": 7200,    # Studio's prober: a channel publishing >= 2 h
    "failed_publish_window": 86400,  # how far back to look for failed export-channel results
    "unapplied_after": 1800,        # unapplied changes older than 30 min while no task is active
}

_REDIS_SCHEMES = ("redis", "rediss", "unix")
# The reads of queue_depth/unacked (and redis.reachable's PING), on the app's queue keys only.
READ_ACL = ("+ping", "+llen", "+lindex", "+hlen", "+hget", "+zcard", "+zrange", "~celery*", "~unacked*")
# The Redis ACL a broadcast (ping, inspect) needs through kombu's Redis transport, measured with a real worker
# (tests/safety/test_least_privilege.py: without any one of these the ping is refused, except +script|exists,
# which redis-py's pipeline tries first: without it the ping works but every run leaves a denial in ACL LOG):
# PUBLISH on the pidbox channel; a Lua script (TIME, SADD, ZADD) binding a temporary reply queue; LLEN/BRPOP on
# it; SREM/DEL to remove it. Nothing of the app's queues is touched: kombu's restore of unacked deliveries
# (SET unacked_mutex, then re-queueing) and its sweep of other consumers' binding tables are switched off in
# _resp2_transport. (Channel: &/<db>.celery.pidbox.)
CONTROL_ACL = ("+publish", "+evalsha", "+script|load", "+script|exists", "+time", "+sadd", "+zadd", "+srem",
               "+del", "+llen", "+brpop", "+multi", "+exec", "~_kombu.binding_deadlines",
               "~*.reply.celery.pidbox*")


# --- helpers ---------------------------------------------------------------------------------------
def _setting(ctx, key):
    return ctx.setting(key, DEFAULTS[key])


def _broker_url(ctx) -> str:
    return str(ctx.setting("broker_url", "") or ctx.profile.value("redis.url") or "")


def _address(url: str) -> str:
    """host:port/db of a broker URL, without credentials (safe to print)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (6379 if parts.scheme.startswith("redis") else "")
    db = parts.path.strip("/") or "0"
    return f"{host}:{port}/{db}" if parts.scheme.startswith("redis") else f"{host}:{port}"


def _redis_cli(url: str, args: str) -> str:
    parts = urlsplit(url)
    auth = " --askpass" if parts.password else ""
    tls = " --tls" if parts.scheme == "rediss" else ""
    db = parts.path.strip("/") or "0"
    return f"redis-cli -h {parts.hostname or '127.0.0.1'} -p {parts.port or 6379} -n {db}{tls}{auth} {args}"


def _namespace(ctx) -> str:
    return ctx.section("kubernetes").get("namespace") or "studio"


def _deployment(ctx, which: str) -> str:
    """``kubernetes.app_deployment`` / ``kubernetes.workers_deployment`` (the runbook's keys and defaults)."""
    ns = _namespace(ctx)
    default = f"{ns}-studio" if which == "app" else f"{ns}-studio-workers"
    return ctx.section("kubernetes").get(f"{which}_deployment") or default


def _kube(ctx) -> str:
    from studiodoctor.kubectl import command

    return command(ctx.profile, "", _namespace(ctx)).rstrip()


def _kubectl(ctx, which: str, cmd: str) -> str:
    container = " -c app" if which == "app" else ""
    return f"{_kube(ctx)} exec deploy/{_deployment(ctx, which)}{container} -- {cmd}"


def _ping_command(ctx) -> Command:
    return Command(_kubectl(ctx, "workers", "celery -A contentcuration inspect ping"), READ_ONLY,
                   "ask every worker for a pong, from inside the cluster")


def _reconcile_commands(ctx) -> list[Command]:
    manage = "python contentcuration/manage.py"
    return [
        Command(_kubectl(ctx, "app", f"{manage} reconcile_publishing_status"), MUTATING,
                "resets main_tree.publishing for channels with no active apply_channel_changes task"),
        Command(_kubectl(ctx, "app", f"{manage} reconcile_change_tasks"), MUTATING,
                "revokes stale tasks and re-enqueues tasks for unapplied changes"),
    ]


def _not_redis(url: str):
    scheme = urlsplit(url).scheme
    if scheme not in _REDIS_SCHEMES:
        return skip(f"broker scheme {scheme or '(none)'}:// is not Redis: only kombu's Redis transport is read",
                    reason=Reason.NOT_APPLICABLE)
    return None


def _no_broker():
    return skip("celery.broker_url is not set and redis.url is empty", reason=Reason.NOT_CONFIGURED,
                hint="set celery.broker_url (or redis.url, its default) in the profile")


def _redis_client(ctx, url: str):
    # RESP2: Studio's production Redis (v4) rejects redis-py 8's RESP3 HELLO (facts §4).
    return ctx.shared.get(f"celery.redis:{url}",
                          lambda: redis_backend.make_client(redis_backend.Target(url), ctx.timeout(cap=5.0), decode=False))


def _redis_failure(ctx, url: str, exc: Exception, what: str):
    """Map a redis-py exception to a result: unreachable -> fail, no permission -> error."""
    import redis

    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)):
        timed_out = isinstance(exc, redis.exceptions.TimeoutError) or "timed out" in text.lower()
        return unreachable("Celery broker (Redis)", _address(url), text, timed_out=timed_out,
                           commands=[Command(_redis_cli(url, "PING"), READ_ONLY)])
    if isinstance(exc, redis.exceptions.AuthenticationError) or "NOAUTH" in text or "WRONGPASS" in text:
        return error(f"the broker refused our credentials while reading {what}: {text}", reason=Reason.AUTH)
    if _no_permission(exc, text):
        user = urlsplit(url).username or "default"
        lacks, grant = grants.redis_nopermission(user, text, READ_ACL)
        return error(f"{lacks}: {grant} (reading {what}: {text})", reason=Reason.FORBIDDEN,
                     evidence={"broker": _address(url), "redis_user": user},
                     hint=f"the celery layer reads with: ACL SETUSER {user} {' '.join(READ_ACL)}")
    return error(f"unexpected answer reading {what}: {text}", reason=Reason.UNEXPECTED)


def _celery_app(ctx, url: str):
    """A throw-away Celery app that fails fast on a dead broker (no retries, short connect timeout)."""

    def make():
        from celery import Celery

        t = ctx.timeout(cap=3.0)
        app = Celery("studiodoctor-probe", broker=url, set_as_current=False)
        app.conf.update(
            broker_connection_retry=False,
            broker_connection_retry_on_startup=False,
            broker_connection_max_retries=0,
            broker_connection_timeout=t,
            broker_transport_options={"max_retries": 0, "socket_connect_timeout": t, "socket_timeout": t},
            accept_content=["json"],
            control_queue_ttl=t + 5,
            control_queue_expires=t + 30,
        )
        if urlsplit(url).scheme in ("redis", "rediss"):
            # every connection of this app (the control producer pool too) speaks RESP2
            app.conf.broker_transport = ctx.shared.get("celery.resp2_transport", _resp2_transport)
        return app

    return ctx.shared.get(f"celery.app:{url}", make)


def _resp2_transport():
    """kombu's Redis transport speaking RESP2 (redis-py >= 8 opens with ``HELLO 3``, which Studio's
    production Redis (4.x) rejects (facts §4); Studio itself forces RESP2 for the same reason), and whose
    consumer never restores the app's unacked messages (kombu does that from any consumer's poll loop)."""
    from kombu.transport import redis as kombu_redis

    class NoRestoreQoS(kombu_redis.QoS):
        def restore_visible(self, *args, **kwargs):
            """Never: kombu's consumer re-queues the app's unacked deliveries older than ITS visibility
            timeout (1 h by default, Studio's is 4 h), so a doctor's ping would run a long publish twice."""
            return None

    class Channel(kombu_redis.Channel):
        QoS = NoRestoreQoS

        def sweep_bindings(self, *args, **kwargs):
            """Never: kombu's consumer deletes other consumers' overdue binding tables (DEL _kombu.binding.*)."""
            return 0

        def _connparams(self, asynchronous=False):
            params = super()._connparams(asynchronous)
            params["protocol"] = 2
            return params

    class Transport(kombu_redis.Transport):
        pass

    Transport.Channel = Channel
    return Transport


def _broker_connection(ctx, url: str):
    """A fresh kombu connection to the broker for one control call (RESP2 on Redis, no retries)."""
    return _celery_app(ctx, url).connection_for_write()


def _describe(exc: Exception) -> tuple[bool, str]:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return ("timed out" in text.lower() or isinstance(exc, TimeoutError)), text


def _ping(ctx, url: str) -> dict:
    """Broadcast ping once per run: {"workers": {name: reply}, "seconds": s} or {"error": exc}.

    It collects every reply within the ping window (no early stop at a count: Studio runs 5 worker pods,
    and a ping that stops at the first pong makes the slot count see one worker of many)."""

    def run():
        wait = min(float(_setting(ctx, "ping_timeout")), max(0.1, ctx.timeout() - 0.5))
        t0 = time.monotonic()
        try:
            with _broker_connection(ctx, url) as conn:
                replies = _celery_app(ctx, url).control.ping(timeout=wait, connection=conn)
        except Exception as exc:  # kombu OperationalError, redis ConnectionError, socket errors
            return {"error": exc, "seconds": time.monotonic() - t0, "wait": wait}
        workers = {}
        for reply in replies if isinstance(replies, list) else []:
            if isinstance(reply, dict):  # {hostname: {"ok": "pong"}}; any other body is not a worker's reply
                workers.update({str(name): body for name, body in reply.items()})
        return {"workers": workers, "seconds": time.monotonic() - t0, "wait": wait}

    return ctx.shared.get(f"celery.ping:{url}", run)


def _slots(ctx, url: str) -> dict:
    """Active tasks and pool sizes of the workers that answered ping (early return via ``limit``)."""

    def run():
        pinged = _ping(ctx, url)
        if "error" in pinged:
            return pinged
        names = sorted(pinged["workers"])
        if not names:
            return {"workers": {}, "active": {}, "stats": {}}
        wait = min(float(_setting(ctx, "ping_timeout")), max(0.1, ctx.timeout() - 0.5))
        try:
            with _broker_connection(ctx, url) as conn:
                insp = _celery_app(ctx, url).control.inspect(destination=names, timeout=wait, limit=len(names),
                                                             connection=conn)
                active = insp.active() or {}
                stats = insp.stats() or {}
                active, stats = (x if isinstance(x, dict) else {} for x in (active, stats))
        except Exception as exc:
            return {"error": exc}
        return {"workers": pinged["workers"], "active": active, "stats": stats}

    return ctx.shared.get(f"celery.slots:{url}", run)


def _queue_depths(ctx, url: str) -> dict:
    """{queue: {"total": n, "by_priority": {step: n}, "next_task": name}} (read-only, once per run)."""

    def run():
        client = _redis_client(ctx, url)
        sep = str(ctx.setting("priority_sep", KOMBU_SEP))
        steps = [int(s) for s in ctx.setting("priority_steps", list(KOMBU_PRIORITY_STEPS))]
        prefix = str(ctx.setting("key_prefix", ""))
        queues = list(_setting(ctx, "queues"))
        pipe = client.pipeline(transaction=False)
        keys = []
        for q in queues:
            for step in steps:
                key = prefix + (f"{q}{sep}{step}" if step else q)
                keys.append((q, step, key))
                pipe.llen(key)
        sizes = pipe.execute()
        out: dict = {}
        for (q, step, key), size in zip(keys, sizes):
            entry = out.setdefault(q, {"total": 0, "by_priority": {}, "next_task": None, "_keys": []})
            entry["total"] += int(size)
            entry["by_priority"][str(step)] = int(size)
            if size:
                entry["_keys"].append(key)
        for q, entry in out.items():
            # the consumer pops from the right end: LINDEX -1 is the next message to be delivered
            if entry["_keys"]:
                entry["next_task"] = _task_name(client.lindex(entry["_keys"][0], -1))
            del entry["_keys"]
        return out

    return ctx.shared.get(f"celery.depths:{url}", run)


def _task_name(raw) -> str | None:
    """The task name of a kombu message body (``headers.task``), or None."""
    if not raw:
        return None
    try:
        msg = json.loads(raw)
        if isinstance(msg, list):  # the unacked hash stores [message, exchange, routing_key]
            msg = msg[0]
        return (msg.get("headers") or {}).get("task")
    except (ValueError, TypeError, AttributeError, IndexError):
        return None


def _fmt_age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"


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


def _no_permission(exc: Exception, text: str) -> bool:
    """Redis refused a command for our ACL user (directly, or inside kombu's Lua script; a refused MULTI
    reaches redis-py as the EXEC that follows it)."""
    return (type(exc).__name__ == "NoPermissionError" or "NOPERM" in text
            or "can't run this command" in text or "no permissions to" in text or "EXEC without MULTI" in text)


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
    its whole duration. All slots busy while messages wait on the queue means new edits and
    publishes queue up behind long tasks: a `warn` naming the running tasks. Fix: wait, scale the
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
    per_worker, busy, total, running = {}, 0, 0, []
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
    silent = [n for n, w in per_worker.items() if not w.get("answered", True)]
    waiting = None
    if urlsplit(url).scheme in _REDIS_SCHEMES:
        try:
            waiting = sum(q["total"] for q in _queue_depths(ctx, url).values())
        except Exception:  # the queue_depth check reports broker errors; here it is context only
            waiting = None
    evidence = {"busy": busy, "slots": total, "workers": per_worker, "waiting": waiting,
                "running_tasks": sorted(set(filter(None, running)))}
    cmd = [Command(_kubectl(ctx, "workers", "celery -A contentcuration inspect active"), READ_ONLY)]
    if total == 0:
        return error(f"worker(s) {', '.join(silent)} answered ping but not inspect stats/active",
                     evidence=evidence, commands=cmd, reason=Reason.UNEXPECTED)
    summary = f"{busy} of {total} worker slots busy, {waiting if waiting is not None else '?'} task(s) waiting"
    if busy >= total and waiting:
        return warn(summary + f"; running: {', '.join(evidence['running_tasks']) or '?'}", evidence=evidence,
                    commands=cmd, hint="every slot is taken while tasks wait: scale the workers deployment or "
                                       "look for a task that never finishes")
    if silent:
        return warn(summary + f"; no inspect answer from {', '.join(silent)}", evidence=evidence, commands=cmd)
    return ok(summary, evidence=evidence)


@check(QUEUE_DEPTH, title="Celery queue depth", depends_on=(REDIS_REACHABLE,),
       permissions=("LLEN, LINDEX on the queue keys",), smoke=True, metrics=("total;max_queue_depth;;0",))
def check_queue_depth(ctx):
    """Messages waiting on each configured queue, kombu's priority sub-queues included.

    kombu's Redis transport keeps a queue as the list named after it plus one list per priority
    step (`celery\\x06\\x163`, `...6`, `...9`); counting only `LLEN celery` misses those (Flower's
    bug #1254). Studio uses the single queue `celery`; its old prober alerted at 50 waiting messages
    (`celery.max_queue_depth`). A growing queue means workers are down, saturated or stuck. Fix:
    check `celery.workers` and `celery.saturation`; never pop messages to "look" at them."""
    url = _broker_url(ctx)
    if not url:
        return _no_broker()
    if (res := _not_redis(url)) is not None:
        return res
    limit = int(_setting(ctx, "max_queue_depth"))
    try:
        depths = _queue_depths(ctx, url)
    except Exception as exc:
        return _redis_failure(ctx, url, exc, "the queue lengths")
    total = sum(q["total"] for q in depths.values())
    evidence = {"queues": depths, "total": total, "max_queue_depth": limit, "broker": _address(url)}
    commands = [Command(_redis_cli(url, f"LLEN {q}"), READ_ONLY) for q in depths]
    over = {q: d for q, d in depths.items() if d["total"] >= limit}
    parts = ", ".join(f"{q}: {d['total']}" for q, d in depths.items())
    if over:
        names = ", ".join(f"{q} has {d['total']}" for q, d in over.items())
        nxt = [d["next_task"] for d in over.values() if d["next_task"]]
        return warn(f"{names} waiting message(s) (threshold {limit})"
                    + (f"; next to run: {nxt[0]}" if nxt else ""), evidence=evidence,
                    commands=commands + [_ping_command(ctx)],
                    hint="tasks arrive faster than workers take them: are workers up (celery.workers) and "
                         "are their slots all busy (celery.saturation)? Scale or restart the workers.")
    return ok(f"waiting messages: {parts}", evidence=evidence)


@check(UNACKED, title="Celery unacked deliveries vs visibility timeout", depends_on=(REDIS_REACHABLE,),
       permissions=("HLEN, HGET on unacked; ZCARD, ZRANGE on unacked_index",))
def check_unacked(ctx):
    """Deliveries taken by a worker but not acknowledged, and the age of the oldest.

    kombu's Redis transport records each delivery in the `unacked` hash and the `unacked_index`
    sorted set (score = delivery time). Once a delivery is older than the visibility timeout,
    kombu gives it to another worker: the task runs twice. That re-ran Studio's publishes every hour
    (issue #3395) until the timeout was raised to 4 h (`celery.visibility_timeout`). A delivery
    older than `celery.unacked_warn_ratio` of it is a `warn`. Fix: find the long task
    (`celery inspect active`); if its worker died, the message is redelivered after the timeout."""
    url = _broker_url(ctx)
    if not url:
        return _no_broker()
    if (res := _not_redis(url)) is not None:
        return res
    prefix = str(ctx.setting("key_prefix", ""))
    hkey, zkey = prefix + str(ctx.setting("unacked_key", UNACKED_KEY)), prefix + str(
        ctx.setting("unacked_index_key", UNACKED_INDEX_KEY))
    vt = float(_setting(ctx, "visibility_timeout"))
    ratio = float(_setting(ctx, "unacked_warn_ratio"))
    try:
        client = _redis_client(ctx, url)
        pipe = client.pipeline(transaction=False)
        pipe.hlen(hkey).zcard(zkey).zrange(zkey, 0, 0, withscores=True)
        count, indexed, oldest = pipe.execute()
        tag, score = (oldest[0] if oldest else (None, None))
        task = _task_name(client.hget(hkey, tag)) if tag is not None else None
    except Exception as exc:
        return _redis_failure(ctx, url, exc, "the unacked deliveries")
    evidence = {"unacked": int(count), "indexed": int(indexed), "visibility_timeout_s": vt}
    if tag is None:
        return ok(f"{count} unacked deliveries", evidence=evidence)
    age = max(0.0, time.time() - float(score))
    evidence.update({"oldest_age_s": round(age, 1), "oldest_task": task,
                     "oldest_tag": tag.decode() if isinstance(tag, bytes) else str(tag)})
    cmds = [Command(_redis_cli(url, f"ZRANGE {zkey} 0 4 WITHSCORES"), READ_ONLY),
            Command(_kubectl(ctx, "workers", "celery -A contentcuration inspect active"), READ_ONLY)]
    what = f"oldest unacked delivery{f' ({task})' if task else ''} is {_fmt_age(age)} old"
    if age >= vt:
        return warn(f"{what}, past the {_fmt_age(vt)} visibility timeout: kombu redelivers it (the task runs "
                    f"twice)", evidence=evidence, commands=cmds,
                    hint="a worker died holding it or the task runs longer than the visibility timeout; "
                         "raise broker_transport_options.visibility_timeout or shorten the task")
    if age >= ratio * vt:
        return warn(f"{what}, near the {_fmt_age(vt)} visibility timeout: it will be delivered twice at "
                    f"{_fmt_age(vt)}", evidence=evidence, commands=cmds,
                    hint="a long task (a big publish?) nears the visibility timeout; see celery inspect active")
    return ok(f"{count} unacked deliveries; {what} (visibility timeout {_fmt_age(vt)})", evidence=evidence)


@check(STUCK_PUBLISHES, title="Channels stuck publishing", needs=("postgres.dsn",),
       depends_on=(POSTGRES_REACHABLE,), explained_by=(WORKERS,),
       permissions=(f"SELECT on {facts.CHANNEL_TABLE}, {facts.NODE_TABLE}, {facts.CHANGE_TABLE}, "
                    f"{facts.TASKRESULT_TABLE}",))
def check_stuck_publishes(ctx):
    """Channels whose main tree has been `publishing` for too long, failed publishes, unapplied changes.

    A publish sets the channel's `main_tree.publishing = True` inside the `apply_channel_changes`
    task; if the worker dies mid-publish the flag stays set and the channel cannot be published
    again. A channel publishing for longer than `celery.publish_stuck_after` (default 2 h, Studio's
    old prober) is a `fail` naming it. Recent failed `export-channel` results and Change rows left
    unapplied for over 30 min while no task is active are `warn`s. Fix (after making sure no worker
    is still publishing it): `manage.py reconcile_publishing_status` and `reconcile_change_tasks`."""
    import psycopg

    dsn = ctx.profile.value("postgres.dsn")
    stuck_after = float(_setting(ctx, "publish_stuck_after"))
    window = float(_setting(ctx, "failed_publish_window"))
    unapplied_after = float(_setting(ctx, "unapplied_after"))
    t = ctx.timeout(cap=10.0)
    ch, node, change, tr = facts.CHANNEL_TABLE, facts.NODE_TABLE, facts.CHANGE_TABLE, facts.TASKRESULT_TABLE
    try:
        with psycopg.connect(dsn, connect_timeout=max(1, int(t)), autocommit=False,
                             options=f"-c statement_timeout={int(t * 1000)} -c default_transaction_read_only=on"
                             ) as conn:
            conn.read_only = True
            publishing = conn.execute(
                f"SELECT c.id, c.name, n.modified, EXTRACT(EPOCH FROM now() - n.modified)::float8 "
                f"FROM {ch} c JOIN {node} n ON n.id = c.main_tree_id "
                f"WHERE n.publishing AND NOT c.deleted ORDER BY n.modified").fetchall()
            failed = conn.execute(
                f"SELECT task_id, task_name, date_done FROM {tr} WHERE task_name = ANY(%s) AND status = 'FAILURE' "
                f"AND date_done > now() - make_interval(secs => %s) ORDER BY date_done DESC LIMIT 10",
                (list(facts.PUBLISH_TASK_NAMES), window)).fetchall()
            has_created = conn.execute(
                "SELECT 1 FROM information_schema.columns WHERE table_name = %s AND column_name = 'created'",
                (change,)).fetchone() is not None
            if has_created:
                unapplied, oldest_change = conn.execute(
                    f"SELECT count(*), min(created) FROM {change} WHERE NOT applied AND NOT errored "
                    f"AND created < now() - make_interval(secs => %s)", (unapplied_after,)).fetchone()
            else:  # Studio's Change has no timestamp in some versions: count them all
                unapplied, oldest_change = conn.execute(
                    f"SELECT count(*), NULL FROM {change} WHERE NOT applied AND NOT errored").fetchone()
    except psycopg.errors.UndefinedTable as exc:
        return error(f"a Studio table is missing: {exc.diag.message_primary}; is postgres.dsn Studio's database?",
                     reason=Reason.UNEXPECTED)
    except psycopg.errors.InsufficientPrivilege as exc:
        role = urlsplit(str(dsn)).username if "://" in str(dsn) else None
        denied = grants.pg_table(exc.diag.message_primary or "")
        return error(f"our database role may not read Studio's tables: "
                     f"{grants.pg_grant_select(role, [denied or ch])} ({exc.diag.message_primary})",
                     reason=Reason.FORBIDDEN, evidence={"denied_table": denied, "role": role},
                     hint=f"the celery layer reads: {grants.pg_grant_select(role, [ch, node, change, tr])}")
    except psycopg.OperationalError as exc:
        text = (str(exc).strip().splitlines() or ["connection failed"])[-1]
        host = urlsplit(str(dsn)).hostname or "?"
        return unreachable("PostgreSQL", f"{host}:{urlsplit(str(dsn)).port or 5432}", text,
                           timed_out="timeout" in text.lower())
    except psycopg.Error as exc:
        return error(f"query failed: {(str(exc).strip().splitlines() or ['?'])[0]}", reason=Reason.UNEXPECTED)

    chans = [{"id": cid, "name": name, "since": since.isoformat(timespec="seconds"), "age_s": round(age)}
             for cid, name, since, age in publishing]
    stuck = [c for c in chans if c["age_s"] >= stuck_after]
    evidence = {"publishing": chans, "stuck": [c["id"] for c in stuck], "publish_stuck_after_s": stuck_after,
                "failed_publishes": [{"task_id": tid, "task_name": tn, "date_done": dd.isoformat(timespec="seconds")}
                                     for tid, tn, dd in failed],
                "unapplied_changes": int(unapplied),
                "unapplied_oldest": oldest_change.isoformat(timespec="seconds") if oldest_change else None}
    commands = [Command(f"psql \"$STUDIO_DATABASE_URL\" -c \"SELECT c.id, c.name, n.modified FROM {ch} c JOIN "
                        f"{node} n ON n.id = c.main_tree_id WHERE n.publishing\"", READ_ONLY),
                Command(_kubectl(ctx, "workers", "celery -A contentcuration inspect active"), READ_ONLY),
                *_reconcile_commands(ctx)]
    if stuck:
        first = stuck[0]
        names = "; ".join(f"{c['id']} ({c['name']}) since {c['since']}" for c in stuck)
        return fail(f"{len(stuck)} channel(s) publishing for more than {_fmt_age(stuck_after)}: {names}",
                    evidence=evidence, commands=commands,
                    hint=f"channel {first['id']} has been publishing for {_fmt_age(first['age_s'])}: its worker "
                         "probably died mid-publish. If `celery inspect active` shows no apply_channel_changes "
                         "for it, run reconcile_publishing_status, then publish again.")
    findings = []
    if failed:
        findings.append(f"{len(failed)} failed publish(es) in the last {_fmt_age(window)} "
                        f"(latest task {failed[0][0]})")
    if unapplied:
        active = _active_task_count(ctx)
        evidence["active_tasks"] = active
        age_txt = f" older than {_fmt_age(unapplied_after)}" if has_created else ""
        if active is None:
            findings.append(f"{unapplied} unapplied change(s){age_txt}; active tasks unknown (workers not inspected)")
        elif active == 0:
            findings.append(f"{unapplied} unapplied change(s){age_txt} while no task is active")
    if findings:
        return warn("; ".join(findings), evidence=evidence, commands=commands,
                    hint="failed publishes: see the task's traceback in django_celery_results_taskresult; "
                         "unapplied changes with no active task: reconcile_change_tasks re-enqueues them")
    busy = f"{len(chans)} channel(s) publishing (none for {_fmt_age(stuck_after)})" if chans else \
        "no channel is publishing"
    return ok(f"{busy}; no failed publish in the last {_fmt_age(window)}", evidence=evidence)


def _active_task_count(ctx) -> int | None:
    """Active + nothing else: the number of tasks the workers run now, or None when we cannot see."""
    url = _broker_url(ctx)
    if not url:
        return None
    try:
        slots = _slots(ctx, url)
    except Exception:
        return None
    if "error" in slots or not slots.get("workers"):
        return 0 if slots.get("workers") == {} else None
    return sum(len(v or []) for v in slots["active"].values())
