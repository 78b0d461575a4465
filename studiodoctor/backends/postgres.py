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
from studiodoctor.probes.http import answered_since, bytes_received, exchanged, sent_at, tcp_info
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


# Connections the run opens to PostgreSQL: the per-backend cap of the runner (a run never holds more
# than a few sessions on the server it is diagnosing), enough that the checks' queries need not queue
# on one session (each query is one round trip: see ``query``).
POOL = 3
READ_ONLY_OPTION = "-c default_transaction_read_only=on"


class Session:
    """The run's connections (up to POOL, opened at once by ``postgres.reachable``): each query takes
    a free one, runs in its own read-only transaction and gives it back. ``conn`` is the first."""

    def __init__(self, conn):
        self.conn = conn
        self.server_version = conn.info.server_version
        self._idle = [conn]
        self._all = [conn]
        self._free = threading.Condition()
        self._asks: list[_Ask] = []   # checks' statements waiting for a connection (see ``queries``)
        self.opening: Opening | None = None

    def add(self, conn) -> None:
        """Another connection for the pool (one that finished opening after the first)."""
        with self._free:
            self._idle.append(conn)
            self._all.append(conn)
            self._free.notify()

    def take(self, ask: "_Ask", timeout: float, alone: bool = False):
        """(a free connection, the asks it carries: ``ask`` first, then those waiting beside it unless
        ``alone``), or (None, []) when another check's pipeline took ``ask`` along."""
        with self._free:
            if not alone:
                self._asks.append(ask)
            if not self._free.wait_for(lambda: ask.taken or self._idle, timeout):
                if not alone:
                    self._asks.remove(ask)
                raise Busy("timed out waiting for a free PostgreSQL connection")
            if ask.taken:
                return None, []
            conn = self._idle.pop()
            # a timed ask (``alone``) carries nobody either: its round trip is its own statements' only
            batch = [ask] if alone else [ask] + [a for a in self._asks if a is not ask][:BATCH - 1]
            for a in batch:
                a.taken = True
                if a in self._asks:
                    self._asks.remove(a)
            self._free.notify_all()  # the asks taken along stop waiting for a connection
            return conn, batch

    def give(self, conn) -> None:
        with self._free:
            if not conn.closed and not conn.broken:
                self._idle.append(conn)
                self._free.notify()

    def spare_pids(self, timeout: float) -> list[int]:
        """Server pids of the pool's connections beyond the first: the doctor's own extra load, left out
        of what the server's connections are counted against (the first stands for "the doctor").
        Waits (at most ``timeout``) for those still opening, which the server already counts."""
        if self.opening is not None:
            self.opening.settle(timeout)
        with self._free:
            return [c.info.backend_pid for c in self._all[1:]]

    @property
    def size(self) -> int:
        return len(self._all)

    def close(self) -> None:
        for conn in list(self._all):
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection at the end of a run
                pass


class Busy(Exception):
    """The shared session is missing or held past the deadline."""


# Most checks' statements one pipeline carries (each check's in its own transaction)
BATCH = 8


class _Ask:
    """One check's statements waiting for a connection: run by whichever check gets one first."""

    def __init__(self, ctx, statements):
        self.ctx, self.statements = ctx, statements
        self.rows: list | None = None
        self.error: BaseException | None = None
        self.seconds = 0.0
        self.taken = False
        self.done = threading.Event()


def query(ctx, sql: str, params=None, *, session: Session | None = None, timed: bool = False):
    """Rows (dicts) of ``sql`` in ``BEGIN READ ONLY`` with a statement_timeout inside the deadline, on a
    free connection of the run's pool (see ``queries``). ``timed``: also the round trip in ms of this
    query's pipeline, alone (never carried with other checks' statements, the wait for a free connection
    left out: what a client of this server waits for)."""
    ask = _execute(ctx, [(sql, params)], session, alone=timed)
    return (ask.rows[0], ask.seconds * 1000) if timed else ask.rows[0]


def queries(ctx, statements, *, session: Session | None = None, alone: bool = False) -> list[list[dict]]:
    """The rows of each ``(sql, params)`` of ``statements``, all in one ``BEGIN READ ONLY`` transaction
    with a statement_timeout inside the deadline, sent as one pipeline (BEGIN, set_config, the
    statements, ROLLBACK): one round trip, however many statements.

    Checks that need no shared transaction need not queue on the pool either: when a connection frees
    up, the check that takes it carries the statements of every check waiting beside it (up to BATCH,
    each in its own transaction) in the same pipeline, so seven checks on a pool still opening cost a
    round trip or two, not seven. A statement that fails sends each carried check's statements again
    alone, so that every check gets its own answer or its own error. ``alone``: never carried along."""
    return _execute(ctx, statements, session, alone).rows


def _execute(ctx, statements, session: Session | None, alone: bool) -> _Ask:
    """``queries``' work: the answered ``_Ask`` (rows, and the seconds of the pipeline that carried it)."""
    session = session or ctx.shared.peek(SESSION)
    if session is None:
        raise Busy("no PostgreSQL session (postgres.reachable did not connect)")
    ask = _Ask(ctx, statements)
    conn, batch = session.take(ask, ctx.timeout(margin=MARGIN), alone)
    if conn is None:
        if not ask.done.wait(ctx.timeout(margin=MARGIN)):
            raise Busy("timed out waiting for the pipeline carrying this check's statements")
    else:
        try:
            _run(conn, batch)
        finally:
            _rollback_failed(conn)
            session.give(conn)
    add = getattr(ctx, "add_network", None)  # the pipeline's round trip, not the wait for a connection
    if add is not None:
        add(ask.seconds)
    if ask.error is not None:
        raise ask.error
    return ask


def _send(conn, ask: _Ask, first_sent: list) -> list:
    from psycopg.rows import dict_row

    ms = max(50, int(ask.ctx.timeout(margin=MARGIN) * 1000))
    conn.execute("BEGIN READ ONLY")
    if not first_sent:  # psycopg sends each statement as it is queued: the pipeline's first byte left now
        first_sent.append(_on_socket(conn, lambda sock: (sent_at(sock), bytes_received(sock))))
    conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{ms}ms",))
    cursors = []
    for sql, params in ask.statements:
        cursors.append(conn.cursor(row_factory=dict_row))
        cursors[-1].execute(sql, params)
    conn.execute("ROLLBACK")
    return cursors


def _on_socket(conn, measure):
    """``measure(sock)`` on the connection's socket (borrowed, never closed here); None if it cannot be read."""
    import socket

    try:
        sock = socket.socket(fileno=conn.pgconn.socket)
    except Exception:  # noqa: BLE001 - a closed or broken connection: the clock's reading stands
        return None
    try:
        return measure(sock)
    finally:
        sock.detach()


def _run(conn, batch: list[_Ask]) -> None:
    """Each ask's rows (or error) from one pipeline; after a failure, each ask alone (who failed).

    Its seconds are the wire's, as the kernel saw them (TCP_INFO), not the clock's around it: on a loaded
    machine this process waits for the GIL and the CPU between psycopg's sends and after the answer (a
    healthy lab's SELECT 1 read 50-137 ms by the clock). PostgreSQL answers a pipeline at its Sync: when
    nothing came back while the statements went out, the pipeline is one exchange, timed from the last
    send (the Sync) to the last byte received (``probes.http.exchanged``); otherwise from the first
    statement sent (``answered_since``), so a pipeline that became several round trips reads as such."""
    started = time.perf_counter()
    first_sent: list = []
    one_exchange = False
    try:
        try:
            with conn.pipeline():
                sent = [_send(conn, ask, first_sent) for ask in batch]
                first = first_sent[0] if first_sent else None
                one_exchange = first is not None and first[1] is not None and \
                    _on_socket(conn, bytes_received) == first[1]  # nothing back yet: the Sync is to go
            for ask, cursors in zip(batch, sent):
                ask.rows = [cur.fetchall() if cur.description else [] for cur in cursors]
        except Exception as exc:  # noqa: BLE001 - handed to the check(s) it belongs to
            one_exchange = False
            if len(batch) == 1:
                batch[0].error = exc
                return
            for ask in batch:
                _rollback_failed(conn)
                try:
                    with conn.pipeline():
                        cursors = _send(conn, ask, first_sent)
                    ask.rows, ask.error = [cur.fetchall() if cur.description else [] for cur in cursors], None
                except Exception as alone:  # noqa: BLE001
                    ask.error = alone
    finally:
        seconds = _on_socket(conn, lambda sock: _wire_seconds(sock, started, first_sent, one_exchange))
        for ask in batch:
            ask.seconds = seconds if seconds is not None else time.perf_counter() - started
            ask.done.set()


def _wire_seconds(sock, started: float, first_sent: list, one_exchange: bool) -> float:
    """``_run``'s figure: the exchange at the Sync when the pipeline was one (and nothing was sent after
    its answer, as psycopg's flush request may be), else from the first statement sent."""
    sent_ago, recv_ago, _ = tcp_info(sock)
    if one_exchange and sent_ago >= recv_ago:
        return exchanged(sock, started)
    first = first_sent[0][0] if first_sent and first_sent[0] is not None else started
    return answered_since(sock, max(started, first))


def _rollback_failed(conn) -> None:
    """After a failed statement the pipeline's ROLLBACK was skipped: end the aborted transaction."""
    from psycopg.pq import TransactionStatus

    try:
        if not conn.closed and not conn.broken and conn.info.transaction_status != TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
    except Exception:  # noqa: BLE001 - a broken connection leaves the pool with the next give()
        pass


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
    return Opening(ctx, target, 1).first(ctx.timeout(margin=MARGIN))


class Opening:
    """``n`` connections opening at once, each read-only from its startup packet
    (default_transaction_read_only, no extra round trip): ``first`` waits for one (or the first
    error); the others join the run's Session as they finish (``join``), or are closed if nobody
    wants them any more (``abandon``)."""

    def __init__(self, ctx, target: Target, n: int):
        self.target = target
        self.timeout = ctx.timeout(margin=MARGIN)
        self.done = threading.Condition()
        self.conns: list = []
        self.errors: list = []
        self.session: Session | None = None
        self.abandoned = False
        self.n, self.settled = n, 0
        for i in range(n):
            threading.Thread(target=self._open, daemon=True, name=f"postgres-connect-{i}").start()

    def _open(self) -> None:
        import psycopg

        params = self.target.params
        options = " ".join(filter(None, [str(params.get("options") or ""), READ_ONLY_OPTION]))
        try:
            conn = psycopg.connect(self.target.dsn, connect_timeout=max(2, int(self.timeout + 0.999)),
                                   autocommit=True, application_name=APP_NAME, options=options)
        except Exception as exc:  # noqa: BLE001 - classified by the caller
            with self.done:
                self.errors.append(exc)
                self.settled += 1
                self.done.notify_all()
            return
        with self.done:
            self.settled += 1
            if self.session is not None:
                self.session.add(conn)
            elif self.abandoned:
                conn.close()
            else:
                self.conns.append(conn)
            self.done.notify_all()

    def first(self, timeout: float):
        """The first connection to open (raises the first error, or TimeoutError)."""
        with self.done:
            if not self.done.wait_for(lambda: self.conns or self.errors, timeout):
                self.abandoned = True
                raise TimeoutError(f"no answer to the connection within {timeout:.1f} s")
            if not self.conns:
                self.abandoned = True
                raise self.errors[0]
            return self.conns.pop(0)

    def settle(self, timeout: float) -> None:
        """Wait until every connection opened or failed (at most ``timeout``)."""
        with self.done:
            self.done.wait_for(lambda: self.settled >= self.n, timeout)

    def join(self, session: Session) -> None:
        """Hand the connections still opening (and any already open) to ``session``."""
        with self.done:
            self.session = session
            session.opening = self
            for conn in self.conns:
                session.add(conn)
            self.conns.clear()

    def abandon(self) -> None:
        with self.done:
            self.abandoned = True
            for conn in self.conns:
                conn.close()
            self.conns.clear()


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
