"""Layer `celery` against a real redis-server, a real Celery worker and a real PostgreSQL."""

from __future__ import annotations

import json
import time

import pytest
from celery import Celery

from checks.celery import (KOMBU_SEP, QUEUE_DEPTH, SATURATION, STUCK_PUBLISHES, UNACKED,
                           UNACKED_INDEX_KEY, UNACKED_KEY, WORKERS)
from studiodoctor import engine
from studiodoctor.lab import studio_schema
from studiodoctor.lab.servers.celery_worker import CeleryWorker
from studiodoctor.lab.servers.redis_server import RedisServer
from studiodoctor.model import MUTATING, Status
from studiodoctor.registry import Registry, default_registry

CELERY_IDS = (WORKERS, SATURATION, QUEUE_DEPTH, UNACKED, STUCK_PUBLISHES)
WORKER_NAME = "studio-worker-1@lab"


@pytest.fixture
def worker(redis_server):
    """A real Celery worker (threads pool, 1 slot) consuming `celery` from the test's redis-server."""
    w = CeleryWorker(redis_server.dir.parent / "worker", broker_url=redis_server.url(0), name=WORKER_NAME)
    w.start()
    yield w
    w.stop(cold=True)


@pytest.fixture
def studio_db(postgres_server):
    """Studio's tables with a healthy state (one channel, not publishing)."""
    with postgres_server.connect() as conn:
        studio_schema.seed_healthy(conn)
        yield conn


@pytest.fixture
def profile(make_profile, redis_server, postgres_server):
    def make(celery=None, timeout=8, redis_url=None):
        return make_profile({"redis": {"url": redis_url or redis_server.url(0)},
                             "postgres": {"dsn": postgres_server.dsn()},
                             "kubernetes": {"namespace": "studio"},
                             "celery": {"ping_timeout": 1.0, **(celery or {})}}, timeout=timeout)

    return make


def run(profile, registry=None, ids=CELERY_IDS):
    report = engine.check(profile, check_ids=ids, registry=registry)
    return {r.id: r for r in report.results}


def celery_only_registry() -> Registry:
    """Just this layer's checks: their dependencies on other layers are not part of the run."""
    reg = Registry(loaded=True)
    for cid in CELERY_IDS:
        reg.register(default_registry.load_plugins().get(cid))
    return reg


def test_healthy_stack_is_ok(worker, studio_db, profile):
    res = run(profile())
    for cid in CELERY_IDS:
        assert res[cid].status is Status.OK, (cid, res[cid].summary)
    assert res[WORKERS].evidence["workers"] == [WORKER_NAME]
    assert res[SATURATION].evidence["slots"] == 1 and res[SATURATION].evidence["busy"] == 0
    assert res[QUEUE_DEPTH].evidence["queues"]["celery"]["total"] == 0
    assert res[STUCK_PUBLISHES].evidence["publishing"] == []


class RedisWithoutHello(RedisServer):
    """Like Studio's production Redis 4.x: no HELLO command, so RESP3 clients cannot connect."""

    def command(self):
        return super().command() + ["--rename-command", "HELLO", ""]


def test_resp2_broker_without_hello_like_production(lab_root, request, make_profile):
    server = RedisWithoutHello(lab_root / (request.node.name[:30] + "-redis")).start()
    w = None
    try:
        w = CeleryWorker(server.dir.parent / "worker", broker_url=server.url(0), name=WORKER_NAME).start()
        prof = make_profile({"redis": {"url": server.url(0)}, "celery": {"ping_timeout": 1.0}}, timeout=8)
        res = run(prof, registry=celery_only_registry(), ids=(WORKERS, QUEUE_DEPTH, UNACKED))
    finally:
        if w:
            w.stop(cold=True)
        server.stop()
    for cid in (WORKERS, QUEUE_DEPTH, UNACKED):
        assert res[cid].status is Status.OK, (cid, res[cid].summary)
    assert res[WORKERS].evidence["workers"] == [WORKER_NAME]


def test_worker_stopped_fails_within_the_ping_deadline(redis_server, studio_db, profile):
    res = run(profile(timeout=10))
    r = res[WORKERS]
    assert r.status is Status.FAIL
    assert "no Celery worker answered" in r.summary
    assert r.evidence["workers"] == []
    # the ping waits celery.ping_timeout (1 s), not the check's 10 s deadline
    assert r.duration_ms < 5000, r.duration_ms
    assert res[SATURATION].status is Status.BLOCKED and res[SATURATION].blocked_by == [WORKERS]
    assert any("inspect ping" in c.text and "-n studio" in c.text for c in r.commands)


def test_fewer_workers_than_expected_warns_after_waiting(worker, studio_db, profile):
    assert run(profile())[WORKERS].evidence["expected"] is None   # not stated: nothing assumed
    res = run(profile({"expected_workers": 2}))
    assert res[WORKERS].status is Status.WARN
    assert "1 of 2" in res[WORKERS].summary and WORKER_NAME in res[WORKERS].summary


def test_backlog_of_200_warns_with_the_figure(redis_server, studio_db, profile):
    CeleryWorker(redis_server.dir.parent / "worker", broker_url=redis_server.url(0)).backlog(200)
    res = run(profile())
    r = res[QUEUE_DEPTH]
    assert r.status is Status.WARN
    assert "celery has 200 waiting" in r.summary and "threshold 50" in r.summary
    assert r.evidence["total"] == 200
    assert r.evidence["queues"]["celery"]["next_task"] == "apply_channel_changes"
    assert any(c.text.endswith("LLEN celery") for c in r.commands)


def test_priority_sub_queues_are_counted(redis_server, studio_db, profile):
    launcher = CeleryWorker(redis_server.dir.parent / "worker", broker_url=redis_server.url(0))
    launcher.backlog(2)
    launcher.backlog(3, priority=5)
    client = redis_server.client()
    assert client.llen("celery") == 2            # what Flower's bug #1254 reported
    assert client.llen(f"celery{KOMBU_SEP}3") == 3  # where kombu put the priority-5 messages
    res = run(profile({"max_queue_depth": 5}))
    r = res[QUEUE_DEPTH]
    assert r.evidence["queues"]["celery"]["total"] == 5
    assert r.evidence["queues"]["celery"]["by_priority"] == {"0": 2, "3": 3, "6": 0, "9": 0}
    assert r.status is Status.WARN  # 5 >= max_queue_depth 5: only the sub-queue makes it reach it


def test_old_unacked_delivery_warns(redis_server, studio_db, profile):
    CeleryWorker(redis_server.dir.parent / "worker", broker_url=redis_server.url(0)).backlog(1)
    client = redis_server.client()
    raw = client.rpop("celery")  # test setup only: take the real message the way a consumer would
    message = json.loads(raw)
    tag = message["properties"]["delivery_tag"]
    with client.pipeline() as pipe:
        pipe.zadd(UNACKED_INDEX_KEY, {tag: time.time() - 3.5 * 3600})
        pipe.hset(UNACKED_KEY, tag, json.dumps([message, "", "celery"]))
        pipe.execute()
    res = run(profile())
    r = res[UNACKED]
    assert r.status is Status.WARN
    assert r.evidence["unacked"] == 1 and r.evidence["oldest_task"] == "apply_channel_changes"
    assert 3.4 * 3600 < r.evidence["oldest_age_s"] < 3.6 * 3600
    assert "near the 4 h 00 min visibility timeout" in r.summary

    # a young delivery alone is fine
    client.zadd(UNACKED_INDEX_KEY, {tag: time.time() - 60})
    assert run(profile(), ids=(UNACKED,))[UNACKED].status is Status.OK


def test_channel_publishing_for_three_hours_fails_naming_it(worker, studio_db, profile):
    studio_schema.break_publishing(studio_db, hours=3)
    res = run(profile())
    r = res[STUCK_PUBLISHES]
    assert r.status is Status.FAIL
    assert studio_schema.LAB_CHANNEL_ID in r.summary and studio_schema.LAB_CHANNEL_NAME in r.summary
    assert r.evidence["stuck"] == [studio_schema.LAB_CHANNEL_ID]
    assert 2.9 * 3600 < r.evidence["publishing"][0]["age_s"] < 3.1 * 3600
    mutating = [c.text for c in r.commands if c.safety == MUTATING]
    assert any("reconcile_publishing_status" in t for t in mutating)
    assert any("reconcile_change_tasks" in t for t in mutating)
    assert all(t.startswith("kubectl -n studio exec deploy/") for t in mutating)

    studio_schema.fix_publishing(studio_db)
    assert run(profile(), ids=(STUCK_PUBLISHES,))[STUCK_PUBLISHES].status is Status.OK


def test_unapplied_changes_with_no_task_and_no_history_warn_age_unknown(worker, studio_db, profile):
    studio_schema.add_change(studio_db, studio_schema.LAB_CHANNEL_ID)
    r = run(profile(), ids=(STUCK_PUBLISHES,))[STUCK_PUBLISHES]
    assert r.status is Status.WARN
    assert "no task is queued or running to apply them" in r.summary and "age unknown" in r.summary


def test_changes_whose_task_message_was_lost_fail_with_the_tasks_age(worker, studio_db, profile):
    """Studio's enqueue wrote the task's CustomTaskMetadata an hour ago, the broker message never reached a
    worker (the queue is empty, the worker idle; no TaskResult row): the change will never apply."""
    from datetime import datetime, timedelta, timezone

    for _ in range(6):
        studio_schema.add_change(studio_db, studio_schema.LAB_CHANNEL_ID)
    studio_schema.add_enqueued(studio_db, "d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6", studio_schema.LAB_CHANNEL_ID,
                               created=datetime.now(timezone.utc) - timedelta(hours=1))
    r = run(profile(), ids=(STUCK_PUBLISHES,))[STUCK_PUBLISHES]
    assert r.status is Status.FAIL, r.summary
    assert "6 unapplied change(s)" in r.summary and "message was lost" in r.summary and "1 h 00 min" in r.summary
    lost = r.evidence["lost_changes"][0]
    assert lost["task_id"] == "d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6"
    assert lost["age_from"] == "contentcuration_customtaskmetadata.date_created"
    assert any("reconcile_change_tasks" in c.text for c in r.commands if c.safety == MUTATING)
    assert "reconcile_change_tasks" in r.hint


def test_changes_whose_task_is_still_queued_are_not_lost(redis_server, studio_db, profile):
    """Same rows, but messages wait in the queue (no worker yet): the task may be one of them."""
    from datetime import datetime, timedelta, timezone

    from studiodoctor.lab.servers import studio_tasks

    studio_schema.add_change(studio_db, studio_schema.LAB_CHANNEL_ID)
    studio_schema.add_enqueued(studio_db, "a1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6", studio_schema.LAB_CHANNEL_ID,
                               created=datetime.now(timezone.utc) - timedelta(hours=1))
    studio_tasks.enqueue(3, queue="celery", broker_url=redis_server.url(0))
    w = CeleryWorker(redis_server.dir.parent / "worker", broker_url=redis_server.url(0), name=WORKER_NAME,
                     queues="other")
    w.start()
    try:
        r = run(profile(), ids=(STUCK_PUBLISHES,))[STUCK_PUBLISHES]
    finally:
        w.stop(cold=True)
    assert r.evidence["lost_changes"] == [] and r.evidence["queued"] == 3, r.summary


def test_publish_killed_mid_way_fails_at_once(worker, studio_db, profile):
    """The worker was OOM-killed 5 minutes into a publish: far from the 2 h rule, but nothing will finish it."""
    studio_schema.break_publishing(studio_db, hours=5 / 60)
    r = run(profile(), ids=(STUCK_PUBLISHES,))[STUCK_PUBLISHES]
    assert r.status is Status.FAIL, r.summary
    assert "killed mid-publish" in r.summary and "WorkerLostError" in r.summary and "STARTED" in r.summary
    assert r.evidence["stuck"] == [studio_schema.LAB_CHANNEL_ID]
    studio_schema.fix_publishing(studio_db)
    assert run(profile(), ids=(STUCK_PUBLISHES,))[STUCK_PUBLISHES].status is Status.OK


def test_publish_that_raised_fails_naming_the_error(worker, studio_db, profile):
    studio_schema.add_task_result(studio_db, "b1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6", "export-channel", "FAILURE",
                                  traceback="Traceback (most recent call last):\n  ...\n"
                                            "google.api_core.exceptions.NotFound: 404 bucket gone",
                                  channel_id=studio_schema.LAB_CHANNEL_ID)
    r = run(profile(), ids=(STUCK_PUBLISHES,))[STUCK_PUBLISHES]
    assert r.status is Status.FAIL and "404 bucket gone" in r.summary, r.summary
    studio_schema.add_task_result(studio_db, "c1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6", "export-channel", "SUCCESS",
                                  channel_id=studio_schema.LAB_CHANNEL_ID)
    assert run(profile(), ids=(STUCK_PUBLISHES,))[STUCK_PUBLISHES].status is Status.OK


def test_busy_worker_with_waiting_tasks_is_saturated(redis_server, studio_db, profile):
    w = CeleryWorker(redis_server.dir.parent / "worker", broker_url=redis_server.url(0), name=WORKER_NAME)
    w.start()
    try:
        w.clog(10, hold=30)  # 1 running 30 s, up to 3 prefetched (unacked), the rest waits on the queue
        probe = Celery("probe", broker=redis_server.url(0), set_as_current=False)
        end = time.monotonic() + 10
        while not any((probe.control.inspect(timeout=0.5, limit=1).active() or {}).values()):
            assert time.monotonic() < end, "the worker never started the long task"
        res = run(profile())
    finally:
        w.stop(cold=True)
    assert res[WORKERS].status is Status.OK  # the worker answers while busy, like Studio's prefork
    assert res[QUEUE_DEPTH].evidence["total"] >= 6
    r = res[SATURATION]   # every slot busy while tasks wait: broken now, whatever the queue's depth or age
    assert r.status is Status.FAIL, r.summary
    assert r.evidence["busy"] == 1 and r.evidence["slots"] == 1 and r.evidence["waiting"] > 0
    assert r.evidence["running_tasks"] == ["apply_channel_changes"]


def test_a_few_tasks_prefetched_behind_the_only_busy_slot_are_waiting(redis_server, studio_db, profile):
    """Three tasks behind a long publish, all prefetched by the worker (prefetch 4): the queue is empty, yet
    they wait. Saturation counts kombu's unacked deliveries that are not running."""
    w = CeleryWorker(redis_server.dir.parent / "worker3", broker_url=redis_server.url(0), name=WORKER_NAME)
    w.start()
    try:
        w.clog(3, hold=30)
        probe = Celery("probe", broker=redis_server.url(0), set_as_current=False)
        end = time.monotonic() + 10
        while not any((probe.control.inspect(timeout=0.5, limit=1).active() or {}).values()):
            assert time.monotonic() < end, "the worker never started the long task"
        # the state this test is about, settled: the queue empty, the three in kombu's unacked deliveries (a
        # loaded machine's worker may still be taking them when the long task starts; a message moving from
        # the queue to unacked between the check's two reads is another question than this one)
        broker = redis_server.client()
        settled = lambda: (broker.llen("celery"), broker.hlen(UNACKED_KEY))  # noqa: E731
        while settled() != (0, 3):
            assert time.monotonic() < end, f"the worker did not prefetch the three: (queued, unacked) {settled()}"
            time.sleep(0.05)
        res = run(profile())
    finally:
        w.stop(cold=True)
    r = res[SATURATION]
    assert res[QUEUE_DEPTH].status is Status.OK, res[QUEUE_DEPTH].summary   # below every depth threshold
    assert r.status is Status.FAIL, r.summary
    assert r.evidence["waiting"] == 3 and r.evidence["queued"] + r.evidence["prefetched"] == 3, (r.summary, r.evidence)
    assert r.evidence["longest_running"]["task"] == "apply_channel_changes", (r.summary, r.evidence)
    assert 0 <= r.evidence["longest_running"]["running_s"] < 30, (r.summary, r.evidence)
    assert "(the longest, apply_channel_changes, for " in r.summary, r.summary


def test_broker_down_alone_fails_fast_as_unreachable(redis_server, studio_db, profile):
    url = redis_server.url(0)
    redis_server.stop()
    t0 = time.monotonic()
    res = run(profile(timeout=10, redis_url=url), registry=celery_only_registry(),
              ids=(WORKERS, QUEUE_DEPTH, UNACKED))
    assert time.monotonic() - t0 < 5
    for cid in (WORKERS, QUEUE_DEPTH, UNACKED):
        assert res[cid].status is Status.FAIL, (cid, res[cid].summary)
        assert "unreachable from here" in res[cid].summary
        assert res[cid].evidence["address"] == url.split("//")[1]


def test_broker_down_blocks_celery_checks_on_redis(redis_server, studio_db, profile):
    assert "redis.reachable" in default_registry.load_plugins().checks
    url = redis_server.url(0)
    redis_server.stop()
    res = run(profile(redis_url=url))
    assert res["redis.reachable"].status is Status.FAIL
    for cid in (WORKERS, SATURATION, QUEUE_DEPTH, UNACKED):
        assert res[cid].status is Status.BLOCKED, (cid, res[cid].summary)
        assert "redis.reachable" in res[cid].blocked_by or WORKERS in res[cid].blocked_by
    assert res[WORKERS].blocked_by == ["redis.reachable"]


def test_postgres_down_blocks_stuck_publishes(redis_server, profile, make_profile):
    from studiodoctor.lab.launcher import free_port

    assert "postgres.reachable" in default_registry.load_plugins().checks
    prof = make_profile({"redis": {"url": redis_server.url(0)},
                         "postgres": {"dsn": f"postgresql://studio:pw@127.0.0.1:{free_port()}/kolibri-studio"}},
                        timeout=5)
    res = run(prof, ids=(STUCK_PUBLISHES,))
    assert res["postgres.reachable"].status is Status.FAIL
    assert res[STUCK_PUBLISHES].status is Status.BLOCKED
    assert res[STUCK_PUBLISHES].blocked_by == ["postgres.reachable"]


def test_every_worker_that_answers_counts_for_saturation(redis_server, studio_db, profile):
    """Studio runs several worker pods. Before, the ping stopped at the first pong (expected_workers = 1)
    and saturation counted that one worker's slots: 'every slot is taken' while the others idled."""
    root = redis_server.dir.parent
    busy = CeleryWorker(root / "busy", broker_url=redis_server.url(0), name="busy@lab")
    idle = CeleryWorker(root / "idle", broker_url=redis_server.url(0), name="idle@lab")
    busy.start()
    try:
        busy.clog(1, hold=30)
        probe = Celery("probe", broker=redis_server.url(0), set_as_current=False)
        end = time.monotonic() + 10
        while not any((probe.control.inspect(timeout=0.5, limit=1).active() or {}).values()):
            assert time.monotonic() < end, "the worker never started the long task"
        idle.start()
        res = run(profile())
    finally:
        idle.stop(cold=True)
        busy.stop(cold=True)
    assert res[WORKERS].status is Status.OK, res[WORKERS].summary
    assert res[WORKERS].evidence["workers"] == ["busy@lab", "idle@lab"]
    r = res[SATURATION]
    assert r.evidence["slots"] == 2 and r.evidence["busy"] == 1, r.evidence
    assert r.status is Status.OK, r.summary
    assert "1 of 2 worker slots busy" in r.summary


def test_read_only_redis_user_is_an_error_naming_the_acl_not_a_broker_failure(worker, studio_db, profile,
                                                                              redis_server):
    """The ping publishes a control message: a Redis user limited to reads gets NOPERM. That is our
    permission (error naming the grant), not the broker failing; the read-only checks still pass."""
    url = redis_server.add_readonly_user("doctor-ro", "ro-secret-1")
    res = run(profile(redis_url=url))
    r = res[WORKERS]
    assert r.status is Status.ERROR, r.summary
    assert r.reason == "forbidden" and "may not ping the workers" in r.summary
    assert "ACL SETUSER doctor-ro +publish" in r.hint
    assert "ro-secret-1" not in r.summary + r.hint
    assert res[SATURATION].status is Status.BLOCKED
    assert res[QUEUE_DEPTH].status is Status.OK and res[UNACKED].status is Status.OK


def test_the_declared_control_acl_is_enough_for_ping_and_inspect(worker, studio_db, profile, redis_server):
    """The grant the error names (CONTROL_ACL plus reads) really is what ping and inspect need."""
    from checks.celery import CONTROL_ACL

    # reads on the app's queue keys only (celery, its priority lists, kombu's unacked hash and index)
    redis_server.client().execute_command("ACL", "SETUSER", "doctor-celery", "reset", "on", ">celery-pw-2",
                                          "~celery*", "~unacked*", "&/0.celery.pidbox", "-@all", "+@read",
                                          "+ping", "+info", "+hello", *CONTROL_ACL)
    res = run(profile(redis_url=redis_server.url(0, user="doctor-celery", password="celery-pw-2")))
    for cid in (WORKERS, SATURATION, QUEUE_DEPTH, UNACKED):
        assert res[cid].status is Status.OK, (cid, res[cid].summary)


def test_ping_and_inspect_declare_broker_control_safety():
    from studiodoctor.model import BROKER_CONTROL, READ_ONLY

    reg = default_registry.load_plugins()
    assert reg.get(WORKERS).safety == BROKER_CONTROL and reg.get(SATURATION).safety == BROKER_CONTROL
    assert all(reg.get(c).safety == READ_ONLY for c in (QUEUE_DEPTH, UNACKED, STUCK_PUBLISHES))


def test_ping_never_requeues_the_apps_unacked_deliveries(studio_db, profile, redis_server):
    """kombu's consumer loop re-queues unacked deliveries older than its visibility timeout (1 h by default;
    Studio's is 4 h). Before, our ping's reply consumer did it: a publish running for 1-4 h was delivered
    to a second worker. The doctor's broadcast must leave the app's deliveries alone."""
    w = CeleryWorker(redis_server.dir.parent / "worker", broker_url=redis_server.url(0), name=WORKER_NAME)
    w.backlog(1)
    client = redis_server.client()
    raw = client.rpop("celery")  # test setup: a delivery a busy worker holds, 2 h old
    message = json.loads(raw)
    tag = message["properties"]["delivery_tag"]
    delivered = time.time() - 2 * 3600
    with client.pipeline() as pipe:
        pipe.zadd(UNACKED_INDEX_KEY, {tag: delivered})
        pipe.hset(UNACKED_KEY, tag, json.dumps([message, "", "celery"]))
        pipe.execute()
    w.start()
    try:
        res = run(profile())
        held = client.hexists(UNACKED_KEY, tag), client.zscore(UNACKED_INDEX_KEY, tag)
        requeued = client.llen("celery")
    finally:
        w.stop(cold=True)
        client.delete(UNACKED_KEY, UNACKED_INDEX_KEY, "celery")
    assert res[WORKERS].status is Status.OK and res[SATURATION].status is Status.OK
    assert held == (True, pytest.approx(delivered)) and requeued == 0
