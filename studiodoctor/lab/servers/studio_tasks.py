"""A small Celery app named like Studio's (``contentcuration``) for the lab and the tests.

Its tasks carry Studio's names (facts §4) so that what a check shows (queue contents, unacked
deliveries, active tasks) reads like production. The broker comes from ``$STUDIODOCTOR_CELERY_BROKER``
so that the launcher (``studiodoctor.lab.servers.celery_worker``) points it at the lab's Redis.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

from celery import Celery

BROKER_ENV = "STUDIODOCTOR_CELERY_BROKER"
RESP2_ENV = "STUDIODOCTOR_CELERY_RESP2"
DEFAULT_QUEUE = "celery"

if os.environ.get(RESP2_ENV) == "1":
    # What Studio's settings do (commit ea3ca3497): production Redis 4.x rejects redis-py 8's RESP3
    # HELLO, so force RESP2 process-wide. Only in the worker process (the launcher sets the variable).
    import redis.connection
    import redis.utils

    redis.utils.DEFAULT_RESP_VERSION = 2
    redis.connection.DEFAULT_RESP_VERSION = 2

app = Celery("contentcuration")
app.conf.update(
    broker_url=os.environ.get(BROKER_ENV, "redis://127.0.0.1:6379/0"),
    # Studio's settings (facts §4): JSON only, 4 h visibility timeout, task events, the default queue.
    broker_transport_options={"visibility_timeout": 4 * 3600},
    task_default_queue=DEFAULT_QUEUE,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,          # Studio keeps results in Postgres (django-db); the lab does not need them
    worker_send_task_events=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="apply_channel_changes")
def apply_channel_changes(channel_id: str = "", sleep: float = 0.0) -> str:
    """Studio applies a channel's Change rows (publishing included) in this task."""
    if sleep:
        time.sleep(float(sleep))
    return channel_id


@app.task(name="apply_user_changes")
def apply_user_changes(user_id: int = 0, sleep: float = 0.0) -> int:
    if sleep:
        time.sleep(float(sleep))
    return user_id


@contextmanager
def resp2():
    """Within the block, new redis-py connections speak RESP2, as Studio's do (a Redis without HELLO,
    like production's 4.x, rejects redis-py 8's RESP3 handshake). kombu offers no protocol option,
    so the default is switched for the block and restored: the lab's own publishing, not the checks'."""
    import redis.connection
    import redis.utils

    modules = (redis.utils, redis.connection)
    before = [m.DEFAULT_RESP_VERSION for m in modules]
    for m in modules:
        m.DEFAULT_RESP_VERSION = 2
    try:
        yield
    finally:
        for m, value in zip(modules, before):
            m.DEFAULT_RESP_VERSION = value


def enqueue(count: int, queue: str = DEFAULT_QUEUE, priority: int | None = None, channel_id: str = "",
            broker_url: str | None = None, sleep: float = 0.0) -> None:
    """Publish ``count`` ``apply_channel_changes`` messages (a backlog) to ``broker_url`` (default: the
    app's) over one connection, without running them (over RESP2, like Studio's clients)."""
    with resp2(), app.connection_for_write(broker_url or None) as conn:
        with app.amqp.Producer(conn) as producer:
            for _ in range(count):
                apply_channel_changes.apply_async(kwargs={"channel_id": channel_id, "sleep": sleep}, queue=queue,
                                                  priority=priority, producer=producer)
