"""celery.consumers against a real redis-server and real Celery workers: the workers' broker connections
(CLIENT LIST), read-only, so the in-cluster doctor can tell a stopped worker."""

from __future__ import annotations

import sys
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st
from celery import Celery

from checks.celery import CONSUMERS
from checks.celery.consumers import parse_client_list, worker_connections
from studiodoctor import engine
from studiodoctor.lab.servers.celery_worker import CeleryWorker
from studiodoctor.lab.servers.redis_server import RedisServer
from studiodoctor.model import READ_ONLY, Status
from studiodoctor.registry import default_registry

WORKER_NAME = "studio-worker-1@lab"


class StudioLikeWorker(CeleryWorker):
    """Started as Studio's `make prodceleryworkers` starts it: prefork, task events, gossip, mingle and
    heartbeat on (the lab's worker turns those off to start fast)."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "celery", "-A", "studiodoctor.lab.servers.studio_tasks", "worker",
                "-Q", self.queues, "--pool=prefork", "--concurrency=2", "-n", self.name, "--task-events",
                "--loglevel=INFO"]


def consumers(redis_server, db: int = 0) -> dict:
    return worker_connections(parse_client_list(redis_server.client().execute_command("CLIENT", "LIST")), db)


def wait_for(predicate, seconds: float, what: str):
    end = time.monotonic() + seconds
    while not (value := predicate()):
        assert time.monotonic() < end, what
        time.sleep(0.05)
    return value


def result(make_profile, url: str, **celery):
    report = engine.check(make_profile({"redis": {"url": url}, "kubernetes": {"namespace": "studio"},
                                        "celery": celery}, timeout=8), check_ids=[CONSUMERS])
    return {r.id: r for r in report.results}[CONSUMERS]


def test_is_registered_read_only_with_its_explain():
    check = default_registry.load_plugins().get(CONSUMERS)
    assert check.safety == READ_ONLY and check.layer == "celery"
    assert "CLIENT LIST" in check.func.__doc__ and "+client|list" in check.func.__doc__


@pytest.mark.parametrize("launcher", [CeleryWorker, StudioLikeWorker], ids=["lab-worker", "studio-like"])
def test_a_connected_worker_is_ok_and_a_stopped_one_fails(launcher, redis_server, make_profile):
    worker = launcher(redis_server.dir.parent / f"worker-{redis_server.port}", broker_url=redis_server.url(0),
                      name=WORKER_NAME).start()
    try:
        r = result(make_profile, redis_server.url(0))
        assert r.status is Status.OK, r.summary
        assert r.evidence["workers"] == 1, r.evidence   # one worker, whatever its pool and gossip connections
        assert "1 Celery worker(s) connected to the broker: 127.0.0.1:" in r.summary, r.summary
        assert r.evidence["expected"] is None
        assert result(make_profile, redis_server.url(0), expected_workers=2).status is Status.WARN
    finally:
        worker.stop(cold=True)
    # the process is gone; Redis drops its connections when it reads their close
    wait_for(lambda: not consumers(redis_server)["workers"], 10, "the stopped worker's connections stayed")
    r = result(make_profile, redis_server.url(0))
    assert r.status is Status.FAIL, r.summary
    assert r.summary.startswith("no Celery worker is connected to the broker 127.0.0.1:"), r.summary
    assert any("CLIENT LIST" in c.text and c.safety == READ_ONLY for c in r.commands)
    assert "rollout restart deploy/studio-studio-workers" in r.hint, r.hint


def test_queued_tasks_are_named_when_no_worker_takes_them(redis_server, make_profile):
    CeleryWorker(redis_server.dir.parent / "worker", broker_url=redis_server.url(0)).backlog(7)
    r = result(make_profile, redis_server.url(0))
    assert r.status is Status.FAIL and r.evidence["queued"] == 7, r.summary
    assert "7 task(s) queued" in r.summary, r.summary


def test_a_ping_reply_queue_is_not_taken_for_a_worker(redis_server, make_profile):
    """Another doctor's (or Flower's) broadcast waits on its reply queue with BRPOP: no worker for all that."""
    app = Celery("other-doctor", broker=redis_server.url(0), set_as_current=False)
    pinging = threading.Thread(target=lambda: app.control.ping(timeout=6), daemon=True)
    pinging.start()
    try:
        wait_for(lambda: consumers(redis_server)["unpaired"], 10, "the ping's reply consumer never blocked")
        r = result(make_profile, redis_server.url(0))
    finally:
        pinging.join(15)
        app.close()
    assert r.status is Status.FAIL, r.summary
    assert len(r.evidence["unpaired_consumers"]) == 1, r.evidence


def test_a_redis_user_without_client_list_gets_an_error_naming_the_grant(redis_server, make_profile):
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", "no-clients", "on", ">pw-31", "~*", "+@all", "-client|list")
    r = result(make_profile, redis_server.url(0, user="no-clients", password="pw-31"))
    assert r.status is Status.ERROR and r.reason == "forbidden", r.summary
    assert "lacks +client|list: ACL SETUSER no-clients +client|list" in r.summary, r.summary
    assert "pw-31" not in r.summary + r.hint


def test_a_redis_that_renames_client_gets_an_error_saying_so(lab_root, make_profile):
    server = RedisServer(lab_root / "redis-no-client", disable_commands=("CLIENT",)).start()
    try:
        r = result(make_profile, server.url(0))
    finally:
        server.stop()
    assert r.status is Status.ERROR and r.reason == "forbidden", r.summary
    assert "this Redis does not allow CLIENT LIST" in r.summary, r.summary


@pytest.mark.parametrize("raw", [b"", b"garbage", "id=1 addr=1.2.3.4:5 db=x cmd=brpop psub=z", None,
                                 b"id=1 addr=[::1]:5 db=0 cmd=brpop flags=b\nid=2 addr=[::1]:6 db=0 psub=1"])
def test_hostile_client_lists_never_raise(raw):
    seen = worker_connections(parse_client_list(raw), 0)
    assert seen["clients"] <= 2 and len(seen["workers"]) <= 1


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400))
def test_any_client_list_answer_parses_without_raising(raw):
    seen = worker_connections(parse_client_list(raw), 0)
    assert len(seen["workers"]) + len(seen["unpaired"]) <= seen["clients"]
