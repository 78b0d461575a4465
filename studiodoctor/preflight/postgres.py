"""PostgreSQL: ``current_user``, its role memberships, ``pg_has_role(.., 'pg_monitor', 'member')``,
``has_table_privilege(.., 'SELECT')`` on the Studio tables the checks read."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from ..model import Reason, error
from .common import pf, declared, entry, verdict, first_line


_TABLES = re.compile(r"^SELECT on (.+)$")


@pf("postgres.preflight", title="PostgreSQL: our role and what the postgres/celery checks may read",
    needs=("postgres.dsn",))
def preflight_postgres(ctx):
    """current_user, its role memberships, pg_monitor and SELECT on the Studio tables the checks read."""
    import psycopg

    dsn = str(ctx.config.get("dsn"))
    checks = declared(layers={"postgres"}, ids={c for ids in declared(layers={"celery"}).values() for c in ids})
    t = ctx.timeout(margin=0.2)
    try:
        with psycopg.connect(dsn, connect_timeout=max(1, int(t)), autocommit=True,
                             options=f"-c statement_timeout={int(t * 1000)} -c default_transaction_read_only=on"
                             ) as conn:
            user, session_user, db = conn.execute(
                "SELECT current_user, session_user, current_database()").fetchone()
            roles = [r[0] for r in conn.execute(
                "SELECT rolname FROM pg_roles WHERE pg_has_role(current_user, oid, 'member') "
                "AND rolname <> current_user ORDER BY rolname").fetchall()]
            entries, lines = [], []
            for perm, ids in checks.items():
                if perm == "pg_monitor":
                    has = conn.execute("SELECT pg_has_role(current_user, 'pg_monitor', 'member')").fetchone()[0]
                    entries.append(entry(perm, ids, bool(has), "pg_has_role(current_user, 'pg_monitor', 'member')"))
                    if not has:
                        lines.append(f"GRANT pg_monitor TO {user};")
                elif perm.startswith("CONNECT"):
                    has = conn.execute("SELECT has_database_privilege(current_database(), 'CONNECT')").fetchone()[0]
                    entries.append(entry(perm, ids, bool(has), "has_database_privilege(.., 'CONNECT')"))
                    if not has:
                        lines.append(f'GRANT CONNECT ON DATABASE "{db}" TO {user};')
                elif m := _TABLES.match(perm):
                    missing = []
                    for table in (t.strip() for t in m.group(1).split(",")):
                        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]
                        if not exists:
                            entries.append(entry(f"SELECT on {table}", ids, None, "has_table_privilege",
                                                  detail=f"no table {table} in {db}: is this Studio's database?"))
                            continue
                        has = conn.execute("SELECT has_table_privilege(%s, 'SELECT')", (table,)).fetchone()[0]
                        entries.append(entry(f"SELECT on {table}", ids, bool(has), "has_table_privilege(.., 'SELECT')"))
                        if not has:
                            missing.append(table)
                    if missing:
                        lines.append(f"GRANT SELECT ON {', '.join(missing)} TO {user};")
    except psycopg.OperationalError as exc:
        host = urlsplit(dsn).hostname if "://" in dsn else "?"
        return error(f"postgres: could not connect to {host}: {first_line(exc)}", reason=Reason.UNEXPECTED)
    except psycopg.Error as exc:
        return error(f"postgres: {first_line(exc)}", reason=Reason.UNEXPECTED)
    identity = user + (f" (session {session_user})" if session_user != user else "") + \
        f", member of {', '.join(roles) or 'no other role'}"
    return verdict("postgres", identity, entries, lines, evidence={"database": db, "roles": roles})
