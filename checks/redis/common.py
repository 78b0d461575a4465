"""What the redis checks share: the check ids, the target of ``redis.url`` and the run's client
(``studiodoctor.backends.redis``), read commands mapped to results, and INFO read once per run."""

from __future__ import annotations

from studiodoctor.backends import grants
from studiodoctor.model import Reason, error, unreachable
from studiodoctor.backends.redis import Target, error_text, make_client


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

    import time

    target = _target(ctx)
    t0 = time.perf_counter()
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
    finally:  # the command's round trip (the first one connects): the check's network time
        add = getattr(ctx, "add_network", None)
        if add is not None:
            add(time.perf_counter() - t0)


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
