"""What the server's sessions do: postgres.connections, postgres.long_queries, postgres.idle_in_transaction
(pg_stat_activity; needs pg_monitor). Waiting locks are in ``locks``."""

from __future__ import annotations

import re

from studiodoctor.backends import postgres as pg
from studiodoctor.model import MUTATING, READ_ONLY, Command, Reason, error, fail, ok, warn
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import CONNECTIONS, IDLE_IN_TRANSACTION, LONG_QUERIES, REACHABLE, _db_call, _num, _target


# how many other sessions our role cannot inspect (no pg_read_all_stats / pg_monitor): rows we may not
# inspect come back with every detail NULL
_HIDDEN = ("SELECT count(*) AS hidden FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
           "AND backend_type IS NULL", None)


def _with_hidden(ctx, *statements) -> tuple[list | None, int, object]:
    """(rows of each statement, hidden sessions, None) or (None, 0, the result of a failure): the count
    of sessions we cannot see and the statements in one round trip."""
    got, res = _db_call(ctx, lambda: pg.queries(ctx, [_HIDDEN, *statements]))
    if res is not None:
        return None, 0, res
    return got[1:], int(got[0][0]["hidden"]), None


def _cannot_look(ctx, hidden: int, what: str):
    target = _target(ctx)
    return error(f"could not look at {what}: role {target.user or '(default)'} cannot see the state of "
                 f"{hidden} other backends", reason=Reason.FORBIDDEN,
                 evidence={"target": target.label, "hidden_sessions": hidden},
                 hint=f"GRANT pg_monitor TO {target.user or '<role>'} (or pg_read_all_stats)")


def _pct_setting(ctx, key, default):
    return _num(ctx, key, default)


@check(CONNECTIONS, title="PostgreSQL connections vs max_connections", needs=("postgres.dsn",),
       depends_on=(REACHABLE,), permissions=("pg_monitor",), smoke=True,
       metrics=("percent;warn_percent;fail_percent;0;100", "in_use;;;0;max_connections"))
def check_connections(ctx):
    """Client connections in use (pg_stat_activity) against `max_connections`: warn >=
    `postgres.connections_warn_percent` (80), fail >= `postgres.connections_fail_percent` (95).

    Studio's Django opens a connection per request (no CONN_MAX_AGE) and Celery workers hold their
    own; when the server runs out, requests fail with "too many clients already" (non-superusers
    already fail when only `superuser_reserved_connections` remain). Look for leaked or idle sessions
    by user and application."""
    target = _target(ctx)
    try:
        warn_pct, fail_pct = _num(ctx, "connections_warn_percent", 80), _num(ctx, "connections_fail_percent", 95)
    except ValueError as exc:
        return error(str(exc), reason=Reason.NOT_CONFIGURED)
    session = ctx.shared.peek(pg.SESSION)
    # the doctor's pool counts as one session
    spare = session.spare_pids(ctx.timeout(margin=pg.MARGIN)) if session is not None else []
    got, hidden, res = _with_hidden(
        ctx, ("WITH activity AS (SELECT * FROM pg_stat_activity WHERE pid <> ALL(%(spare)s::int[])) "
             "SELECT count(*) FILTER (WHERE backend_type = 'client backend') AS in_use, "
             "count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'active') AS active, "
             "count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'idle') AS idle, "
             "count(*) FILTER (WHERE backend_type = 'client backend' "
             "AND state IN ('idle in transaction', 'idle in transaction (aborted)')) "
             "AS idle_in_transaction, "
             "current_setting('max_connections')::int AS max_connections, "
             "current_setting('superuser_reserved_connections')::int AS superuser_reserved "
             "FROM activity", {"spare": spare}),
        ("SELECT coalesce(usename, '?') AS usename, coalesce(application_name, '') AS application_name, "
             "count(*) AS n FROM pg_stat_activity WHERE backend_type = 'client backend' "
             "AND pid <> ALL(%(spare)s::int[]) GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 5", {"spare": spare}))
    if res is not None:
        return res
    if hidden:
        return _cannot_look(ctx, hidden, "the connections in use")
    (rows, top), row = got, got[0][0]
    in_use, maxc = int(row["in_use"]), int(row["max_connections"])
    pct = in_use * 100.0 / maxc if maxc else 0.0
    ev = {"target": target.label, "in_use": in_use, "max_connections": maxc, "percent": round(pct, 1),
          "superuser_reserved_connections": row["superuser_reserved"], "active": row["active"],
          "idle": row["idle"], "idle_in_transaction": row["idle_in_transaction"],
          "by_user_application": [dict(r) for r in top], "warn_percent": warn_pct, "fail_percent": fail_pct}
    text = (f"{in_use} of max_connections {maxc} in use ({pct:.1f} %; {row['active']} active, {row['idle']} idle, "
            f"{row['idle_in_transaction']} idle in transaction)")
    cmds = [Command(target.psql("SELECT usename, application_name, state, count(*) FROM pg_stat_activity "
                                "GROUP BY 1, 2, 3 ORDER BY 4 DESC"), READ_ONLY)]
    if pct >= fail_pct:
        return fail(f"{text} >= {fail_pct:g} %", evidence=ev, commands=cmds,
                    hint="new connections are about to be refused: find who holds them (by user/application), "
                         "terminate leaked ones, or raise max_connections")
    if pct >= warn_pct:
        return warn(f"{text} >= {warn_pct:g} %", evidence=ev, commands=cmds,
                    hint="close to the limit: look for leaked or idle-in-transaction sessions")
    return ok(text, evidence=ev)


_LITERAL = re.compile(r"'(?:[^']|'')*'?")


def _query_shape(query: str | None) -> str | None:
    """The query with its string literals masked: Django sends values inline (session keys, tokens,
    e-mail addresses), and evidence is pasted into tickets."""
    return _LITERAL.sub("'…'", query) if query else query


def _sessions_evidence(rows, limit: int = 10) -> list[dict]:
    out = []
    for r in rows[:limit]:
        out.append({"pid": r["pid"], "duration_s": round(float(r["seconds"]), 1), "user": r["usename"],
                    "database": r["datname"], "application": r["application_name"], "client": r["client"],
                    "state": r["state"], "query": _query_shape(r["query"])})
    return out


_ACTIVITY = ("SELECT pid, usename, datname, application_name, client_addr::text AS client, state, "
             "extract(epoch FROM now() - {since})::float AS seconds, left(query, %s) AS query "
             "FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' "
             "AND {where} AND now() - {since} > make_interval(secs => %s) ORDER BY {since} LIMIT 50")


def _activity_check(ctx, *, what: str, where: str, since: str, key: str, default: float, noun: str,
                    hint: str):
    target = _target(ctx)
    try:
        threshold = _num(ctx, key, default)
        chars = int(_num(ctx, "query_max_chars", 200))
    except ValueError as exc:
        return error(str(exc), reason=Reason.NOT_CONFIGURED)
    got, hidden, res = _with_hidden(ctx, (_ACTIVITY.format(where=where, since=since), (chars, threshold)))
    if res is not None:
        return res
    if hidden:
        return _cannot_look(ctx, hidden, what)
    rows = got[0]
    ev = {"target": target.label, "threshold_s": threshold, "count": len(rows),
          "sessions": _sessions_evidence(rows)}
    if not rows:
        return ok(f"no {noun} longer than {threshold:g} s", evidence=ev)
    worst = rows[0]
    pids = ", ".join(str(r["pid"]) for r in rows[:5])
    cmds = [Command(target.psql(f"SELECT pid, usename, state, now() - {since} AS age, query FROM pg_stat_activity "
                                f"WHERE pid IN ({pids})"), READ_ONLY),
            Command(target.psql(f"SELECT pg_cancel_backend({worst['pid']})"), MUTATING, "cancels the query"),
            Command(target.psql(f"SELECT pg_terminate_backend({worst['pid']})"), MUTATING,
                    "ends the session (rolls its transaction back)")]
    return warn(f"{len(rows)} {noun} longer than {threshold:g} s; oldest pid {worst['pid']} "
                f"({worst['usename']}) for {float(worst['seconds']):.0f} s: {(_query_shape(worst['query']) or '')[:80]}",
                evidence=ev, commands=cmds, hint=hint)


@check(LONG_QUERIES, title="PostgreSQL queries running too long", needs=("postgres.dsn",),
       depends_on=(REACHABLE,), permissions=("pg_monitor",))
def check_long_queries(ctx):
    """Queries active for longer than `postgres.long_query_after` seconds (300), with pid, duration
    and the query truncated to `postgres.query_max_chars` (200).

    A query running for minutes holds locks and a snapshot, and its request has long passed the
    edge's 100 s timeout (users saw a 524/504). Typical causes in Studio: big tree operations, a
    missing index, a publish. Reports an error instead of "none" when our role cannot see other
    sessions (needs pg_monitor)."""
    return _activity_check(ctx, what="long-running queries", where="state = 'active'", since="query_start",
                           key="long_query_after", default=300, noun="queries running",
                           hint="cancel the query if its request is gone (pg_cancel_backend); find the caller by "
                                "application_name/client and EXPLAIN the statement")


@check(IDLE_IN_TRANSACTION, title="PostgreSQL sessions idle in transaction", needs=("postgres.dsn",),
       depends_on=(REACHABLE,), permissions=("pg_monitor",))
def check_idle_in_transaction(ctx):
    """Sessions idle inside an open transaction for longer than `postgres.idle_in_transaction_after`
    seconds (60), with pid, duration and their last query (truncated).

    Such a session keeps its locks (writers queue behind it: see postgres.locks), holds back vacuum
    and uses a connection slot. In Studio: a task or request that died mid-transaction, or a leaked
    connection (cf. the 2023 publish leak). Fix the client; `idle_in_transaction_session_timeout`
    bounds the damage."""
    return _activity_check(ctx, what="sessions idle in transaction", since="state_change",
                           where="state IN ('idle in transaction', 'idle in transaction (aborted)')",
                           key="idle_in_transaction_after", default=60, noun="sessions idle in transaction",
                           hint="terminate the session if its client is gone (pg_terminate_backend) and set "
                                "idle_in_transaction_session_timeout; find the client by application/client address")
