"""Layer `postgres`: Studio's database (Cloud SQL behind cloudsql-proxy in production).

psycopg 3, one connection per run shared by the checks (serialised by a lock), every query in a
``BEGIN READ ONLY`` transaction with a ``statement_timeout`` inside the check's deadline, rolled back.
Works as a role that has only ``pg_monitor`` and CONNECT. The DSN's password is never printed:
results name the endpoint as ``host:port/dbname user=NAME``.
"""

from __future__ import annotations

import re
import ssl
import statistics
import struct
import time

from studiodoctor.backends import postgres as pg
from studiodoctor.backends.postgres import Target
from studiodoctor.model import MUTATING, READ_ONLY, Command, Reason, error, fail, guard, ok, unreachable, warn
from studiodoctor.registry import check
from studiodoctor.staged import Staged, first_line

# imported by the runner before any check starts (see studiodoctor.runner.preload)
SDK_IMPORTS = ("psycopg",)

REACHABLE = "postgres.reachable"
LATENCY = "postgres.latency"
VERSION = "postgres.version"
CONNECTIONS = "postgres.connections"
LONG_QUERIES = "postgres.long_queries"
IDLE_IN_TRANSACTION = "postgres.idle_in_transaction"
LOCKS = "postgres.locks"
DATABASE_SIZE = "postgres.database_size"

_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


# --- the target ---------------------------------------------------------------------------------

def _target(ctx) -> Target:
    return ctx.shared.get("postgres.target", lambda: Target(str(ctx.config.get("dsn") or "")))


def _query(ctx, sql: str, params=None, **kw):
    return pg.query(ctx, sql, params, **kw)


def _db_call(ctx, func):
    """Run ``func()``; psycopg errors become results: (value, None) or (None, result)."""
    return pg.db_call(ctx, _target(ctx), func)


def _num(ctx, key: str, default: float) -> float:
    value = ctx.setting(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"postgres.{key} must be a number, got {value!r}")
    return float(value)


# --- checks -------------------------------------------------------------------------------------

@check(REACHABLE, title="PostgreSQL answers (DNS, TCP, TLS, auth)", needs=("postgres.dsn",),
       permissions=("CONNECT on the database",), smoke=True)
@guard
def check_reachable(ctx):
    """PostgreSQL at `postgres.dsn` resolves, accepts TCP, negotiates TLS and accepts our login.

    Studio's Django app needs this database for nearly every request (`/healthz` reads a channel):
    when it is down, users see 500/502. Stages: DNS (the name does not resolve from here), TCP
    (refused: the server or cloudsql-proxy is down; timed out: firewall, dead port-forward), startup/TLS
    (the port accepts TCP but does not answer the PostgreSQL handshake, or TLS fails for the sslmode),
    auth (wrong password, missing role, pg_hba), connect (too many clients, database missing).
    The connection is then shared by the other `postgres.*` checks (read-only transactions)."""
    import psycopg

    try:
        target = _target(ctx)
    except ValueError as exc:
        return error(f"postgres.dsn is not a usable DSN: {exc}", reason=Reason.NOT_CONFIGURED,
                     hint="use postgresql://user:password@host:port/dbname")
    ev = {"address": target.address, "target": target.label, "sslmode": target.sslmode, "stages": {}}
    stages = ev["stages"]
    cmds = [Command(target.psql("SELECT 1"), READ_ONLY, "asks for the password or uses ~/.pgpass")]
    conn = Staged("PostgreSQL", target.address, ev, commands=cmds)
    if not target.unix:
        if target.hostaddr:
            addrs = ev["resolved"] = [target.hostaddr]
            stages["dns_ms"] = 0.0
        else:
            addrs = conn.dns(target.host, target.port, ctx.timeout(margin=pg.MARGIN),
                             hint="check the host in postgres.dsn (in production: the cloudsql-proxy "
                                  "service name) and the resolver used here")
        sock = conn.tcp(addrs[0], target.port, ctx.timeout(margin=pg.MARGIN), keep=True,
                        timeout_hint="a firewall drops the packets or the port-forward/proxy is gone",
                        refused_hint="PostgreSQL (or the cloudsql-proxy in front of it) is down or listens "
                                     "elsewhere; on the cluster check the cloudsql-proxy pods and service")
        # startup/TLS stage: ask for TLS as libpq does, and see that a PostgreSQL answers at all
        t0 = time.monotonic()
        try:
            with sock:
                sock.settimeout(ctx.timeout(margin=pg.MARGIN))
                sock.sendall(_SSL_REQUEST)
                answer = sock.recv(1)
                if answer == b"S":
                    tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    tls_ctx.check_hostname = False
                    tls_ctx.verify_mode = ssl.CERT_NONE
                    with tls_ctx.wrap_socket(sock, server_hostname=None if target.host[:1].isdigit()
                                             else target.host) as tls:
                        ev["tls"] = tls.version()
                elif answer in (b"N", b"E"):
                    ev["tls"] = "not offered"
                else:
                    ev["stage"] = "startup"
                    return fail(f"PostgreSQL at {target.address}: the server closed the connection during "
                                f"the startup handshake", evidence=ev, reason=Reason.UNREACHABLE, commands=cmds,
                                hint="something accepts TCP on this port but is not PostgreSQL (or it is "
                                     "shutting down)")
        except TimeoutError:
            ev["stage"] = "startup"
            return unreachable("PostgreSQL", target.address,
                               f"TCP accepted but no answer to the startup handshake within "
                               f"{ctx.timeout():.1f} s", timed_out=True, evidence=ev, commands=cmds,
                               hint="a process accepts connections on this port but does not answer: a hung "
                                    "server or proxy (cloudsql-proxy that cannot reach Cloud SQL)")
        except (ssl.SSLError, OSError) as exc:
            ev["stage"] = "tls"
            return fail(f"PostgreSQL at {target.address}: TLS handshake failed: {first_line(exc)}",
                        evidence=ev, reason=Reason.UNREACHABLE, commands=cmds)
        stages["tls_ms" if ev.get("tls") != "not offered" else "startup_ms"] = \
            round((time.monotonic() - t0) * 1000, 1)
        if ev["tls"] == "not offered" and target.sslmode in ("require", "verify-ca", "verify-full"):
            ev["stage"] = "tls"
            return fail(f"PostgreSQL at {target.address} does not offer TLS but sslmode={target.sslmode}",
                        evidence=ev, commands=cmds,
                        hint="enable ssl on the server, or connect through cloudsql-proxy (which encrypts)")
    t0 = time.monotonic()
    try:
        db = pg.connect(ctx, target)
    except TimeoutError as exc:
        ev["stage"] = "auth"
        return unreachable("PostgreSQL", target.address, f"login {exc} (timed out)", timed_out=True,
                           evidence=ev, commands=cmds)
    except psycopg.Error as exc:
        message = target.scrub(first_line(exc))
        stage, kind = pg.classify(str(exc))
        ev["stage"] = stage
        if kind == "auth":
            return error(f"PostgreSQL at {target.address} rejected our login (stage auth, user "
                         f"{target.user or '(default)'}): {message}", evidence=ev, reason=Reason.AUTH,
                         commands=cmds, hint="check user and password in postgres.dsn (Studio's come from the "
                                             "postgres-username / postgres-password secrets) and pg_hba.conf")
        if kind == "full":
            return fail(f"PostgreSQL at {target.address} refuses new connections: {message}", evidence=ev,
                        commands=[Command(target.psql("SELECT usename, state, count(*) FROM pg_stat_activity "
                                                      "GROUP BY 1, 2 ORDER BY 3 DESC"), READ_ONLY,
                                          "as a superuser: it can use the reserved slots")],
                        hint="max_connections is reached: Studio opens a connection per request (no "
                             "CONN_MAX_AGE); look for leaked or idle-in-transaction sessions")
        if kind == "database":
            return fail(f"PostgreSQL at {target.address}: {message}", evidence=ev, commands=cmds,
                        hint="check dbname in postgres.dsn (Studio's comes from the postgres-dbname secret)")
        if kind == "refused":
            return unreachable("PostgreSQL", target.address, message, evidence=ev, commands=cmds)
        if kind == "timeout":
            return unreachable("PostgreSQL", target.address, message, timed_out=True, evidence=ev, commands=cmds)
        return fail(f"PostgreSQL at {target.address}: connection failed (stage {stage}): {message}",
                    evidence=ev, reason=Reason.UNREACHABLE, commands=cmds)
    stages["auth_ms"] = round((time.monotonic() - t0) * 1000, 1)
    try:
        db.execute("SET default_transaction_read_only = on")
    except psycopg.Error as exc:
        db.close()
        return error(f"PostgreSQL at {target.address}: cannot make the session read-only: "
                     f"{target.scrub(first_line(exc))}", evidence=ev)
    session = pg.Session(db)
    ctx.shared.set(pg.SESSION, session)
    import weakref

    weakref.finalize(ctx.shared, db.close)  # the run is over when its Shared is collected
    ev["server_version_num"] = session.server_version
    timing = conn.done()
    return ok(f"PostgreSQL at {target.address} accepted {target.user or 'our role'} on {target.dbname} "
              f"({timing}; TLS {ev.get('tls', 'n/a')})", evidence=ev)


@check(LATENCY, title="PostgreSQL SELECT 1 latency", needs=("postgres.dsn",), depends_on=(REACHABLE,), smoke=True,
       metrics=("median_ms;warn_ms;fail_ms;0", "max_ms;;;0"))
def check_latency(ctx):
    """Round trip of `SELECT 1` on the open connection (median of `postgres.latency_samples`, 3).

    Warn at `postgres.latency_warn_ms` (100), fail at `postgres.latency_fail_ms` (1000). Studio opens a
    new connection per request and runs several queries each, so latency multiplies into page time
    and into the 60-100 s edge timeouts. Causes: an overloaded server (CPU, IO), the cloudsql-proxy,
    or the network path from here."""
    target = _target(ctx)
    try:
        n = max(1, int(_num(ctx, "latency_samples", 3)))
        warn_ms, fail_ms = _num(ctx, "latency_warn_ms", 100), _num(ctx, "latency_fail_ms", 1000)
    except ValueError as exc:
        return error(str(exc), reason=Reason.NOT_CONFIGURED)
    samples = []
    for _ in range(n):
        if samples and ctx.remaining() < 2 * pg.MARGIN + max(samples) / 1000:
            break
        value, res = _db_call(ctx, lambda: _query(ctx, "SELECT 1", timed=True))
        if res is not None:
            return res
        samples.append(value[1])
    med, worst = statistics.median(samples), max(samples)
    ev = {"target": target.label, "median_ms": round(med, 2), "max_ms": round(worst, 2), "samples": len(samples),
          "warn_ms": warn_ms, "fail_ms": fail_ms}
    reach = ctx.result_of(REACHABLE)
    if reach is not None:
        ev["connect_stages_ms"] = reach.evidence.get("stages", {})
    text = f"SELECT 1 median {med:.2f} ms (max {worst:.2f} ms, {len(samples)} samples)"
    if med >= fail_ms:
        return fail(f"{text} >= {fail_ms:g} ms", evidence=ev,
                    hint="the server or the path to it is very slow: check CPU/IO and long queries")
    if med >= warn_ms:
        return warn(f"{text} >= {warn_ms:g} ms", evidence=ev,
                    hint="slow round trips: check server load and the network path (proxy, port-forward)")
    return ok(text, evidence=ev)


@check(VERSION, title="PostgreSQL version and role", needs=("postgres.dsn",), depends_on=(REACHABLE,))
def check_version(ctx):
    """Server version, and whether the server is a primary (`pg_is_in_recovery()`).

    A standby answers reads but refuses every write: Studio would fail on saves, sessions (prod keeps
    sessions in the database) and publishing. Set `postgres.expect_primary = false` when pointing the
    doctor at a read replica on purpose."""
    target = _target(ctx)
    rows, res = _db_call(ctx, lambda: _query(
        ctx, "SELECT version() AS version, current_setting('server_version') AS server_version, "
             "current_setting('server_version_num')::int AS num, pg_is_in_recovery() AS in_recovery"))
    if res is not None:
        return res
    row = rows[0]
    ev = {"target": target.label, "server_version": row["server_version"], "server_version_num": row["num"],
          "version": row["version"], "in_recovery": row["in_recovery"]}
    expect_primary = ctx.setting("expect_primary", True)
    if row["in_recovery"] and expect_primary:
        return warn(f"PostgreSQL {row['server_version']} at {target.address} is a standby (in recovery): "
                    "writes are refused", evidence=ev,
                    hint="point the app at the primary, or promote this server if the primary is gone")
    role = "standby" if row["in_recovery"] else "primary"
    return ok(f"PostgreSQL {row['server_version']} ({role})", evidence=ev)


def _hidden_sessions(ctx) -> tuple[int | None, object]:
    """How many other sessions our role cannot inspect (no pg_read_all_stats / pg_monitor)."""
    rows, res = _db_call(ctx, lambda: _query(
        ctx, "SELECT count(*) AS hidden FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
             "AND backend_type IS NULL"))  # rows we may not inspect come back with every detail NULL
    if res is not None:
        return None, res
    return int(rows[0]["hidden"]), None


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
    hidden, res = _hidden_sessions(ctx)
    if res is not None:
        return res
    if hidden:
        return _cannot_look(ctx, hidden, "the connections in use")
    rows, res = _db_call(ctx, lambda: _query(
        ctx, "SELECT count(*) FILTER (WHERE backend_type = 'client backend') AS in_use, "
             "count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'active') AS active, "
             "count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'idle') AS idle, "
             "count(*) FILTER (WHERE backend_type = 'client backend' "
             "AND state IN ('idle in transaction', 'idle in transaction (aborted)')) "
             "AS idle_in_transaction, "
             "current_setting('max_connections')::int AS max_connections, "
             "current_setting('superuser_reserved_connections')::int AS superuser_reserved "
             "FROM pg_stat_activity"))
    if res is not None:
        return res
    row = rows[0]
    top, res = _db_call(ctx, lambda: _query(
        ctx, "SELECT coalesce(usename, '?') AS usename, coalesce(application_name, '') AS application_name, "
             "count(*) AS n FROM pg_stat_activity WHERE backend_type = 'client backend' "
             "GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 5"))
    if res is not None:
        return res
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
    hidden, res = _hidden_sessions(ctx)
    if res is not None:
        return res
    if hidden:
        return _cannot_look(ctx, hidden, what)
    rows, res = _db_call(ctx, lambda: _query(ctx, _ACTIVITY.format(where=where, since=since), (chars, threshold)))
    if res is not None:
        return res
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


@check(LOCKS, title="PostgreSQL waiting locks", needs=("postgres.dsn",), depends_on=(REACHABLE,),
       permissions=("pg_monitor",))
def check_locks(ctx):
    """Lock requests not granted (pg_locks), with who blocks them (pg_blocking_pids); warn when one
    has waited longer than `postgres.lock_wait_after` seconds (10).

    Requests waiting on a lock hang until the holder commits: pages time out at the edge and Celery
    tasks stall. The usual holder is a session idle in transaction or a long migration/DDL."""
    target = _target(ctx)
    try:
        threshold = _num(ctx, "lock_wait_after", 10)
        chars = int(_num(ctx, "query_max_chars", 200))
    except ValueError as exc:
        return error(str(exc), reason=Reason.NOT_CONFIGURED)
    session = ctx.shared.peek(pg.SESSION)
    since = "coalesce(l.waitstart, a.query_start)" if session and session.server_version >= 140000 else "a.query_start"
    sql = ("SELECT l.pid, l.locktype, l.mode, l.relation::regclass::text AS relation, a.usename, a.datname, "
           f"extract(epoch FROM now() - {since})::float AS seconds, pg_blocking_pids(l.pid) AS blocked_by, "
           "left(a.query, %s) AS query FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
           "WHERE NOT l.granted ORDER BY seconds DESC NULLS LAST LIMIT 50")
    rows, res = _db_call(ctx, lambda: _query(ctx, sql, (chars,)))
    if res is not None:
        return res
    waits = [{"pid": r["pid"], "locktype": r["locktype"], "mode": r["mode"], "relation": r["relation"],
              "user": r["usename"], "database": r["datname"],
              "waiting_s": None if r["seconds"] is None else round(float(r["seconds"]), 1),
              "blocked_by": list(r["blocked_by"] or []), "query": _query_shape(r["query"])} for r in rows]
    long_waits = [w for w in waits if w["waiting_s"] is not None and w["waiting_s"] > threshold]
    unknown = [w for w in waits if w["waiting_s"] is None]
    ev = {"target": target.label, "waiting": len(waits), "threshold_s": threshold, "locks": waits[:10]}
    if not long_waits and unknown:
        return error(f"{len(unknown)} lock requests are waiting and role {target.user or '(default)'} cannot see "
                     "for how long", evidence=ev, reason=Reason.FORBIDDEN,
                     hint=f"GRANT pg_monitor TO {target.user or '<role>'}")
    if not long_waits:
        extra = f" ({len(waits)} shorter waits)" if waits else ""
        return ok(f"no lock waited longer than {threshold:g} s{extra}", evidence=ev)
    blockers = sorted({p for w in long_waits for p in w["blocked_by"]})
    ev["blockers"] = blockers
    w = long_waits[0]
    what = f"{w['mode']} on {w['relation']}" if w["relation"] else w["mode"]
    cmds = [Command(target.psql("SELECT pid, usename, state, now() - state_change AS age, query FROM "
                                f"pg_stat_activity WHERE pid IN ({', '.join(map(str, blockers)) or 'NULL'})"),
                    READ_ONLY, "what the blockers are doing")]
    if blockers:
        cmds.append(Command(target.psql(f"SELECT pg_terminate_backend({blockers[0]})"), MUTATING,
                            "ends the blocking session"))
    return warn(f"{len(long_waits)} lock requests waiting longer than {threshold:g} s; pid {w['pid']} waits "
                f"{w['waiting_s']:.0f} s for {what}, blocked by pid {', '.join(map(str, w['blocked_by'])) or '?'}",
                evidence=ev, commands=cmds,
                hint="find what the blocking pid is doing (often idle in transaction) and end it if its client "
                     "is gone")


@check(DATABASE_SIZE, title="PostgreSQL database size", needs=("postgres.dsn",), depends_on=(REACHABLE,))
def check_database_size(ctx):
    """Size of the configured database (`pg_database_size`); warn above `postgres.database_size_warn_gb`
    (0 = no limit, the default).

    A figure for the incident record and for capacity: Cloud SQL disks grow automatically but
    backups, restores and migrations slow down with size."""
    target = _target(ctx)
    try:
        warn_gb = _num(ctx, "database_size_warn_gb", 0)
    except ValueError as exc:
        return error(str(exc), reason=Reason.NOT_CONFIGURED)
    rows, res = _db_call(ctx, lambda: _query(
        ctx, "SELECT current_database() AS db, pg_database_size(current_database()) AS bytes, "
             "pg_size_pretty(pg_database_size(current_database())) AS pretty"))
    if res is not None:
        return res
    row = rows[0]
    ev = {"target": target.label, "database": row["db"], "bytes": int(row["bytes"]), "size": row["pretty"],
          "warn_gb": warn_gb}
    if warn_gb and int(row["bytes"]) >= warn_gb * 1024 ** 3:
        return warn(f"database {row['db']} is {row['pretty']} (>= {warn_gb:g} GB)", evidence=ev)
    return ok(f"database {row['db']} is {row['pretty']}", evidence=ev)
