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


def test_the_worker_pods_run_while_the_worker_process_does(lab_root, make_profile):
    """The Kubernetes stand-in reports each worker pod's container as the kubelet would its main process:
    running and Ready while the lab's worker runs, terminated and not Ready once it is stopped (read through
    the kubernetes layer, as a user would), Ready again after a restart."""
    from studiodoctor import engine
    from studiodoctor.lab.standins import kubernetes as K
    from studiodoctor.lab.standins.kubernetes import KubeAPIServer
    from studiodoctor.model import Status

    redis_server = RedisServer(lab_root / "broker-pods").start()
    kube = KubeAPIServer(lab_root / "kube-pods")
    worker = CeleryWorker(lab_root / "worker-pods", broker_url=redis_server.url(0))
    try:
        worker.start()
        kube.start(state=K.studio_state(workers=2))
        kube.connect_processes("workers", "worker", worker.pidfile, "celery")
        profile = make_profile({"kubernetes": {"api_url": kube.url, "namespace": "studio"}}, timeout=5)

        def pods_ready():
            return {r.id: r for r in engine.check(profile, check_ids=["kubernetes.pods_ready"]).results}[
                "kubernetes.pods_ready"]

        def settles_to(status, seconds=15.0):   # the stand-in re-reads its state at most once a second
            end = time.monotonic() + seconds
            while (r := pods_ready()).status is not status and time.monotonic() < end:
                time.sleep(0.2)
            return r

        r = settles_to(Status.OK)
        assert r.status is Status.OK, r.summary
        worker.stop()
        r = settles_to(Status.FAIL)
        assert r.status is Status.FAIL and "master-studio-workers" in r.summary, r.summary
        assert "worker: terminated (Error)" in str(r.evidence), r.evidence
        worker.start()
        r = settles_to(Status.OK)
        assert r.status is Status.OK, r.summary
    finally:
        worker.stop(cold=True)
        kube.stop()
        redis_server.stop()
