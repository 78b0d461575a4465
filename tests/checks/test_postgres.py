"""Layer `postgres` against a real PostgreSQL (the session server from conftest, own servers where a
test stops one or needs a small max_connections)."""

from __future__ import annotations

import json
import socket
import time

import psycopg
import pytest

from checks.postgres import (CONNECTIONS, DATABASE_SIZE, IDLE_IN_TRANSACTION, LATENCY, LOCKS, LONG_QUERIES,
                             REACHABLE, VERSION)
from studiodoctor import engine
from studiodoctor.lab.servers.pg_hold import APP as HOLD_APP
from studiodoctor.lab.servers.postgres_server import PostgresServer
from studiodoctor.model import Status
from studiodoctor.secrets import Redactor

ALL = (REACHABLE, LATENCY, VERSION, CONNECTIONS, LONG_QUERIES, IDLE_IN_TRANSACTION, LOCKS, DATABASE_SIZE)


def run(make_profile, dsn, timeout=5, **section):
    profile = make_profile({"postgres": {"dsn": dsn, **section}}, timeout=timeout)
    report = engine.check(profile, layers=["postgres"], timeout=timeout)
    return report, {r.id: r for r in report.results}


def raw_text(report) -> str:
    """Every result as the JSON report carries it, before any redaction."""
    return json.dumps([r.to_dict() for r in report.results], default=str)


def statuses(res):
    return {i: r.status for i, r in res.items()}


def test_healthy_every_check_ok_and_password_never_shown(postgres_server, make_profile):
    report, res = run(make_profile, postgres_server.dsn())
    assert set(res) == set(ALL)
    assert statuses(res) == {i: Status.OK for i in ALL}, {i: r.summary for i, r in res.items()}
    r = res[REACHABLE]
    assert r.evidence["stage"] == "ok" and r.evidence["tls"] == "not offered"
    assert r.evidence["target"] == f"127.0.0.1:{postgres_server.port}/kolibri-studio user=postgres"
    assert res[VERSION].evidence["server_version"].startswith("15")
    assert res[CONNECTIONS].evidence["max_connections"] == 100
    assert res[DATABASE_SIZE].evidence["database"] == "kolibri-studio" and res[DATABASE_SIZE].evidence["bytes"] > 0
    assert postgres_server.password not in raw_text(report)
    assert int(report.exit_code) == 0
    # the staged connect and each query's round trips are the checks' network time (issue 18)
    assert 0 < r.network_ms <= r.duration_ms + 0.1
    for cid in (VERSION, CONNECTIONS, DATABASE_SIZE):
        assert 0 < res[cid].network_ms <= res[cid].duration_ms + 0.1, (cid, res[cid].network_ms)


def test_checks_run_in_read_only_transactions(postgres_server, make_profile):
    # the shared session: default_transaction_read_only on, and every query inside BEGIN READ ONLY
    from checks.postgres import common, connect
    from studiodoctor.context import Shared

    class Ctx:
        config = {"dsn": postgres_server.dsn()}
        shared = Shared()

        def timeout(self, cap=None, margin=0.0):
            return 5.0

        def remaining(self):
            return 5.0

        def setting(self, key, default):
            return self.config.get(key, default)

    ctx = Ctx()
    assert connect.check_reachable(ctx).status is Status.OK
    row = common._query(ctx, "SELECT current_setting('transaction_read_only') AS ro, "
                             "current_setting('statement_timeout') AS st")[0]
    assert row["ro"] == "on" and row["st"] != "0"
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        common._query(ctx, "CREATE TABLE studiodoctor_must_not_exist (id int)")
    ctx.shared.peek("postgres.session").close()


def test_stopped_postgres_fails_with_refused_address(lab_root, make_profile):
    server = PostgresServer(lab_root / "pg-stopped").start()
    server.stop()
    report, res = run(make_profile, server.dsn())
    r = res[REACHABLE]
    assert r.status is Status.FAIL and r.reason == "unreachable"
    assert r.evidence["stage"] == "tcp" and r.evidence["address"] == server.address
    assert server.address in r.summary and "connection refused" in r.summary
    for cid in ALL[1:]:
        assert res[cid].status is Status.BLOCKED and res[cid].blocked_by == [REACHABLE]
    assert server.password not in raw_text(report)
    assert int(report.exit_code) == 2


def test_wrong_password_names_the_auth_stage(postgres_server, make_profile):
    report, res = run(make_profile, postgres_server.dsn(password="Wrong-Pass-123"))
    r = res[REACHABLE]
    assert r.status is Status.ERROR and r.reason == "auth"
    assert r.evidence["stage"] == "auth" and "stage auth" in r.summary
    assert "password authentication failed" in r.summary
    assert res[CONNECTIONS].status is Status.BLOCKED
    text = raw_text(report)
    assert "Wrong-Pass-123" not in text and postgres_server.password not in text


def test_idle_in_transaction_long_query_and_lock_wait(postgres_server, make_profile):
    pid = postgres_server.start_holder("lock")  # holder idle in transaction with a lock, a waiter blocked
    try:
        holder = postgres_server.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND state = 'idle in transaction'",
            (HOLD_APP,))[0][0]
        waiter = postgres_server.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
            (HOLD_APP,))[0][0]
        # the profile's thresholds are seconds; make the sessions older than them
        end = time.monotonic() + 5
        while time.monotonic() < end and postgres_server.execute(
                "SELECT now() - state_change > interval '1.2 s' FROM pg_stat_activity WHERE pid = %s",
                (waiter,))[0][0] is not True:
            time.sleep(0.1)
        report, res = run(make_profile, postgres_server.dsn(), idle_in_transaction_after=1, long_query_after=1,
                          lock_wait_after=1, query_max_chars=40)
        idle = res[IDLE_IN_TRANSACTION]
        assert idle.status is Status.WARN, idle.summary
        sessions = {s["pid"]: s for s in idle.evidence["sessions"]}
        assert holder in sessions and sessions[holder]["duration_s"] >= 1
        assert sessions[holder]["query"].startswith("LOCK TABLE studiodoctor_lab_lock")
        assert len(sessions[holder]["query"]) <= 40
        assert str(holder) in idle.summary

        longq = res[LONG_QUERIES]
        assert longq.status is Status.WARN, longq.summary
        assert [s["pid"] for s in longq.evidence["sessions"]] == [waiter]
        assert longq.evidence["sessions"][0]["query"] == "SELECT count(*) FROM studiodoctor_lab_lock"[:40]

        locks = res[LOCKS]   # a waiter behind a holder idle in transaction: broken at any age
        assert locks.status is Status.FAIL, locks.summary
        assert f"behind pid {holder}, idle in transaction" in locks.summary
        assert "ACCESS EXCLUSIVE" not in locks.summary or "AccessExclusiveLock" in locks.summary
        assert locks.evidence["holders"][0]["holds"] == ["AccessExclusiveLock on studiodoctor_lab_lock"]
        assert locks.evidence["holders"][0]["query"].startswith("LOCK TABLE studiodoctor_lab_lock")
        assert [w["pid"] for w in locks.evidence["waiters"]] == [waiter]
        assert locks.evidence["blockers"] == [holder]
        assert locks.evidence["locks"][0]["pid"] == waiter
        assert locks.evidence["locks"][0]["relation"] == "studiodoctor_lab_lock"
        assert any(c.safety == "mutating" and str(holder) in c.text for c in locks.commands)

        # default thresholds (60 s, 300 s, 10 s): the same sessions are too young to be slow, but the
        # waiter queued behind an idle holder is broken now
        _, res = run(make_profile, postgres_server.dsn())
        assert res[IDLE_IN_TRANSACTION].status is Status.OK
        assert res[LONG_QUERIES].status is Status.OK
        assert res[LOCKS].status is Status.FAIL and res[LOCKS].evidence["waiting"] >= 1, res[LOCKS].summary
    finally:
        postgres_server.stop_holders()
    assert pid not in postgres_server.holders


def test_pg_monitor_role_passes_and_a_role_without_it_cannot_look(postgres_server, make_profile):
    dsn = postgres_server.create_role("doctor_monitor", "monitor-pw-31", monitor=True)
    with postgres_server.connect() as other:  # someone else's session, as in production
        other.execute("SELECT 1")
        report, res = run(make_profile, dsn, idle_in_transaction_after=1)
        assert statuses(res) == {i: Status.OK for i in ALL}, {i: r.summary for i, r in res.items()}
        assert "monitor-pw-31" not in raw_text(report)

        bare = postgres_server.create_role("doctor_bare", "bare-pw-32", monitor=False)
        _, res = run(make_profile, bare)
        assert res[REACHABLE].status is Status.OK
        for cid in (CONNECTIONS, LONG_QUERIES, IDLE_IN_TRANSACTION):
            assert res[cid].status is Status.ERROR and res[cid].reason == "forbidden", res[cid].summary
            assert res[cid].evidence["hidden_sessions"] >= 1
            assert "pg_monitor" in res[cid].hint


def test_connections_near_max_warn_and_full_server_fails(lab_root, make_profile):
    server = PostgresServer(lab_root / "pg-small", max_connections=10).start()
    try:
        server.start_holder("connections", 7)  # + our own session = 8 of 10
        _, res = run(make_profile, server.dsn())
        r = res[CONNECTIONS]
        assert r.status is Status.WARN, r.summary
        assert r.evidence["in_use"] == 8 and r.evidence["max_connections"] == 10
        assert r.evidence["percent"] == 80.0 and "8 of max_connections 10" in r.summary
        assert {"usename": "postgres", "application_name": HOLD_APP, "n": 7} in r.evidence["by_user_application"]

        held = []
        try:  # take every slot left (superuser: the reserved ones too), then try to get in
            while True:
                held.append(server.connect())
        except psycopg.OperationalError as exc:
            assert "too many clients" in str(exc)
        report, res = run(make_profile, server.dsn())
        for conn in held:
            conn.close()
        r = res[REACHABLE]
        assert r.status is Status.FAIL, r.summary
        assert "too many clients" in r.summary and r.evidence["stage"] == "connect"
        assert res[CONNECTIONS].status is Status.BLOCKED
        assert server.password not in raw_text(report)
    finally:
        server.stop()


def test_port_that_never_answers_times_out_within_budget(make_profile):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel completes the TCP handshake; nobody ever answers
        port = listener.getsockname()[1]
        t0 = time.monotonic()
        report, res = run(make_profile, f"postgresql://studio:Hang-Pass-77@127.0.0.1:{port}/db", timeout=2)
        elapsed = time.monotonic() - t0
    assert elapsed < 3
    r = res[REACHABLE]
    assert r.status is Status.FAIL and "timed out" in r.summary and r.reason == "timeout"
    assert r.evidence["stage"] == "startup"
    assert res[LATENCY].status is Status.BLOCKED
    assert "Hang-Pass-77" not in raw_text(report)


def test_query_text_in_evidence_has_its_string_literals_masked(postgres_server, make_profile):
    postgres_server.start_holder("idle-in-transaction")  # its last query: SELECT 'studiodoctor lab: ...'
    try:
        end = time.monotonic() + 5
        while time.monotonic() < end and not postgres_server.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                "AND state = 'idle in transaction' AND now() - state_change > interval '1.2 s'", (HOLD_APP,))[0][0]:
            time.sleep(0.1)
        report, res = run(make_profile, postgres_server.dsn(), idle_in_transaction_after=1)
        idle = res[IDLE_IN_TRANSACTION]
        assert idle.status is Status.WARN, idle.summary
        queries = [s["query"] for s in idle.evidence["sessions"]]
        assert "SELECT '…'" in queries
        assert "studiodoctor lab" not in json.dumps(report.to_dict(Redactor()))
    finally:
        postgres_server.stop_holders()


def _one_round_trip_s(dsn: str) -> float:
    """The slowest of three bare ``SELECT 1`` on an open connection: one round trip through the relay as this
    machine's load makes it now (the relay and the server share the cores with the run)."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute("SELECT 1")
        times = []
        for _ in range(3):
            t0 = time.monotonic()
            conn.execute("SELECT 1").fetchone()
            times.append(time.monotonic() - t0)
    return max(times)


def test_each_query_is_one_round_trip_over_a_pool_within_the_cap(postgres_server, make_profile, tmp_path):
    """PostgreSQL 100 ms away (the lab's delaying relay): a check's statements go out in one pipeline
    (before: BEGIN, set_config, the query, ROLLBACK, four round trips) over the run's pool, which holds
    no more connections than the runner's per-backend cap and counts as one session."""
    from studiodoctor.backends import postgres as pg
    from studiodoctor.lab.latency import Latency
    from studiodoctor.runner import PER_BACKEND

    assert pg.POOL <= PER_BACKEND
    relay = Latency(tmp_path, rtt_ms=100, upstreams=[postgres_server.port]).start()
    try:
        port = relay.delayed[postgres_server.port]
        dsn = postgres_server.dsn().replace(f":{postgres_server.port}/", f":{port}/")
        bare = _one_round_trip_s(dsn)
        _, res = run(make_profile, dsn)
        bare = max(bare, _one_round_trip_s(dsn))
    finally:
        relay.stop()
    # under two round trips: one of 100 ms, plus what this machine's load adds to a bare one now
    two_ms = max(200, 100 + bare * 1000)
    # a SELECT 1 is one round trip of 100 ms: postgres.latency_warn_ms (100) is reached, and says so
    assert res[LATENCY].status is Status.WARN and 100 <= res[LATENCY].evidence["median_ms"] < two_ms, (
        res[LATENCY].evidence, bare)
    assert statuses(res) == {i: Status.OK if i != LATENCY else Status.WARN for i in ALL}, \
        {i: r.summary for i, r in res.items()}
    for cid in (VERSION, CONNECTIONS, LONG_QUERIES, DATABASE_SIZE):  # CONNECTIONS: three statements
        assert res[cid].evidence["round_trips"] == 1
        # one round trip (100 ms), never the four of before (400 ms); the margin is the shared machine's
        assert 100 <= res[cid].network_ms < max(300, two_ms), (cid, res[cid].network_ms, bare)
    ours = [r for r in res[CONNECTIONS].evidence["by_user_application"] if r["application_name"] == "studiodoctor"]
    assert ours == [{"usename": "postgres", "application_name": "studiodoctor", "n": 1}]


def test_select_1_latency_is_the_servers_not_the_interpreters(postgres_server, make_profile, monkeypatch):
    """A loaded run: once postgres.latency's pipeline is all sent (libpq's PQpipelineSync flushes it), another
    thread holds the GIL HOLD_S (asleep, as a busy check would hold it, without taking the server's CPU).
    The answer arrives meanwhile: the check's duration holds the wait, its SELECT 1 latency does not (a
    healthy lab's latency warned at 137 ms on a loaded machine when the clock around the query was read)."""
    import ctypes
    import threading

    from psycopg._pipeline_base import BasePipeline

    from studiodoctor.backends import postgres as pg

    hold_s, held, mine = 0.3, [], threading.local()
    real_send, real_sync = pg._send, BasePipeline._enqueue_sync

    def send(conn, ask, *rest):
        mine.latency = ask.statements == [("SELECT 1", None)]
        return real_send(conn, ask, *rest)

    def hold():
        usleep = ctypes.PyDLL(None).usleep  # keeps the GIL for the call
        usleep.argtypes = [ctypes.c_uint]
        started = threading.Event()
        threading.Thread(target=lambda: (started.set(), usleep(int(hold_s * 1e6))), daemon=True).start()
        started.wait()  # this thread gets the GIL back once the hold is over

    def enqueue_sync(self):
        real_sync(self)
        if getattr(mine, "latency", False) and not held:
            sync = self.command_queue.pop()  # the PQpipelineSync just queued: sends the Sync and flushes

            def sync_then_hold():
                sync()
                held.append(True)
                hold()

            self.command_queue.append(sync_then_hold)

    monkeypatch.setattr(pg, "_send", send)
    monkeypatch.setattr(BasePipeline, "_enqueue_sync", enqueue_sync)
    _, res = run(make_profile, postgres_server.dsn(), latency_samples=1)
    r = res[LATENCY]
    assert held and r.duration_ms >= hold_s * 1000, ("no hold in the check", held, r.duration_ms, r.summary)
    assert r.status is Status.OK and r.evidence["median_ms"] < 100, \
        f"{r.status.value}: {r.summary} while the GIL was held {hold_s * 1000:.0f} ms after the query was sent " \
        f"(duration {r.duration_ms:.0f} ms, network {r.network_ms} ms)"


def test_a_young_lock_behind_an_idle_transaction_fails_and_a_working_holder_only_waits(postgres_server,
                                                                                       make_profile):
    """Three sessions queued behind a transaction left idle with ACCESS EXCLUSIVE on a table: a fail at once
    (no threshold); the same queue behind a holder that is still working stays ok below the wait threshold."""
    postgres_server.start_holder("lock", 3)
    try:
        _, res = run(make_profile, postgres_server.dsn())
        locks = res[LOCKS]
        assert locks.status is Status.FAIL, locks.summary
        assert locks.summary.startswith("3 session(s) wait on studiodoctor_lab_lock behind pid ")
        assert all(w["waiting_s"] < 10 for w in locks.evidence["waiters"])   # young: below any threshold
    finally:
        postgres_server.stop_holders()
    import threading

    with postgres_server.connect() as holder, postgres_server.connect() as waiter:
        holder.execute("CREATE TABLE IF NOT EXISTS studiodoctor_lab_busy (id int)")

        def work():        # the holder is active: it locked the table and is still working
            with holder.transaction():
                holder.execute("LOCK TABLE studiodoctor_lab_busy IN ACCESS EXCLUSIVE MODE")
                holder.execute("SELECT pg_sleep(3)")

        busy = threading.Thread(target=work, daemon=True)
        busy.start()
        end = time.monotonic() + 5
        while time.monotonic() < end and not postgres_server.execute(
                "SELECT count(*) FROM pg_locks WHERE granted AND relation = 'studiodoctor_lab_busy'::regclass "
                "AND mode = 'AccessExclusiveLock'")[0][0]:
            time.sleep(0.05)
        queued = threading.Thread(target=lambda: waiter.execute("SELECT count(*) FROM studiodoctor_lab_busy"),
                                  daemon=True)
        queued.start()
        while time.monotonic() < end and not postgres_server.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted")[0][0]:
            time.sleep(0.05)
        _, res = run(make_profile, postgres_server.dsn())
        assert res[LOCKS].status is Status.OK, res[LOCKS].summary
        assert res[LOCKS].evidence["waiting"] == 1
        assert res[LOCKS].evidence["holders"][0]["state"] == "active"
        busy.join()
        queued.join()


def test_checks_waiting_for_a_connection_leave_in_one_pipeline_each_with_its_own_answer(postgres_server):
    """Five checks' statements queued behind the pool's only connection go out together when it frees up
    (one pipeline, each in its own read-only transaction), and a statement that fails is the failing
    check's error alone: the others still get their rows."""
    import threading

    import psycopg

    from studiodoctor.backends import postgres as pg
    from studiodoctor.context import CheckContext, Shared

    def ctx():
        return CheckContext(None, None, time.monotonic() + 20, Shared())

    target = pg.Target(postgres_server.dsn())
    session = pg.Session(pg.connect(ctx(), target))
    runs, real_run = [], pg._run
    try:
        hold = pg._Ask(ctx(), [])
        conn, _ = session.take(hold, 5, alone=True)      # the pool's one connection, busy
        answers: dict[int, object] = {}

        def check(i: int) -> None:
            sql = "SELECT 1/0 AS x" if i == 3 else f"SELECT {i} AS x, current_setting('transaction_read_only') AS ro"
            try:
                answers[i] = pg.queries(ctx(), [(sql, None)], session=session)[0]
            except psycopg.Error as exc:
                answers[i] = exc

        pg._run = lambda c, batch: (runs.append(len(batch)), real_run(c, batch))[1]
        threads = [threading.Thread(target=check, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        end = time.monotonic() + 10
        while len(session._asks) < 5 and time.monotonic() < end:  # all five waiting: the readiness signal
            time.sleep(0.01)
        assert len(session._asks) == 5, session._asks
        session.give(conn)
        for t in threads:
            t.join(15)
    finally:
        pg._run = real_run
        session.close()
    assert runs == [5], runs   # one pipeline carried all five
    assert isinstance(answers[3], psycopg.errors.DivisionByZero), answers
    for i in (0, 1, 2, 4):
        assert answers[i] == [{"x": i, "ro": "on"}], answers
