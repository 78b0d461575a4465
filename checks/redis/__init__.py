"""Layer `redis`: the Redis that carries Studio's Celery broker (DB 0) and Django cache (DB 1).

Read commands only (PING, INFO, HELLO): the checks pass when run as an ACL user limited to ``-@all +ping
+info`` (``READ_ACL``; AUTH and HELLO need no grant). One client per run, RESP2 forced (Studio's production
Redis is 4.x and rejects the RESP3 ``HELLO 3`` handshake), no retries, every socket call bounded by the
deadline.

Modules by concern: ``connect`` (reachable, latency, version), ``memory`` (memory, evictions), ``server``
(rejected_connections, persistence, role)."""

from __future__ import annotations

from .common import (EVICTIONS, LATENCY, MEMORY, PERSISTENCE, REACHABLE, READ_ACL, REJECTED_CONNECTIONS,
                     ROLE, SDK_IMPORTS, VERSION, unreadable_info)
from . import connect  # noqa: F401 - importing it registers its checks
from . import memory  # noqa: F401 - importing it registers its checks
from . import server  # noqa: F401 - importing it registers its checks
