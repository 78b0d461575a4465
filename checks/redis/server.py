"""The server's state: redis.rejected_connections, redis.persistence (background saves), redis.role
(replication)."""

from __future__ import annotations

import time

from studiodoctor.model import READ_ONLY, MUTATING, Command, Reason, error, fail, ok, warn
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import PERSISTENCE, REACHABLE, REJECTED_CONNECTIONS, ROLE, _info, _num, _target


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
