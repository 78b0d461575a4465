"""How the doctor reaches PostgreSQL: the parsed ``postgres.dsn`` (``Target``: address, label, psql
commands, all without the password), a psycopg connect bounded by the deadline, and one shared session
(``Session``) whose every query runs in ``BEGIN READ ONLY`` with a ``statement_timeout`` inside the
check's deadline. Used by the postgres layer; psycopg is imported inside the functions only."""

from __future__ import annotations

import os
import threading
import time

from studiodoctor.backends import grants
from studiodoctor.model import Reason, error, fail, unreachable
from studiodoctor.probes.staged import first_line

SESSION = "postgres.session"     # the ctx.shared key of the run's Session
MARGIN = 0.2                     # seconds kept back from the deadline so that the check can still report
APP_NAME = "studiodoctor"


class Target:
    """The parsed ``postgres.dsn`` (URL or key=value); ``label`` is safe to print."""

    def __init__(self, dsn: str):
        from psycopg.conninfo import conninfo_to_dict

        try:
            params = conninfo_to_dict(dsn)
        except Exception as exc:  # psycopg.ProgrammingError: the message never echoes the password
            raise ValueError(str(exc).splitlines()[0] if str(exc) else "cannot parse the DSN") from None
        self.dsn = dsn
        self.params = params
        self.password = str(params.get("password") or "") or None
        host = str(params.get("host") or os.environ.get("PGHOST") or "/var/run/postgresql")
        self.host = host.split(",")[0]
        self.hostaddr = str(params.get("hostaddr") or "").split(",")[0]
        port = str(params.get("port") or os.environ.get("PGPORT") or "5432").split(",")[0]
        try:
            self.port = int(port)
        except ValueError:
            raise ValueError(f"port {port!r} is not a number") from None
        self.user = str(params.get("user") or os.environ.get("PGUSER") or "")
        self.dbname = str(params.get("dbname") or os.environ.get("PGDATABASE") or self.user)
        self.sslmode = str(params.get("sslmode") or os.environ.get("PGSSLMODE") or "prefer")
        self.unix = self.host.startswith("/") or self.host.startswith("@")

    @property
    def address(self) -> str:
        if self.unix:
            return f"{self.host}/.s.PGSQL.{self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def label(self) -> str:
        return f"{self.address}/{self.dbname} user={self.user or '(default)'}"

    def psql(self, sql: str = "") -> str:
        """A psql command for the runbook: no password in it (psql asks, or uses ~/.pgpass)."""
        conninfo = f"host={self.host} port={self.port} dbname={self.dbname}" + (f" user={self.user}" if self.user else "")
        cmd = f'psql "{conninfo}"'
        return cmd + (f' -c "{sql}"' if sql else "")

    def scrub(self, text) -> str:
        text = str(text)
        if self.password:
            text = text.replace(self.password, "***")
        return text


class Session:
    """One connection for the run; queries are serialised and each runs in a read-only transaction."""

    def __init__(self, conn):
        self.conn = conn
        self.lock = threading.Lock()
        self.server_version = conn.info.server_version


class Busy(Exception):
    """The shared session is missing or held past the deadline."""


def query(ctx, sql: str, params=None, *, session: Session | None = None, timed: bool = False):
    """Rows (dicts) of ``sql`` in ``BEGIN READ ONLY`` with a statement_timeout inside the deadline."""
    from psycopg.rows import dict_row

    session = session or ctx.shared.peek(SESSION)
    if session is None:
        raise Busy("no PostgreSQL session (postgres.reachable did not connect)")
    if not session.lock.acquire(timeout=ctx.timeout(margin=MARGIN)):
        raise Busy("timed out waiting for the shared PostgreSQL connection")
    t_begin = time.perf_counter()
    try:
        conn = session.conn
        ms = max(50, int(ctx.timeout(margin=MARGIN) * 1000))
        conn.execute("BEGIN READ ONLY")
        try:
            conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{ms}ms",))
            with conn.cursor(row_factory=dict_row) as cur:
                t0 = time.perf_counter()
                cur.execute(sql, params)
                elapsed = (time.perf_counter() - t0) * 1000
                rows = cur.fetchall() if cur.description else []
        finally:
            if not conn.closed and not conn.broken:
                conn.execute("ROLLBACK")
    finally:
        session.lock.release()
        # BEGIN, set_config, the query, ROLLBACK: four round trips, the check's network time (not the
        # wait for the shared session's lock)
        add = getattr(ctx, "add_network", None)
        if add is not None:
            add(time.perf_counter() - t_begin)
    return (rows, elapsed) if timed else rows


def db_call(ctx, target: Target, func):
    """Run ``func()``; map psycopg errors to results. Returns (value, None) or (None, result)."""
    import psycopg

    try:
        return func(), None
    except Busy as exc:
        return None, error(f"could not query PostgreSQL at {target.address}: {exc}", reason=Reason.TIMEOUT)
    except psycopg.errors.InsufficientPrivilege as exc:
        table = grants.pg_table(str(exc))
        grant = (grants.pg_grant_select(target.user, [table]) if table
                 else f"GRANT pg_monitor TO {target.user or '<role>'}")
        return None, error(f"role {target.user} may not read this: {grant} "
                           f"({target.scrub(first_line(exc))})",
                           reason=Reason.FORBIDDEN, evidence={"target": target.label}, hint=grant)
    except psycopg.errors.QueryCanceled as exc:
        return None, fail(f"PostgreSQL at {target.address} did not answer a monitoring query within the deadline "
                          f"(timed out: {target.scrub(first_line(exc))})", reason=Reason.TIMEOUT,
                          evidence={"target": target.label},
                          hint="the server is overloaded or blocked; look at postgres.locks and long queries")
    except psycopg.OperationalError as exc:
        return None, unreachable("PostgreSQL", target.address, target.scrub(first_line(exc)),
                                 evidence={"target": target.label})
    except psycopg.Error as exc:
        return None, error(f"PostgreSQL at {target.address}: {target.scrub(first_line(exc))}",
                           evidence={"target": target.label})


def connect(ctx, target: Target):
    """psycopg.connect bounded by the deadline (psycopg's own connect_timeout has a 2 s floor)."""
    import psycopg

    box: list = []
    abandoned = threading.Event()
    timeout = ctx.timeout(margin=MARGIN)

    def run():
        try:
            conn = psycopg.connect(target.dsn, connect_timeout=max(2, int(timeout + 0.999)), autocommit=True,
                                   application_name=APP_NAME)
        except Exception as exc:  # noqa: BLE001 - classified by the caller
            box.append(exc)
            return
        if abandoned.is_set():
            conn.close()
        else:
            box.append(conn)

    t = threading.Thread(target=run, daemon=True, name="postgres-connect")
    t.start()
    t.join(timeout)
    if not box:
        abandoned.set()
        raise TimeoutError(f"no answer to the connection within {timeout:.1f} s")
    if isinstance(box[0], Exception):
        raise box[0]
    return box[0]


def classify(message: str) -> tuple[str, str]:
    """(stage, kind) of a connection error message; kind: auth, refused, timeout, full, tls, database, other."""
    m = message.lower()
    if "password authentication failed" in m or "no password supplied" in m or "authentication failed" in m \
            or "pg_hba.conf" in m or ("role" in m and "does not exist" in m) or "password" in m:
        return "auth", "auth"
    if "too many clients" in m or "remaining connection slots" in m or "connection slots are reserved" in m:
        return "connect", "full"
    if "database" in m and "does not exist" in m:
        return "connect", "database"
    if "ssl" in m or "certificate" in m or "tls" in m:
        return "tls", "tls"
    if "connection refused" in m:
        return "tcp", "refused"
    if "timeout" in m or "timed out" in m:
        return "connect", "timeout"
    return "connect", "other"
