"""redis.reachable (the staged connect: DNS, TCP, auth), redis.latency, redis.version (and RESP3)."""

from __future__ import annotations

import statistics
import time

from studiodoctor.backends import grants
from studiodoctor.model import READ_ONLY, Command, Reason, error, fail, guard, ok, unreachable, warn
from studiodoctor.probes.staged import Staged
from studiodoctor.backends.redis import Target, error_text, make_client
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import LATENCY, _MARGIN, REACHABLE, READ_ACL, VERSION, _client, _info, _num, _redis_call, _target


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
    conn = Staged("Redis", target.address, ev, commands=cmds, ctx=ctx)
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
