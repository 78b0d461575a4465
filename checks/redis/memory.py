"""Memory: redis.memory (used_memory vs maxmemory), redis.evictions."""

from __future__ import annotations

from studiodoctor.model import READ_ONLY, MUTATING, Command, Reason, error, fail, ok, warn
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import EVICTIONS, MEMORY, REACHABLE, _info, _num, _target


def _mib(n) -> str:
    n = float(n or 0)
    if n >= 1024 ** 3:
        return f"{n / 1024 ** 3:.2f} GiB"
    return f"{n / 1024 ** 2:.1f} MiB"


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
