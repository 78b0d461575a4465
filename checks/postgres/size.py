"""postgres.database_size."""

from __future__ import annotations

from studiodoctor.model import Reason, error, ok, warn
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import DATABASE_SIZE, REACHABLE, _db_call, _num, _query, _target


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
