"""The broker's queues (read commands only): celery.queue_depth, celery.unacked (vs the visibility timeout)."""

from __future__ import annotations

import time

from studiodoctor.model import READ_ONLY, Command, ok, warn
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import (QUEUE_DEPTH, REDIS_REACHABLE, UNACKED, UNACKED_INDEX_KEY, UNACKED_KEY, _address,
                     _broker_url, _fmt_age, _kubectl, _no_broker, _not_redis, _ping_command, _queue_depths,
                     _redis_cli, _redis_client, _redis_failure, _setting, _task_name)


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
