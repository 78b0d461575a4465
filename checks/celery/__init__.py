"""Layer `celery`: workers answer ping and hold their broker connections, their slots, queue depth,
unacked deliveries, stuck publishes.

Studio's Celery (facts §4, §6): broker Redis DB 0, one queue ``celery``, kombu's ``unacked`` hash and
``unacked_index`` sorted set, ``visibility_timeout`` 4 h, results in Postgres, publishing flags
``main_tree.publishing`` and stays stuck when a worker dies. Everything here only READS the broker:
LLEN/LINDEX/HLEN/HGET/ZRANGE/CLIENT LIST and a SUBSCRIBE to the workers' heartbeats, never a pop. The exceptions are the broadcast ping and inspect, declared
with safety class ``broker-control``: they do what ``celery inspect ping`` does, publish a control message
and read replies on a temporary queue they bind and remove (``CONTROL_ACL`` lists the Redis grants).
Celery and kombu are imported inside the functions only.

Modules by concern: ``workers`` (workers, saturation), ``consumers`` (the workers' connections, read
with CLIENT LIST: what the in-cluster doctor can tell of the workers), ``queues`` (queue_depth, unacked),
``publishes`` (stuck_publishes), ``slots`` (busy_slots: the slots from the workers' heartbeats, read-only)."""

from __future__ import annotations

from .common import (BUSY_SLOTS, CONSUMERS, CONTROL_ACL, DEFAULTS, KOMBU_PRIORITY_STEPS, KOMBU_SEP, POSTGRES_REACHABLE,
                     QUEUE_DEPTH, READ_ACL, REDIS_REACHABLE, SATURATION, SDK_IMPORTS, STUCK_PUBLISHES, UNACKED,
                     UNACKED_INDEX_KEY, UNACKED_KEY, WORKERS, heartbeat_acl)
from . import workers  # noqa: F401 - importing it registers its checks
from . import queues  # noqa: F401 - importing it registers its checks
from . import publishes  # noqa: F401 - importing it registers its checks
from . import consumers  # noqa: F401 - importing it registers its checks
from . import slots  # noqa: F401 - importing it registers its checks
