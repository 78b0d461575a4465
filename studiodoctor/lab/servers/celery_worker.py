"""A real Celery worker for the lab's Studio-like app (``studiodoctor.lab.servers.studio_tasks``).

Fast to start and stop: ``--pool=threads`` by default (like Studio's prefork main process, the worker
answers ping and inspect while a task runs; ``solo`` cannot), no gossip or mingle. Its heartbeats stay on, as
Studio's (``worker-heartbeat`` events every 2 s: what celery.busy_slots reads). The lab runs it with Studio's
``--concurrency=3`` (what its workers Deployment says); tests start it with one slot. The worker listens on
no port: readiness is its ``ready.`` log line; its ``pidfile`` names its process.

Faults (the lab's break/fix):
- worker stopped: ``stop()``; fix ``start()``.
- queue backlog: ``stop()`` then ``backlog(200)``, or with the worker up ``clog(200)`` (long tasks hold
  every slot while 200 wait); fix ``drain()`` (cold restart: the waiting no-op tasks run in ~1 s).
- stuck publish: ``studio_schema.break_publishing(conn)`` / ``fix_publishing(conn)`` (PostgreSQL only).
"""

from __future__ import annotations

import sys
from typing import Any

from ..launcher import LabError, Launcher, log_size, pid_alive, stop_pid, wait_for_log_line


class CeleryWorker(Launcher):
    kind = "celery"

    def __init__(self, root, port: int = 0, broker_url: str = "", queues: str = "celery",
                 pool: str = "threads", concurrency: int = 1, name: str = "studio-worker-1@lab", resp2: bool = True,
                 **options: Any):
        super().__init__(root, port, broker_url=broker_url, queues=queues, pool=pool, concurrency=concurrency,
                         name=name, resp2=resp2, **options)
        if not broker_url:
            raise LabError("a Celery worker needs a broker_url (the lab's Redis)")
        self.broker_url = broker_url
        self.queues = queues
        self.pool = pool
        self.concurrency = concurrency
        self.name = name
        self.resp2 = resp2  # Studio forces RESP2 (its production Redis is 4.x): so does the lab's worker

    def command(self) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "studiodoctor.lab.servers.studio_tasks", "worker",
                "-Q", self.queues, f"--pool={self.pool}", f"--concurrency={self.concurrency}", "-n", self.name,
                "--without-gossip", "--without-mingle", "--loglevel=INFO",
                f"--pidfile={self.pidfile}"]

    @property
    def pidfile(self):
        """Where the worker writes its process id (the Kubernetes stand-in reads it: a worker pod's container
        runs while this process does)."""
        return self.dir / "worker.pid"

    def start(self, timeout: float = 30.0) -> "CeleryWorker":
        from .studio_tasks import BROKER_ENV, RESP2_ENV

        self._remove_stale_pidfile()
        offset = log_size(self.log)
        env = {BROKER_ENV: self.broker_url, RESP2_ENV: "1" if self.resp2 else "0", "PYTHONUNBUFFERED": "1"}
        self.pid = self.spawn(self.command(), env=env)
        try:  # the worker's own "ready." log line
            wait_for_log_line(self.log, offset, " ready.", self.pid, timeout, "celery worker")
        except LabError:
            self.stop()
            raise
        return self

    def _remove_stale_pidfile(self) -> None:
        """A worker killed by a fault (SIGKILL) leaves its pidfile; while nobody has reaped it yet (its parent is
        the process that ran `lab up`, long gone), Celery takes the zombie for a live worker ("Seems we're already
        running?") and refuses to start. A pid that is not alive for us (a zombie counts as dead) is stale."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        if not pid_alive(pid):
            self.pidfile.unlink(missing_ok=True)

    def stop(self, cold: bool = False) -> None:
        """SIGTERM = warm shutdown (running tasks finish; SIGKILL after 10 s); ``cold`` = at once
        (SIGQUIT; SIGKILL for the threads pool, whose cold shutdown cannot cancel a running task)."""
        import signal

        sig = signal.SIGTERM
        if cold:
            sig = signal.SIGKILL if self.pool == "threads" else signal.SIGQUIT
        stop_pid(self.pid, sig, timeout=10.0)

    def backlog(self, count: int = 200, queue: str = "", priority: int | None = None, sleep: float = 0.0) -> None:
        """Fault: publish ``count`` messages to ``queue`` (stop the worker first so they stay waiting).
        ``sleep`` makes each task last that long once a worker takes it."""
        from . import studio_tasks

        studio_tasks.enqueue(count, queue=queue or self.queues.split(",")[0], priority=priority,
                             broker_url=self.broker_url, sleep=sleep)

    def clog(self, count: int = 200, hold: float = 3600.0) -> None:
        """Fault: ``apply_channel_changes`` tasks that run ``hold`` seconds take every slot, ``count`` wait."""
        self.backlog(self.concurrency, sleep=hold)
        self.backlog(count)

    def drain(self, timeout: float = 30.0) -> None:
        """Fix for backlog/clog: kill the worker, put the deliveries it held back on their queue (what
        kombu does itself only after the 4 h visibility timeout), restart it: the no-op tasks then run."""
        self.stop(cold=True)
        self.restore_unacked()
        self.start(timeout)

    def restore_unacked(self) -> int:
        """Move every entry of kombu's ``unacked`` hash back to its queue, as kombu's restore_by_tag does."""
        import json

        import redis

        client = redis.Redis.from_url(self.broker_url, socket_timeout=5, protocol=2)  # RESP2, like Studio
        restored = 0
        for tag, raw in client.hgetall("unacked").items():
            message, _exchange, routing_key = json.loads(raw)
            with client.pipeline() as pipe:
                pipe.lpush(routing_key or self.queues.split(",")[0], json.dumps(message))
                pipe.hdel("unacked", tag).zrem("unacked_index", tag)
                pipe.execute()
            restored += 1
        client.close()
        return restored

    def profile(self) -> dict:
        return {"celery": {"broker_url": self.broker_url, "queues": self.queues.split(","),
                           "expected_workers": 1}}
