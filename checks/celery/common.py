"""What the celery checks share: the check ids, Studio's Celery defaults, the broker URL and its Redis client
(``studiodoctor.backends.redis``), the throw-away Celery app (RESP2, no restore of unacked messages), and
the runbook's kubectl lines."""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

from studiodoctor.backends import grants
from studiodoctor.model import READ_ONLY, Command, Reason, error, skip, unreachable
from studiodoctor.backends import redis as redis_backend


# imported by the runner before any check starts (see studiodoctor.runner.preload)
SDK_IMPORTS = ("celery", "kombu.transport.redis", "redis", "psycopg")

WORKERS = "celery.workers"
CONSUMERS = "celery.consumers"
SATURATION = "celery.saturation"
BUSY_SLOTS = "celery.busy_slots"
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
    "heartbeat_window": 3.0,        # seconds celery.busy_slots listens: one heartbeat period (2 s) and a margin
    "concurrency": 0,               # slots per worker; 0: read from the workers Deployment's command, if there
    "acks_late": False,             # Studio's tasks ack when they start (CeleryTask.acks_late = False)
}

_REDIS_SCHEMES = ("redis", "rediss", "unix")
# Where a worker's heartbeats go on kombu's Redis transport, measured on a real worker (redis-cli PSUBSCRIBE '*'):
# Celery's event exchange `celeryev` is a fanout there (celery/events/event.py get_exchange), and kombu
# PUBLISHes a fanout message on "/<db>." + exchange + "/" + routing key (its fanout_prefix and fanout_patterns,
# both on by default; a global_keyprefix goes in front, as celery.key_prefix does here).
HEARTBEAT_CHANNEL = "/{db}.celeryev/worker.heartbeat"


def heartbeat_acl(db) -> tuple[str, str]:
    """What celery.busy_slots needs beyond READ_ACL: SUBSCRIBE on that one channel (no key, nothing written)."""
    return ("+subscribe", "&" + HEARTBEAT_CHANNEL.format(db=db))

# The reads of queue_depth/unacked/consumers (and redis.reachable's PING), on the app's queue keys only
# (CLIENT LIST reads no key).
READ_ACL = ("+ping", "+client|list", "+llen", "+lindex", "+hlen", "+hget", "+zcard", "+zrange", "~celery*", "~unacked*")
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
    from studiodoctor.backends.kubectl import command

    return command(ctx.profile, "", _namespace(ctx)).rstrip()


def _kubectl(ctx, which: str, cmd: str) -> str:
    container = " -c app" if which == "app" else ""
    return f"{_kube(ctx)} exec deploy/{_deployment(ctx, which)}{container} -- {cmd}"


def _ping_command(ctx) -> Command:
    return Command(_kubectl(ctx, "workers", "celery -A contentcuration inspect ping"), READ_ONLY,
                   "ask every worker for a pong, from inside the cluster")


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
    """Active and reserved (prefetched) tasks and pool sizes of the workers that answered ping (early return
    via ``limit``)."""

    def run():
        pinged = _ping(ctx, url)
        if "error" in pinged:
            return pinged
        names = sorted(pinged["workers"])
        if not names:
            return {"workers": {}, "active": {}, "reserved": {}, "stats": {}}
        wait = min(float(_setting(ctx, "ping_timeout")), max(0.1, ctx.timeout() - 0.5))
        try:
            with _broker_connection(ctx, url) as conn:
                insp = _celery_app(ctx, url).control.inspect(destination=names, timeout=wait, limit=len(names),
                                                             connection=conn)
                active = insp.active() or {}
                reserved = insp.reserved() or {}
                stats = insp.stats() or {}
                active, reserved, stats = (x if isinstance(x, dict) else {} for x in (active, reserved, stats))
        except Exception as exc:
            return {"error": exc}
        return {"workers": pinged["workers"], "active": active, "reserved": reserved, "stats": stats}

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


def _task_name(raw, header: str = "task") -> str | None:
    """The task name (or another header: ``id``) of a kombu message body (``headers.task``), or None."""
    if not raw:
        return None
    try:
        msg = json.loads(raw)
        if isinstance(msg, list):  # the unacked hash stores [message, exchange, routing_key]
            msg = msg[0]
        return (msg.get("headers") or {}).get(header)
    except (ValueError, TypeError, AttributeError, IndexError):
        return None


def _unacked_deliveries(ctx, url: str, limit: int = 200) -> tuple[list[tuple[bytes, float]], list]:
    """kombu's unacknowledged deliveries, the oldest ``limit``: ([(tag, score: when a worker took it)] from
    ``unacked_index``, each one's ``unacked`` entry ``[message, exchange, routing_key]`` or None), one
    ZRANGE and one pipeline of HGETs."""
    prefix = str(ctx.setting("key_prefix", ""))
    hkey = prefix + str(ctx.setting("unacked_key", UNACKED_KEY))
    zkey = prefix + str(ctx.setting("unacked_index_key", UNACKED_INDEX_KEY))
    client = _redis_client(ctx, url)
    scored = client.zrange(zkey, 0, limit - 1, withscores=True)
    if not scored:
        return [], []
    pipe = client.pipeline(transaction=False)
    for tag, _ in scored:
        pipe.hget(hkey, tag)
    return scored, pipe.execute()


def _unacked_task_ids(ctx, url: str, limit: int = 200) -> list[str | None]:
    """The task ids of kombu's unacknowledged deliveries (the oldest ``limit``): running tasks (with
    acks_late) and the ones a worker prefetched and holds behind its busy slots."""
    return [_task_name(raw, "id") for raw in _unacked_deliveries(ctx, url, limit)[1]]


def _fmt_age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _no_permission(exc: Exception, text: str) -> bool:
    """Redis refused a command for our ACL user (directly, or inside kombu's Lua script; a refused MULTI
    reaches redis-py as the EXEC that follows it)."""
    return (type(exc).__name__ == "NoPermissionError" or "NOPERM" in text
            or "can't run this command" in text or "no permissions to" in text or "EXEC without MULTI" in text)
