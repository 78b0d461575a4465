"""Layer `postgres`: Studio's database (Cloud SQL behind cloudsql-proxy in production).

psycopg 3, one connection per run shared by the checks (serialised by a lock), every query in a
``BEGIN READ ONLY`` transaction with a ``statement_timeout`` inside the check's deadline, rolled back.
Works as a role that has only ``pg_monitor`` and CONNECT. The DSN's password is never printed:
results name the endpoint as ``host:port/dbname user=NAME``.

Modules by concern: ``connect`` (reachable, latency, version), ``sessions`` (connections, long_queries,
idle_in_transaction), ``locks`` (waiting locks, their holders), ``size`` (database_size)."""

from __future__ import annotations

from .common import (CONNECTIONS, DATABASE_SIZE, IDLE_IN_TRANSACTION, LATENCY, LOCKS, LONG_QUERIES,
                     REACHABLE, SDK_IMPORTS, VERSION)
from . import connect  # noqa: F401 - importing it registers its checks
from . import sessions  # noqa: F401 - importing it registers its checks
from . import locks  # noqa: F401 - importing it registers its checks
from . import size  # noqa: F401 - importing it registers its checks
