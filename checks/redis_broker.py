"""Layer `redis`: the Redis that carries Studio's Celery broker (DB 0) and Django cache (DB 1).

Read commands only (PING, INFO, HELLO): the checks pass when run as an ACL user limited to
``-@all +ping +info`` (``READ_ACL``; AUTH and HELLO need no grant). One client per run, RESP2 forced (Studio's production Redis is 4.x and
rejects the RESP3 ``HELLO 3`` handshake), no retries, every socket call bounded by the deadline.
"""

from __future__ import annotations

import statistics
import time

from studiodoctor import grants
from studiodoctor.model import READ_ONLY, MUTATING, Command, Reason, error, fail, guard, ok, unreachable, warn
from studiodoctor.staged import Staged
from studiodoctor.backends.redis import Target, error_text, make_client
from studiodoctor.registry import check

# imported by the runner before any check starts (see studiodoctor.runner.preload)
SDK_IMPORTS = ("redis",)

REACHABLE = "redis.reachable"
LATENCY = "redis.latency"
VERSION = "redis.version"
MEMORY = "redis.memory"
EVICTIONS = "redis.evictions"
REJECTED_CONNECTIONS = "redis.rejected_connections"
PERSISTENCE = "redis.persistence"
ROLE = "redis.role"

# What the checks send (measured: tests/safety/test_least_privilege.py): PING and INFO; AUTH/HELLO need no grant.
READ_ACL = ("+ping", "+info")

_CLIENT = "redis.client"
_INFO = "redis.info"
_MARGIN = 0.15          # seconds kept back from the deadline so that the check can still report


# --- helpers -----------------------------------------------------------------------------------

def _target(ctx) -> Target:
    return ctx.shared.get("redis.target", lambda: Target(str(ctx.config.get("url") or "")))


def _client(ctx):
    import weakref

    target = _target(ctx)

    def factory():
        client = make_client(target, ctx.timeout(margin=_MARGIN))
        weakref.finalize(ctx.shared, client.close)  # the run is over when its Shared is collected
        return client

    return ctx.shared.get(_CLIENT, factory)


def _num(ctx, key: str, default: float) -> float:
    value = ctx.setting(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"redis.{key} must be a number, got {value!r}")
    return float(value)


def _redis_call(ctx, func):
    """Run ``func()`` and map redis-py errors to results; returns (value, None) or (None, result)."""
    import redis

    target = _target(ctx)
    try:
        return func(), None
    except redis.exceptions.NoPermissionError as exc:
        lacks, grant = grants.redis_nopermission(target.user, str(exc), READ_ACL)
        return None, error(f"{lacks}: {grant} (Redis at {target.address}: {target.scrub(error_text(exc))})",
                           reason=Reason.FORBIDDEN, evidence={"address": target.address, "user": target.user},
                           hint=f"{grant}; the redis layer needs only: ACL SETUSER {target.user} {' '.join(READ_ACL)}")
    except redis.exceptions.TimeoutError as exc:
        return None, unreachable("Redis", target.address, target.scrub(error_text(exc)), timed_out=True)
    except redis.exceptions.ConnectionError as exc:
        return None, unreachable("Redis", target.address, target.scrub(error_text(exc)))
    except redis.exceptions.RedisError as exc:
        return None, error(f"Redis at {target.address} answered with an error: {target.scrub(error_text(exc))}",
                           evidence={"address": target.address})


# INFO fields the checks read as numbers, and those every Redis INFO has.
_INFO_NUMBERS = ("used_memory", "maxmemory", "evicted_keys", "uptime_in_seconds", "rejected_connections",
                 "rdb_last_bgsave_time_sec", "aof_enabled", "rdb_last_save_time")
_INFO_REQUIRED = ("used_memory", "evicted_keys", "rejected_connections")


def unreadable_info(info) -> str:
    """Why an INFO answer cannot be read by the checks ("" when it can): a pure function, fuzzed."""
    if not isinstance(info, dict):
        return f"INFO answered a {type(info).__name__}, not fields"
    for key in _INFO_REQUIRED:
        if key not in info:
            return f"INFO has no {key} field"
    for key in _INFO_NUMBERS:
        value = info.get(key, 0)
        try:
            if isinstance(value, bool) or value is None:
                raise TypeError
            int(value)
        except (TypeError, ValueError, OverflowError):
            return f"INFO field {key}={str(value)[:40]!r} is not a number"
    oom = info.get("errorstat_OOM")
    if isinstance(oom, dict):
        try:
            int(oom.get("count", 0))
        except (TypeError, ValueError, OverflowError):
            return "INFO errorstat_OOM has no numeric count"
    return ""


def _read_info(ctx):
    info, res = _redis_call(ctx, lambda: _client(ctx).info())
    if res is None and (why := unreadable_info(info)):
        target = _target(ctx)
        return None, error(f"Redis at {target.address}: {why}: not an answer we can read",
                           evidence={"address": target.address})
    return info, res


def _info(ctx):
    """INFO (default sections) once per run, shared by the checks; returns (dict, None) or (None, result)."""
    import copy

    info, res = ctx.shared.get(_INFO, lambda: _read_info(ctx))
    return info, (copy.deepcopy(res) if res is not None else None)  # the runner stamps each result


def _mib(n) -> str:
    n = float(n or 0)
    if n >= 1024 ** 3:
        return f"{n / 1024 ** 3:.2f} GiB"
    return f"{n / 1024 ** 2:.1f} MiB"


# --- checks ------------------------------------------------------------------------------------

@check(REACHABLE, title="Redis answers (DNS, TCP, auth)", needs=("redis.url",),
       permissions=("AUTH", "PING"), smoke=True)
@guard
def check_reachable(ctx):
    """Redis at `redis.url` resolves, accepts TCP and accepts our credentials (PING), stage by stage.

    Studio's Celery broker (DB 0) and Django cache (DB 1) live in this Redis: when it is unreachable,
    publishing and other async tasks never start and cached pages fail. The failing stage is named:
    DNS (the name does not resolve from here), TCP (refused: Redis down or wrong port; timed out:
    firewall or a dead port-forward), TLS (rediss://), auth (wrong password or ACL user; Studio reads
    the password from the `redis-password` secret). The client forces RESP2 and never retries.
    Every other `redis.*` check depends on this one."""
    import redis

    try:
        target = _target(ctx)
    except ValueError as exc:
        return error(f"redis.url is not a usable Redis URL: {exc}", reason=Reason.NOT_CONFIGURED,
                     hint="use redis://[user:password@]host:port/db")
    ev = {"address": target.address, "user": target.user, "db": target.db, "stages": {}}
    cmds = [Command(target.cli("PING"), READ_ONLY, "asks for the password")]
    conn = Staged("Redis", target.address, ev, commands=cmds)
    if not target.path:
        addrs = conn.dns(target.host, target.port, ctx.timeout(margin=_MARGIN),
                         hint="check the host name in redis.url and the resolver used here")
        conn.tcp(addrs[0], target.port, ctx.timeout(margin=_MARGIN),
                 timeout_hint="a firewall drops the packets or the port-forward is dead",
                 refused_hint="Redis is down or listens elsewhere; on the cluster: kubectl get pods "
                              "for the redis StatefulSet/Deployment and its Service port 6379")
    client = _client(ctx)
    try:
        with conn.stage("auth", timing="auth_ping"):
            client.ping()
    except redis.exceptions.AuthenticationError as exc:
        ev["stage"] = "auth"
        return error(f"Redis at {target.address} rejected our credentials (stage auth, user {target.user}): "
                     f"{target.scrub(error_text(exc))}", evidence=ev, reason=Reason.AUTH, commands=cmds,
                     hint="check the password (and ACL user) in redis.url; Studio's comes from the "
                          "`redis-password` secret")
    except redis.exceptions.NoPermissionError as exc:
        ev["stage"] = "auth"
        lacks, grant = grants.redis_nopermission(target.user, str(exc), READ_ACL)
        return error(f"{lacks}: {grant} (Redis at {target.address} refused PING: {target.scrub(error_text(exc))})",
                     evidence=ev, reason=Reason.FORBIDDEN,
                     hint=f"{grant}; the redis layer needs only: ACL SETUSER {target.user} {' '.join(READ_ACL)}")
    except redis.exceptions.ResponseError as exc:
        text = target.scrub(error_text(exc))
        ev["stage"] = "auth" if any(w in text.upper() for w in ("AUTH", "PASS")) else "handshake"
        return error(f"Redis at {target.address} refused the handshake (stage {ev['stage']}): {text}",
                     evidence=ev, reason=Reason.AUTH if ev["stage"] == "auth" else Reason.UNEXPECTED)
    except redis.exceptions.TimeoutError as exc:
        ev["stage"] = "tls" if target.tls else "handshake"
        return unreachable("Redis", target.address,
                           f"TCP accepted but no answer to AUTH/PING ({target.scrub(error_text(exc))})",
                           timed_out=True, evidence=ev, commands=cmds,
                           hint="something accepts connections on this port but does not speak Redis, "
                                "or Redis is blocked (a long-running command, a stuck fork)")
    except redis.exceptions.ConnectionError as exc:
        text = target.scrub(error_text(exc))
        ev["stage"] = "tls" if (target.tls and "SSL" in text.upper()) else ("socket" if target.path else "handshake")
        return unreachable("Redis", target.address, text, evidence=ev, commands=cmds)
    timing = conn.done()
    return ok(f"Redis at {target.address} answered PING as {target.user} ({timing})", evidence=ev)


@check(LATENCY, title="Redis PING latency", needs=("redis.url",), depends_on=(REACHABLE,),
       permissions=("PING",), smoke=True, metrics=("median_ms;warn_ms;fail_ms;0", "max_ms;;;0"))
def check_latency(ctx):
    """Round-trip time of PING (median of `redis.latency_samples`, default 5).

    Warn at `redis.latency_warn_ms` (default 100), fail at `redis.latency_fail_ms` (default 1000).
    Every Celery publish and cache read pays this round trip; a slow Redis makes Studio's pages slow
    and publishes lag. Causes: a busy or swapping Redis (see redis.memory), a long blocking command
    (SLOWLOG GET), or the network path from here (port-forwards add a few ms)."""
    target = _target(ctx)
    try:
        samples_n = max(1, int(_num(ctx, "latency_samples", 5)))
        warn_ms, fail_ms = _num(ctx, "latency_warn_ms", 100), _num(ctx, "latency_fail_ms", 1000)
    except ValueError as exc:
        return error(str(exc), reason=Reason.NOT_CONFIGURED)
    client = _client(ctx)
    samples = []
    for _ in range(samples_n):
        if samples and ctx.remaining() < 2 * _MARGIN + max(samples) / 1000:
            break
        t0 = time.perf_counter()
        _, res = _redis_call(ctx, client.ping)
        if res is not None:
            return res
        samples.append((time.perf_counter() - t0) * 1000)
    med, worst = statistics.median(samples), max(samples)
    ev = {"address": target.address, "median_ms": round(med, 2), "max_ms": round(worst, 2),
          "samples": len(samples), "warn_ms": warn_ms, "fail_ms": fail_ms}
    text = f"PING median {med:.2f} ms (max {worst:.2f} ms, {len(samples)} samples)"
    cmds = [Command(target.cli("--latency"), READ_ONLY), Command(target.cli("SLOWLOG", "GET", "10"), READ_ONLY,
                                                                 "needs SLOWLOG permission")]
    if med >= fail_ms:
        return fail(f"{text} >= {fail_ms:g} ms", evidence=ev, commands=cmds,
                    hint="Redis is overloaded or the path from here is slow: check SLOWLOG and CPU")
    if med >= warn_ms:
        return warn(f"{text} >= {warn_ms:g} ms", evidence=ev, commands=cmds,
                    hint="Redis answers slowly: check SLOWLOG, memory (swap) and the network path")
    return ok(text, evidence=ev)


def _client_default_protocol() -> int:
    try:
        import redis.connection

        value = getattr(redis.connection, "DEFAULT_RESP_VERSION", None)
        if value is None:
            import redis.utils

            value = getattr(redis.utils, "DEFAULT_RESP_VERSION", 2)
        return int(value or 2)
    except Exception:  # noqa: BLE001
        return 2


def _probe_resp3(ctx, target: Target):
    """Send the RESP3 handshake (HELLO 3) on a throw-away connection, as a RESP3 client would.

    Returns (True|False|None, detail): None when the probe could not decide."""
    import redis

    probe = make_client(target, ctx.timeout(3.0, margin=_MARGIN), protocol=3)
    try:
        probe.ping()
        return True, "HELLO 3 accepted"
    except redis.exceptions.NoPermissionError as exc:
        return None, f"HELLO not permitted for {target.user}: {target.scrub(error_text(exc))}"
    except redis.exceptions.ResponseError as exc:
        text = target.scrub(error_text(exc))
        if "HELLO" in text.upper() or "UNKNOWN COMMAND" in text.upper() or "PROTOCOL" in text.upper():
            return False, f"HELLO 3 rejected: {text}"
        return None, f"HELLO 3 answered with an error: {text}"
    except redis.exceptions.RedisError as exc:
        return None, f"RESP3 probe failed: {target.scrub(error_text(exc))}"
    finally:
        try:
            probe.close()
        except Exception:  # noqa: BLE001
            pass


def _version_tuple(text: str) -> tuple[int, ...]:
    out = []
    for part in str(text).split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits or 0))
    return tuple(out)


@check(VERSION, title="Redis version and RESP3 support", needs=("redis.url",), depends_on=(REACHABLE,),
       permissions=("INFO", "HELLO"))
def check_version(ctx):
    """Server version (INFO server) and whether it accepts the RESP3 handshake `HELLO 3`.

    Studio's production Redis is 4.x, which has no HELLO: redis-py >= 8 defaults to RESP3 and its
    handshake fails there (Studio commit ea3ca3497 forces `redis.connection.DEFAULT_RESP_VERSION = 2`).
    The check probes HELLO 3 on a throw-away connection (it falls back to the version when HELLO is
    not permitted: RESP3 exists since Redis 6.0). It warns when the server lacks RESP3 while the
    client library here defaults to RESP3; set `redis.client_protocol = 2` when every client of this
    Redis already forces RESP2, and the check then reports it as ok with the evidence."""
    import redis

    target = _target(ctx)
    info, res = _info(ctx)
    if res is not None:
        return res
    version = str(info.get("redis_version", "?"))
    resp3, detail = _probe_resp3(ctx, target)
    inferred = False
    if resp3 is None and version != "?":
        resp3, inferred = _version_tuple(version) >= (6,), True
    default_proto = _client_default_protocol()
    client_proto = ctx.setting("client_protocol", default_proto)
    try:
        client_proto = int(client_proto)
    except (TypeError, ValueError):
        return error(f"redis.client_protocol must be 2 or 3, got {client_proto!r}", reason=Reason.NOT_CONFIGURED)
    ev = {"address": target.address, "redis_version": version, "redis_mode": info.get("redis_mode", ""),
          "resp3_supported": resp3, "resp3_probe": detail, "resp3_inferred_from_version": inferred,
          "client_protocol": client_proto, "client_default_protocol": default_proto,
          "redis_py_version": getattr(redis, "__version__", "?")}
    how = " (inferred from the version)" if inferred else ""
    if resp3 is None:
        return error(f"Redis {version} at {target.address}: could not tell whether RESP3 is supported: {detail}",
                     evidence=ev)
    if resp3:
        return ok(f"Redis {version} at {target.address}, RESP3 supported{how}", evidence=ev)
    if client_proto >= 3:
        return warn(f"Redis {version} at {target.address} does not support RESP3{how} ({detail}), while "
                    f"redis-py {ev['redis_py_version']} defaults to RESP3: clients must force RESP2",
                    evidence=ev,
                    hint="Studio sets redis.connection.DEFAULT_RESP_VERSION = 2 (commit ea3ca3497); any other "
                         "client (kombu/celery tools, flower, scripts) needs protocol=2. If every client "
                         "already forces RESP2, set redis.client_protocol = 2 in the profile. Long term: "
                         "upgrade Redis to >= 6.",
                    commands=[Command(target.cli("INFO", "server"), READ_ONLY)])
    return ok(f"Redis {version} at {target.address}: RESP2 only{how}; clients are configured for RESP2 "
              f"(redis.client_protocol = {client_proto})", evidence=ev)


@check(MEMORY, title="Redis memory vs maxmemory", needs=("redis.url",), depends_on=(REACHABLE,),
       permissions=("INFO",), smoke=True,
       metrics=("percent;warn_percent;fail_percent;0;100", "used_memory;;;0;maxmemory"))
def check_memory(ctx):
    """used_memory against maxmemory (INFO memory): warn >= `redis.memory_warn_percent` (80),
    fail >= `redis.memory_fail_percent` (95); maxmemory 0 means no limit.

    Near the limit Redis either evicts keys (allkeys-*/volatile-* policies: Celery messages in DB 0
    can be lost) or refuses writes with OOM (noeviction: publishes fail). Find the big keys
    (`redis-cli --bigkeys`), drain or purge stuck queues, or raise maxmemory."""
    target = _target(ctx)
    try:
        warn_pct, fail_pct = _num(ctx, "memory_warn_percent", 80), _num(ctx, "memory_fail_percent", 95)
    except ValueError as exc:
        return error(str(exc), reason=Reason.NOT_CONFIGURED)
    info, res = _info(ctx)
    if res is not None:
        return res
    if "used_memory" not in info:
        return error("INFO has no used_memory field: cannot compare memory", evidence={"address": target.address})
    used = int(info["used_memory"])
    limit = int(info.get("maxmemory", 0) or 0)
    policy = info.get("maxmemory_policy", "?")
    ev = {"address": target.address, "used_memory": used, "used_memory_human": _mib(used), "maxmemory": limit,
          "maxmemory_human": _mib(limit) if limit else "no limit", "maxmemory_policy": policy,
          "used_memory_peak": info.get("used_memory_peak"), "mem_fragmentation_ratio": info.get("mem_fragmentation_ratio"),
          "warn_percent": warn_pct, "fail_percent": fail_pct}
    if isinstance(info.get("errorstat_OOM"), dict):   # INFO errorstats (Redis >= 6.2): writes refused with OOM
        ev["oom_errors"] = int(info["errorstat_OOM"].get("count", 0))
    if not limit:
        ev["total_system_memory"] = info.get("total_system_memory")
        return ok(f"{_mib(used)} used, no maxmemory limit (bounded by the host or container memory)", evidence=ev)
    pct = used * 100.0 / limit
    ev["percent"] = round(pct, 1)
    text = f"{_mib(used)} used of maxmemory {_mib(limit)} ({pct:.1f} %, policy {policy})"
    effect = ("writes fail with OOM (noeviction)" if policy == "noeviction"
              else f"keys are evicted ({policy}): Celery messages in DB 0 can be lost")
    cmds = [Command(target.cli("INFO", "memory"), READ_ONLY), Command(target.cli("--bigkeys"), READ_ONLY),
            Command(target.cli("CONFIG", "SET", "maxmemory", "<bytes>"), MUTATING, "raise the limit")]
    if pct >= fail_pct:
        return fail(f"{text} >= {fail_pct:g} %: {effect}", evidence=ev, commands=cmds,
                    hint="find what grew (--bigkeys; LLEN celery for a stuck queue), purge it or raise maxmemory")
    if pct >= warn_pct:
        return warn(f"{text} >= {warn_pct:g} %", evidence=ev, commands=cmds,
                    hint=f"close to the limit; then {effect}")
    return ok(text, evidence=ev)


@check(EVICTIONS, title="Redis evicted keys", needs=("redis.url",), depends_on=(REACHABLE,),
       permissions=("INFO",))
def check_evictions(ctx):
    """Keys evicted since Redis started (INFO stats evicted_keys); warn at `redis.evictions_warn` (1).

    Studio's Celery broker lives in DB 0: an evicted key can be a queued task, the `unacked` hash or
    a kombu binding, so publishes silently vanish. A broker needs `maxmemory-policy noeviction` (or
    volatile-*) and enough maxmemory."""
    target = _target(ctx)
    try:
        threshold = _num(ctx, "evictions_warn", 1)
    except ValueError as exc:
        return error(str(exc), reason=Reason.NOT_CONFIGURED)
    info, res = _info(ctx)
    if res is not None:
        return res
    if "evicted_keys" not in info:
        return error("INFO has no evicted_keys field", evidence={"address": target.address})
    evicted = int(info["evicted_keys"])
    ev = {"address": target.address, "evicted_keys": evicted, "maxmemory_policy": info.get("maxmemory_policy"),
          "expired_keys": info.get("expired_keys"), "uptime_in_seconds": info.get("uptime_in_seconds")}
    since = f"since start {int(info.get('uptime_in_seconds', 0)) // 3600} h ago"
    if evicted >= threshold and evicted > 0:
        return warn(f"{evicted} keys evicted {since} (policy {info.get('maxmemory_policy')})", evidence=ev,
                    hint="Redis ran out of maxmemory and dropped keys; queued Celery tasks may be lost. "
                         "Use maxmemory-policy noeviction for the broker and raise maxmemory",
                    commands=[Command(target.cli("INFO", "stats"), READ_ONLY),
                              Command(target.cli("CONFIG", "SET", "maxmemory-policy", "noeviction"), MUTATING)])
    return ok(f"{evicted} keys evicted {since}", evidence=ev)


@check(REJECTED_CONNECTIONS, title="Redis rejected connections", needs=("redis.url",), depends_on=(REACHABLE,),
       permissions=("INFO",))
def check_rejected_connections(ctx):
    """Connections refused because maxclients was reached (INFO stats rejected_connections);
    warn at `redis.rejected_connections_warn` (1).

    When Redis rejects connections, Django cache calls and Celery publishes fail with
    "max number of clients reached". Look for a client that leaks connections (CLIENT LIST, needs
    admin rights) or raise maxclients."""
    target = _target(ctx)
    try:
        threshold = _num(ctx, "rejected_connections_warn", 1)
    except ValueError as exc:
        return error(str(exc), reason=Reason.NOT_CONFIGURED)
    info, res = _info(ctx)
    if res is not None:
        return res
    if "rejected_connections" not in info:
        return error("INFO has no rejected_connections field", evidence={"address": target.address})
    rejected = int(info["rejected_connections"])
    ev = {"address": target.address, "rejected_connections": rejected,
          "connected_clients": info.get("connected_clients"), "maxclients": info.get("maxclients"),
          "blocked_clients": info.get("blocked_clients"), "total_connections_received": info.get("total_connections_received")}
    clients = f"{info.get('connected_clients', '?')} clients connected" + (
        f" of maxclients {info['maxclients']}" if info.get("maxclients") else "")
    if rejected >= threshold and rejected > 0:
        return warn(f"{rejected} connections rejected since start (maxclients reached); {clients}", evidence=ev,
                    hint="a client leaks connections or maxclients is too low",
                    commands=[Command(target.cli("INFO", "clients"), READ_ONLY),
                              Command(target.cli("CLIENT", "LIST"), READ_ONLY, "needs admin rights")])
    return ok(f"no rejected connections; {clients}", evidence=ev)


@check(PERSISTENCE, title="Redis background save status", needs=("redis.url",), depends_on=(REACHABLE,),
       permissions=("INFO",))
def check_persistence(ctx):
    """Status of the last background save (RDB) and AOF writes (INFO persistence).

    A failed BGSAVE (disk full, unwritable dir, fork failed for lack of memory) loses the broker's
    state on restart, and with save points configured and `stop-writes-on-bgsave-error yes` (the
    default) Redis refuses every write with MISCONF: Celery publishes and cache writes fail."""
    target = _target(ctx)
    info, res = _info(ctx)
    if res is not None:
        return res
    if "rdb_last_bgsave_status" not in info:
        return error("INFO has no rdb_last_bgsave_status field", evidence={"address": target.address})
    keys = ("rdb_last_bgsave_status", "rdb_last_save_time", "rdb_changes_since_last_save", "rdb_bgsave_in_progress",
            "rdb_last_bgsave_time_sec", "aof_enabled", "aof_last_bgrewrite_status", "aof_last_write_status",
            "loading")
    ev = {"address": target.address, **{k: info.get(k) for k in keys if k in info}}
    bad = [k for k in ("rdb_last_bgsave_status", "aof_last_bgrewrite_status", "aof_last_write_status")
           if str(info.get(k, "ok")) != "ok"]
    if bad:
        return fail(f"Redis at {target.address}: " + ", ".join(f"{k}:{info[k]}" for k in bad), evidence=ev,
                    hint="look at the Redis log for the save error (disk full, unwritable dir, fork: cannot "
                         "allocate memory); with save points set Redis refuses writes (MISCONF) until a save works",
                    commands=[Command(target.cli("INFO", "persistence"), READ_ONLY),
                              Command(target.cli("BGSAVE"), MUTATING, "retry the save once the cause is fixed")])
    if int(info.get("rdb_last_bgsave_time_sec", -1)) < 0 and not int(info.get("aof_enabled", 0)):
        age = ""
        what = "no background save since start (RDB snapshots may be disabled); AOF off"
    else:
        age = f" {max(0, int(time.time()) - int(info.get('rdb_last_save_time', time.time())))} s ago"
        what = f"last save ok{age}" + (", AOF on and ok" if int(info.get("aof_enabled", 0)) else "")
    return ok(f"{what}; {info.get('rdb_changes_since_last_save', '?')} changes since", evidence=ev)


@check(ROLE, title="Redis replication role", needs=("redis.url",), depends_on=(REACHABLE,),
       permissions=("INFO",))
def check_role(ctx):
    """Replication role (INFO replication) against `redis.expected_role` (master, replica or any;
    default master).

    Studio writes to this Redis (Celery publishes, cache): a replica answers every write with
    READONLY. For a replica, a master link that is down means stale data. After a failover, point
    the app (CELERY_BROKER_ENDPOINT) at the new master."""
    target = _target(ctx)
    expected = str(ctx.setting("expected_role", "master")).lower()
    expected = {"slave": "replica", "primary": "master"}.get(expected, expected)
    if expected not in ("master", "replica", "any"):
        return error(f"redis.expected_role must be master, replica or any, got {expected!r}",
                     reason=Reason.NOT_CONFIGURED)
    info, res = _info(ctx)
    if res is not None:
        return res
    raw = str(info.get("role", "?"))
    role = "replica" if raw == "slave" else raw
    ev = {"address": target.address, "role": role, "expected_role": expected,
          "connected_slaves": info.get("connected_slaves")}
    replicas = [v for k, v in info.items() if k.startswith("slave") and k[5:].isdigit() and isinstance(v, dict)]
    if replicas:
        ev["replicas"] = [{"ip": r.get("ip"), "port": r.get("port"), "state": r.get("state"), "lag": r.get("lag")}
                          for r in replicas]
    if role == "replica":
        for k in ("master_host", "master_port", "master_link_status", "master_last_io_seconds_ago",
                  "master_sync_in_progress"):
            if k in info:
                ev[k] = info[k]
    cmds = [Command(target.cli("INFO", "replication"), READ_ONLY)]
    if role == "replica":
        master = f"{info.get('master_host')}:{info.get('master_port')}"
        link = info.get("master_link_status", "?")
        if expected == "master":
            return fail(f"Redis at {target.address} is a read-only replica of {master} (link {link}): "
                        "Celery publishes and cache writes fail with READONLY", evidence=ev, commands=cmds,
                        hint="point redis.url and the app's CELERY_BROKER_ENDPOINT at the master, or promote "
                             "this one (REPLICAOF NO ONE) if the master is gone")
        if link != "up":
            return fail(f"replica of {master} with master link {link}", evidence=ev, commands=cmds,
                        hint="the replica cannot reach its master: data here is stale")
        return ok(f"replica of {master}, link up", evidence=ev)
    if role != "master":
        return error(f"INFO replication reported role {raw!r}", evidence=ev)
    if expected == "replica":
        return fail(f"Redis at {target.address} is a master, expected a replica", evidence=ev, commands=cmds)
    return ok(f"master with {info.get('connected_slaves', 0)} connected replicas", evidence=ev)
