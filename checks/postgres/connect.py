"""postgres.reachable (the staged connect that opens the run's session), postgres.latency, postgres.version."""

from __future__ import annotations

import ssl
import statistics
import struct
import time

from studiodoctor.backends import postgres as pg
from studiodoctor.model import READ_ONLY, Command, Reason, error, fail, guard, ok, unreachable, warn
from studiodoctor.registry import check
from studiodoctor.probes.staged import Staged, first_line
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import LATENCY, REACHABLE, VERSION, _db_call, _num, _query, _target


_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


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
    try:
        target = _target(ctx)
    except ValueError as exc:
        return error(f"postgres.dsn is not a usable DSN: {exc}", reason=Reason.NOT_CONFIGURED,
                     hint="use postgresql://user:password@host:port/dbname")
    # the run's connections open now, beside the staged probes that explain a failure (the login does
    # not wait for them: on a network far away that is several round trips saved)
    opening = pg.Opening(ctx, target, pg.POOL)
    try:
        res = _staged_connect(ctx, target, opening)
    finally:
        opening.abandon()  # those not taken by the session (none when it failed)
    return res


def _staged_connect(ctx, target, opening: "pg.Opening"):
    import psycopg

    ev = {"address": target.address, "target": target.label, "sslmode": target.sslmode, "stages": {}}
    stages = ev["stages"]
    cmds = [Command(target.psql("SELECT 1"), READ_ONLY, "asks for the password or uses ~/.pgpass")]
    conn = Staged("PostgreSQL", target.address, ev, commands=cmds, ctx=ctx)
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
            round(conn.network(time.monotonic() - t0) * 1000, 1)
        if ev["tls"] == "not offered" and target.sslmode in ("require", "verify-ca", "verify-full"):
            ev["stage"] = "tls"
            return fail(f"PostgreSQL at {target.address} does not offer TLS but sslmode={target.sslmode}",
                        evidence=ev, commands=cmds,
                        hint="enable ssl on the server, or connect through cloudsql-proxy (which encrypts)")
    t0 = time.monotonic()
    try:
        db = opening.first(ctx.timeout(margin=pg.MARGIN))
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
    stages["auth_ms"] = round(conn.network(time.monotonic() - t0) * 1000, 1)
    if _read_only_setting(db) != "on":  # never a writable session
        db.close()
        return error(f"PostgreSQL at {target.address}: the session is not read-only (the server ignored "
                     "default_transaction_read_only in the startup packet)", evidence=ev)
    session = pg.Session(db)
    opening.join(session)
    ctx.shared.set(pg.SESSION, session)
    import weakref

    weakref.finalize(ctx.shared, session.close)  # the run is over when its Shared is collected
    ev["server_version_num"] = session.server_version
    timing = conn.done()
    return ok(f"PostgreSQL at {target.address} accepted {target.user or 'our role'} on {target.dbname} "
              f"({timing}; TLS {ev.get('tls', 'n/a')})", evidence=ev)


def _read_only_setting(db) -> str:
    """The session's default_transaction_read_only: reported at login by PostgreSQL 14+, asked otherwise."""
    return db.info.parameter_status("default_transaction_read_only") or \
        db.execute("SHOW default_transaction_read_only").fetchone()[0]


@check(LATENCY, title="PostgreSQL SELECT 1 latency", needs=("postgres.dsn",), depends_on=(REACHABLE,), smoke=True,
       metrics=("median_ms;warn_ms;fail_ms;0", "max_ms;;;0"))
def check_latency(ctx):
    """Round trip of `SELECT 1` on the run's connections (median of `postgres.latency_samples`, 3, taken
    at once, one a connection: each its own pipeline, never carried with other checks' statements), timed
    on the wire by the kernel (TCP_INFO), so a busy or loaded doctor's own waits are not the server's.

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
    from concurrent.futures import ThreadPoolExecutor

    # at once, one a connection of the pool: each sample is its own round trip, none waits for another's
    with ThreadPoolExecutor(min(n, pg.POOL), thread_name_prefix="postgres-latency") as pool:
        got = list(pool.map(lambda _: _db_call(ctx, lambda: _query(ctx, "SELECT 1", timed=True)), range(n)))
    for _, res in got:
        if res is not None:
            return res
    samples = [value[1] for value, _ in got]
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
