"""A process that holds PostgreSQL sessions open until it is killed (a lab fault).

    STUDIODOCTOR_HOLD_DSN=postgresql://... python -m studiodoctor.lab.servers.pg_hold MODE [N]

MODE: ``connections N`` (N idle sessions), ``idle-in-transaction`` (one session idle in a transaction),
``lock [N [TABLE]]`` (one session holds an ACCESS EXCLUSIVE lock on TABLE, default ``studiodoctor_lab_lock``
(created when missing), while idle in its transaction, and N sessions, default 1, wait for it reading the
table: waiting locks and long active queries).
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


def _wait_on(conn, table: str) -> None:
    try:
        conn.execute(f"SELECT count(*) FROM {table}")
    except Exception:  # the process is being killed
        pass


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
        table = argv[2] if len(argv) > 2 else LOCK_TABLE
        if table == LOCK_TABLE:
            with psycopg.connect(dsn, autocommit=True) as setup:
                setup.execute(f"CREATE TABLE IF NOT EXISTS {LOCK_TABLE} (id int)")
        holder = psycopg.connect(dsn, application_name=APP)
        holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        conns.append(holder)
        for _ in range(n):   # each waiter blocks until the holder goes away
            waiter = psycopg.connect(dsn, application_name=APP, autocommit=True)
            conns.append(waiter)
            threading.Thread(target=_wait_on, args=(waiter, table), daemon=True).start()
    else:
        print(f"unknown mode {mode!r}", file=sys.stderr)
        return 2
    threading.Event().wait()  # hold the sessions until killed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
