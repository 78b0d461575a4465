"""The lab's Celery worker launcher: start/stop, state round trip, and the backlog fault and its fix."""

from __future__ import annotations

import time

import pytest

from studiodoctor.lab.servers.celery_worker import CeleryWorker
from studiodoctor.lab.launcher import Launcher
from studiodoctor.lab.servers.redis_server import RedisServer


@pytest.fixture(params=["resp3", "resp2-only"])
def broker(lab_root, request):
    """The lab's Redis, and one without HELLO (like Redis < 6, the other lab variant's)."""
    server = RedisServer(lab_root / f"broker-{request.param}",
                         disable_commands=("HELLO",) if request.param == "resp2-only" else ()).start()
    yield server
    server.stop()


def test_clog_then_drain_empties_the_queue(broker):
    redis_server = broker
    w = CeleryWorker(redis_server.dir.parent / f"worker-{redis_server.port}", broker_url=redis_server.url(0)).start()
    try:
        assert w.alive()
        w.clog(50, hold=60)
        client = redis_server.client()
        assert client.llen("celery") >= 46  # the slot is held; at most 4 were prefetched
        again = CeleryWorker.from_state(w.to_state())  # `lab fix` runs in another process
        assert isinstance(again, Launcher) and again.pid == w.pid
        again.drain()
        w = again
        end = time.monotonic() + 15
        while (client.llen("celery") or client.hlen("unacked")) and time.monotonic() < end:
            time.sleep(0.1)
        assert client.llen("celery") == 0
        assert client.hlen("unacked") == 0  # the deliveries the killed worker held were put back and run
    finally:
        w.stop(cold=True)
    assert not w.alive()
