"""What the postgres checks share: the check ids, the target of ``postgres.dsn``, queries through the run's
read-only session (``studiodoctor.backends.postgres``) and the numeric settings."""

from __future__ import annotations

from studiodoctor.backends import postgres as pg
from studiodoctor.backends.postgres import Target


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
