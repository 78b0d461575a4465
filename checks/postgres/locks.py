"""postgres.locks: lock requests not granted (pg_locks), who holds them and what the holder is doing
(pg_blocking_pids, pg_stat_activity; needs pg_monitor)."""

from __future__ import annotations

from studiodoctor.backends import postgres as pg
from studiodoctor.model import MUTATING, READ_ONLY, Command, Reason, error, fail, ok, warn
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import LOCKS, REACHABLE, _db_call, _num, _query, _target
from .sessions import _query_shape

IDLE_IN_TRANSACTION_STATES = ("idle in transaction", "idle in transaction (aborted)")

_HOLDERS = ("SELECT a.pid, a.state, a.usename, a.application_name, a.client_addr::text AS client, "
            "extract(epoch FROM now() - a.xact_start)::float AS transaction_s, "
            "extract(epoch FROM now() - a.state_change)::float AS state_s, left(a.query, %s) AS query, "
            "coalesce((SELECT array_agg(DISTINCT l.mode || ' on ' || l.relation::regclass::text) FROM pg_locks l "
            "WHERE l.pid = a.pid AND l.granted AND l.relation = ANY(%s::oid[])), '{}') AS holds "
            "FROM pg_stat_activity a WHERE a.pid = ANY(%s)")


def _waits(ctx, chars: int):
    session = ctx.shared.peek(pg.SESSION)
    since = "coalesce(l.waitstart, a.query_start)" if session and session.server_version >= 140000 else "a.query_start"
    sql = ("SELECT l.pid, l.locktype, l.mode, l.relation::oid AS relid, l.relation::regclass::text AS relation, "
           f"a.usename, a.datname, extract(epoch FROM now() - {since})::float AS seconds, "
           "pg_blocking_pids(l.pid) AS blocked_by, left(a.query, %s) AS query FROM pg_locks l "
           "JOIN pg_stat_activity a ON a.pid = l.pid WHERE NOT l.granted ORDER BY seconds DESC NULLS LAST LIMIT 50")
    return _db_call(ctx, lambda: _query(ctx, sql, (chars,)))


def _holders(ctx, rows, chars: int):
    """What each blocking session is doing: state, how long, its last query (literals masked), the locks it
    holds on the relations others wait for."""
    pids = sorted({p for r in rows for p in (r["blocked_by"] or [])})
    if not pids:
        return [], None
    relids = sorted({int(r["relid"]) for r in rows if r["relid"] is not None})
    found, res = _db_call(ctx, lambda: _query(ctx, _HOLDERS, (chars, relids, pids)))
    if res is not None:
        return None, res
    return [{"pid": h["pid"], "state": h["state"], "user": h["usename"], "application": h["application_name"],
             "client": h["client"],
             "transaction_s": None if h["transaction_s"] is None else round(float(h["transaction_s"]), 1),
             "in_state_s": None if h["state_s"] is None else round(float(h["state_s"]), 1),
             "holds": sorted(h["holds"] or []), "query": _query_shape(h["query"])} for h in found], None


@check(LOCKS, title="PostgreSQL waiting locks", needs=("postgres.dsn",), depends_on=(REACHABLE,),
       permissions=("pg_monitor",))
def check_locks(ctx):
    """Lock requests not granted (pg_locks), with who blocks them (pg_blocking_pids) and what the blocker
    is doing. Sessions waiting behind a holder that is idle in transaction are a `fail` at any age: the
    holder does nothing and will not commit by itself, so every request touching that table hangs until
    the session ends (a migration or a shell left in a transaction, a task that died mid-transaction).
    Waits behind a working holder are only slow: `warn` when one has waited longer than
    `postgres.lock_wait_after` seconds (10).

    The holder is named with its pid, state, age, the locks it holds on the waited-for tables and its
    last query (string literals masked); the waiters with their pid, mode, table and wait. Requests
    waiting on a lock hang until the holder commits: the app's `/healthz` (it reads
    `contentcuration_channel`) times out, pods go unready, nginx and the edge give up (504/524)."""
    target = _target(ctx)
    try:
        threshold = _num(ctx, "lock_wait_after", 10)
        chars = int(_num(ctx, "query_max_chars", 200))
    except ValueError as exc:
        return error(str(exc), reason=Reason.NOT_CONFIGURED)
    rows, res = _waits(ctx, chars)
    if res is not None:
        return res
    waits = [{"pid": r["pid"], "locktype": r["locktype"], "mode": r["mode"], "relation": r["relation"],
              "user": r["usename"], "database": r["datname"],
              "waiting_s": None if r["seconds"] is None else round(float(r["seconds"]), 1),
              "blocked_by": list(r["blocked_by"] or []), "query": _query_shape(r["query"])} for r in rows]
    holders, res = _holders(ctx, rows, chars)
    if res is not None:
        return res
    long_waits = [w for w in waits if w["waiting_s"] is not None and w["waiting_s"] > threshold]
    unknown = [w for w in waits if w["waiting_s"] is None]
    ev = {"target": target.label, "waiting": len(waits), "threshold_s": threshold, "locks": waits[:10],
          "holders": holders[:5]}
    idle = {h["pid"]: h for h in holders if h["state"] in IDLE_IN_TRANSACTION_STATES}
    behind_idle = [w for w in waits if set(w["blocked_by"]) & set(idle)]
    if behind_idle:
        return _behind_idle(target, behind_idle, idle, ev)
    if not long_waits and unknown:
        return error(f"{len(unknown)} lock requests are waiting and role {target.user or '(default)'} cannot see "
                     "for how long", evidence=ev, reason=Reason.FORBIDDEN,
                     hint=f"GRANT pg_monitor TO {target.user or '<role>'}")
    if not long_waits:
        extra = f" ({len(waits)} shorter waits behind working sessions)" if waits else ""
        return ok(f"no lock waited longer than {threshold:g} s{extra}", evidence=ev)
    blockers = sorted({p for w in long_waits for p in w["blocked_by"]})
    ev["blockers"] = blockers
    w = long_waits[0]
    what = f"{w['mode']} on {w['relation']}" if w["relation"] else w["mode"]
    return warn(f"{len(long_waits)} lock requests waiting longer than {threshold:g} s; pid {w['pid']} waits "
                f"{w['waiting_s']:.0f} s for {what}, blocked by pid {', '.join(map(str, w['blocked_by'])) or '?'}",
                evidence=ev, commands=_commands(target, blockers),
                hint="find what the blocking pid is doing (often idle in transaction) and end it if its client "
                     "is gone")


def _behind_idle(target, waits: list[dict], idle: dict, ev: dict):
    """Sessions queued behind a holder that sits idle in its transaction: broken now, whatever the age."""
    holder = idle[next(p for p in waits[0]["blocked_by"] if p in idle)]
    ev["blockers"] = sorted({p for w in waits for p in w["blocked_by"] if p in idle})
    ev["waiters"] = [{k: w[k] for k in ("pid", "mode", "relation", "waiting_s", "query")} for w in waits[:10]]
    tables = sorted({w["relation"] for w in waits if w["relation"]})
    age = holder["transaction_s"]
    holds = f" holding {', '.join(holder['holds'])}" if holder["holds"] else ""
    return fail(f"{len(waits)} session(s) wait on {', '.join(tables) or 'a lock'} behind pid {holder['pid']}, "
                f"{holder['state']} for {holder['in_state_s'] or 0:.0f} s (transaction open "
                f"{age or 0:.0f} s){holds}; its last query: {(holder['query'] or '?')[:80]}",
                evidence=ev, commands=_commands(target, ev["blockers"]),
                hint="the holder does nothing and will not commit by itself: find its client (application, "
                     "client address) and end the session (pg_terminate_backend rolls its transaction back); set "
                     "idle_in_transaction_session_timeout so a forgotten transaction cannot hold tables")


def _commands(target, blockers: list[int]) -> list[Command]:
    cmds = [Command(target.psql("SELECT pid, usename, application_name, state, now() - xact_start AS age, query "
                                f"FROM pg_stat_activity WHERE pid IN ({', '.join(map(str, blockers)) or 'NULL'})"),
                    READ_ONLY, "what the blockers are doing")]
    if blockers:
        cmds.append(Command(target.psql(f"SELECT pg_terminate_backend({blockers[0]})"), MUTATING,
                            "ends the blocking session (rolls its transaction back)"))
    return cmds
