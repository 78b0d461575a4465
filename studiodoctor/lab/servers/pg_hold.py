"""A process that holds PostgreSQL sessions open until it is killed (a lab fault).

    STUDIODOCTOR_HOLD_DSN=postgresql://... python -m studiodoctor.lab.servers.pg_hold MODE [N]

MODE: ``connections N`` (N idle sessions), ``idle-in-transaction`` (one session idle in a transaction),
``lock`` (one session holds an ACCESS EXCLUSIVE lock on ``studiodoctor_lab_lock`` while idle in its
transaction, and a second session waits for it: a waiting lock and a long active query).
Every session has ``application_name = studiodoctor-lab-hold``. The DSN comes from the environment,
never from argv (ps shows argv).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

APP = "studiodoctor-lab-hold"
LOCK_TABLE = "studiodoctor_lab_lock"


def main(argv: list[str]) -> int:
    import psycopg

    mode = argv[0] if argv else "idle-in-transaction"
    n = int(argv[1]) if len(argv) > 1 else 1
    dsn = os.environ["STUDIODOCTOR_HOLD_DSN"]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    conns = []
    if mode == "connections":
        conns = [psycopg.connect(dsn, application_name=APP, autocommit=True) for _ in range(n)]
    elif mode == "idle-in-transaction":
        conn = psycopg.connect(dsn, application_name=APP)
        conn.execute("SELECT 'studiodoctor lab: idle in transaction'")
        conns.append(conn)
    elif mode == "lock":
        with psycopg.connect(dsn, autocommit=True) as setup:
            setup.execute(f"CREATE TABLE IF NOT EXISTS {LOCK_TABLE} (id int)")
        holder = psycopg.connect(dsn, application_name=APP)
        holder.execute(f"LOCK TABLE {LOCK_TABLE} IN ACCESS EXCLUSIVE MODE")
        conns.append(holder)
        waiter = psycopg.connect(dsn, application_name=APP, autocommit=True)
        conns.append(waiter)
        waiter.execute(f"SELECT count(*) FROM {LOCK_TABLE}")  # blocks until the holder goes away
    elif mode == "lock-table":
        # an open transaction holding ACCESS EXCLUSIVE on a table of the app's (STUDIODOCTOR_HOLD_TABLE),
        # idle: every reader of that table waits behind it
        from psycopg import sql

        holder = psycopg.connect(dsn, application_name=APP)
        holder.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
            sql.Identifier(os.environ["STUDIODOCTOR_HOLD_TABLE"])))
        conns.append(holder)
    else:
        print(f"unknown mode {mode!r}", file=sys.stderr)
        return 2
    threading.Event().wait()  # hold the sessions until killed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
