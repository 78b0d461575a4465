"""celery.busy_slots against a real redis-server and real Celery workers: the slots from the workers' own
heartbeats (a SUBSCRIBE, read-only), so that the in-cluster doctor can tell saturated workers for a laptop."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings, strategies as st

from checks.celery import BUSY_SLOTS, READ_ACL, heartbeat_acl
from checks.celery.slots import concurrency_in, deliveries, heartbeat, parse_event, waiting_deliveries
from studiodoctor import engine
from studiodoctor.lab.servers.celery_worker import CeleryWorker
from studiodoctor.lab.servers.redis_server import RedisServer
from studiodoctor.lab.standins import kubernetes as K
from studiodoctor.lab.standins.kubernetes import KubeAPIServer
from studiodoctor.model import READ_ONLY, Status
from studiodoctor.registry import default_registry

CHANNEL = "/0.celeryev/worker.heartbeat"


class SilentWorker(CeleryWorker):
    """A worker started with --without-heartbeat: connected to the broker, but its slots are never told."""

    def command(self) -> list[str]:
        return [*super().command(), "--without-heartbeat"]


def next_heartbeat(redis_server, predicate=lambda beat: True, seconds: float = 15.0) -> dict:
    """The first heartbeat on the real channel that ``predicate`` accepts (the tests' readiness signal)."""
    pubsub = redis_server.client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(CHANNEL)
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            msg = pubsub.get_message(timeout=max(0.05, end - time.monotonic()))
            beat = heartbeat(parse_event(msg["data"])) if msg else None
            if beat and predicate(beat):
                return beat
    finally:
        pubsub.close()
    raise AssertionError(f"no heartbeat on {CHANNEL} matched within {seconds} s")


def wait_for_deliveries(redis_server, count: int, seconds: float = 15.0) -> None:
    end = time.monotonic() + seconds
    while (held := redis_server.client().zcard("unacked_index")) < count:
        assert time.monotonic() < end, f"the worker took {held} of {count} deliveries"
        time.sleep(0.05)


def busy_slots(make_profile, url: str, kube_url: str = "", **celery):
    sections = {"redis": {"url": url}, "celery": celery,
                "kubernetes": {"namespace": "studio", **({"api_url": kube_url} if kube_url else {})}}
    report = engine.check(make_profile(sections, timeout=8), check_ids=[BUSY_SLOTS])
    return {r.id: r for r in report.results}[BUSY_SLOTS]


@pytest.fixture
def started(redis_server):
    workers = []

    def start(launcher=CeleryWorker, name="studio-worker-1@lab", **kw):
        w = launcher(redis_server.dir.parent / f"w-{redis_server.port}-{len(workers)}",
                     broker_url=redis_server.url(0), name=name, **kw)
        workers.append(w)
        return w.start()

    yield start
    for w in workers:
        w.stop(cold=True)


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    server = KubeAPIServer(tmp_path_factory.mktemp("kube-slots"), hostnames=["studio.localtest"]).start()
    server.write_state(K.studio_state(hostnames=("studio.localtest",)))   # workers run --concurrency=3
    yield server
    server.stop()


def test_is_registered_read_only_with_its_explain_and_grants():
    chk = default_registry.load_plugins().get(BUSY_SLOTS)
    assert chk.safety == READ_ONLY and chk.layer == "celery"
    assert "heartbeat" in chk.func.__doc__ and "+subscribe" in chk.func.__doc__
    assert any("+subscribe &/<db>.celeryev/worker.heartbeat" in p for p in chk.permissions), chk.permissions
    assert heartbeat_acl(0) == ("+subscribe", "&" + CHANNEL)


def test_a_real_worker_publishes_its_heartbeat_on_that_channel_as_a_kombu_envelope(started, redis_server):
    started()
    beat = next_heartbeat(redis_server)
    assert beat["hostname"] == "studio-worker-1@lab" and beat["active"] == 0 and beat["freq"] == 2.0, beat
    assert abs(beat["timestamp"] - time.time()) < 30, beat


def test_idle_worker_is_ok_with_the_slots_its_deployment_declares(started, redis_server, make_profile, kube):
    started(concurrency=3)
    next_heartbeat(redis_server)
    r = busy_slots(make_profile, redis_server.url(0), kube.url)
    assert r.status is Status.OK, r.summary
    assert r.summary.startswith("0 of 3 worker slots busy on 1 worker(s), 0 task(s) waiting"), r.summary
    assert "--concurrency 3 in deploy/master-studio-workers" in r.evidence["slots_from"], r.evidence
    assert r.evidence["workers"]["studio-worker-1@lab"]["active"] == 0, r.evidence
    assert 2.0 <= r.evidence["listened_s"] < 6, r.evidence


def test_every_slot_busy_while_tasks_wait_fails_naming_slots_and_tasks(started, redis_server, make_profile):
    w = started()
    w.clog(3, hold=60)        # the only slot runs 60 s; 3 wait, prefetched by the worker (its prefetch is 4)
    wait_for_deliveries(redis_server, 3)
    next_heartbeat(redis_server, lambda beat: beat["active"] == 1)
    r = busy_slots(make_profile, redis_server.url(0), concurrency=1)
    assert r.status is Status.FAIL, r.summary
    assert r.summary.startswith("1 of 1 worker slots busy on 1 worker(s), 3 task(s) waiting "
                                "(apply_channel_changes; 0 on the queue, 3 of them taken by a worker"), r.summary
    assert r.evidence["slots_from"] == "celery.concurrency" and r.evidence["prefetched"] == 3, r.evidence
    assert "rollout" not in r.summary and "Scale the workers" in r.hint


def test_a_studio_like_prefork_worker_counts_its_busy_children(started, redis_server, make_profile):
    """Started as Studio's Makefile starts it (prefork, 2 children here, task events, gossip, mingle): the main
    process heartbeats while both children run long tasks, and the two tasks behind them are its deliveries."""
    from tests.checks.test_celery_consumers import StudioLikeWorker

    w = started(StudioLikeWorker)
    w.backlog(2, sleep=60)
    w.backlog(2)
    wait_for_deliveries(redis_server, 2)
    next_heartbeat(redis_server, lambda beat: beat["active"] == 2)
    r = busy_slots(make_profile, redis_server.url(0), concurrency=2)
    assert r.status is Status.FAIL, r.summary
    assert r.summary.startswith("2 of 2 worker slots busy on 1 worker(s), 2 task(s) waiting"), r.summary


def test_saturation_is_proven_without_knowing_the_concurrency(started, redis_server, make_profile):
    """No celery.concurrency and no Deployment to read: deliveries held a whole heartbeat period without
    starting prove that their worker has no free slot."""
    w = started()
    w.clog(2, hold=60)
    wait_for_deliveries(redis_server, 2)
    r = busy_slots(make_profile, redis_server.url(0))
    assert r.status is Status.FAIL, r.summary
    assert r.evidence["slots"] is None and "set celery.concurrency" in r.evidence["slots_from"], r.evidence
    assert r.evidence["held_a_heartbeat_period"] == 2 and r.evidence["longest_held_s"] >= 2, r.evidence
    assert "1 task(s) running (slots per worker unknown) on 1 worker(s), 2 task(s) waiting" in r.summary, r.summary


def test_a_task_due_later_is_scheduled_not_waiting(started, redis_server, make_profile):
    from studiodoctor.lab.servers import studio_tasks

    started()
    with studio_tasks.resp2(), studio_tasks.app.connection_for_write(redis_server.url(0)) as conn:
        studio_tasks.apply_channel_changes.apply_async(countdown=600, connection=conn)
    wait_for_deliveries(redis_server, 1)   # a worker holds an ETA task unacked until it is due
    r = busy_slots(make_profile, redis_server.url(0), concurrency=1)
    assert r.status is Status.OK, r.summary
    assert r.evidence["scheduled"] == 1 and r.evidence["waiting"] == 0, r.evidence


def test_a_stopped_worker_is_unknown_never_ok(started, redis_server, make_profile):
    w = started()
    next_heartbeat(redis_server)
    w.stop(cold=True)
    r = busy_slots(make_profile, redis_server.url(0), concurrency=1)
    assert r.status is Status.ERROR, r.summary
    assert r.summary.startswith(f"no Celery worker heartbeat on {CHANNEL} within "), r.summary
    assert r.evidence["workers_heard"] == 0, r.evidence


def test_a_connected_worker_that_sends_no_heartbeat_leaves_its_slots_unknown(started, redis_server, make_profile):
    """Tasks wait on a queue only the silent worker would serve: whether its slots are full is unknown."""
    started(name="beating@lab")
    started(SilentWorker, name="silent@lab")
    next_heartbeat(redis_server)
    redis_server.client().lpush("spare", b"{}")   # a queue the beating worker does not consume
    r = busy_slots(make_profile, redis_server.url(0), concurrency=1, queues=["celery", "spare"])
    assert r.status is Status.ERROR, r.summary
    assert "only 1 of 2 connected worker(s) sent a heartbeat" in r.summary, r.summary
    assert list(r.evidence["workers"]) == ["beating@lab"], r.evidence
    assert r.evidence["waiting"] == 1, r.evidence
    assert r.evidence["listened_s"] >= 4.9, r.evidence   # it waited a heartbeat period more for the silent one


def test_with_nothing_waiting_a_silent_worker_leaves_no_slot_short(started, redis_server, make_profile):
    """No task waits: no slot is short whatever the silent worker runs (Studio's own worker beside a web process
    holding a broadcast's reply queue read as two workers in the studio lab, all on one host)."""
    started(name="beating@lab")
    started(SilentWorker, name="silent@lab")
    next_heartbeat(redis_server)
    r = busy_slots(make_profile, redis_server.url(0), concurrency=1)
    assert r.status is Status.OK, r.summary
    assert "no task waits, so no slot is short" in r.summary, r.summary
    assert r.evidence["workers_unheard"] == 1 and r.evidence["waiting"] == 0, r.evidence


@pytest.mark.parametrize("grants, lacks", [
    ((), "+subscribe: ACL SETUSER doctor-beat +subscribe"),
    (("+subscribe",), f"&{CHANNEL}: ACL SETUSER doctor-beat &{CHANNEL}")])
def test_no_pubsub_permission_is_an_error_naming_the_acl_line(started, redis_server, make_profile, grants, lacks):
    started()
    redis_server.client().execute_command("ACL", "SETUSER", "doctor-beat", "reset", "on", ">beat-pw-7", "-@all",
                                          "+hello", *READ_ACL, *grants)
    r = busy_slots(make_profile, redis_server.url(0, user="doctor-beat", password="beat-pw-7"), concurrency=1)
    assert r.status is Status.ERROR and r.reason == "forbidden", r.summary
    assert f"ACL user doctor-beat lacks {lacks}" in r.summary, r.summary
    assert f"+subscribe &{CHANNEL}" in r.hint, r.hint
    assert "beat-pw-7" not in json.dumps(r.to_dict())


def test_a_resp2_only_redis_without_hello(lab_root, make_profile):
    """The other lab variant's Redis (HELLO disabled, as production's 4.x rejects it): same answer."""
    server = RedisServer(lab_root / "redis-no-hello-slots", disable_commands=("HELLO",)).start()
    w = CeleryWorker(lab_root / "worker-no-hello", broker_url=server.url(0)).start()
    try:
        next_heartbeat(server)
        r = busy_slots(make_profile, server.url(0), concurrency=1)
    finally:
        w.stop(cold=True)
        server.stop()
    assert r.status is Status.OK and r.summary.startswith("0 of 1 worker slots busy"), r.summary


@pytest.mark.parametrize("command, size", [
    ("make prodceleryworkers", None),
    ("make prodceleryworkers celery -A contentcuration worker -l info --concurrency=3 --task-events", 3),
    ("celery -A contentcuration worker -c 4", 4), ("celery -A app worker -c8", 8),
    ("sh -c 'celery -A app worker --concurrency 5'", 5), ("celery -A app worker --autoscale=10,3", 10),
    ("celery -A contentcuration worker", None), ("sh -c celery", None), ("celery -A x worker -c zero", None)])
def test_the_concurrency_a_worker_command_line_sets(command, size):
    assert concurrency_in(command) == size


def test_held_deliveries_wait_unless_due_later_or_running_with_acks_late():
    now = 1000.0
    held = [{"task": "a", "id": "1", "delivered_at": now - 30, "eta": None},
            {"task": "b", "id": "2", "delivered_at": now - 0.5, "eta": None},
            {"task": "c", "id": "3", "delivered_at": now - 60, "eta": now + 300}]
    wait = waiting_deliveries(held, now, 2.0, busy=1, acks_late=False)
    assert [d["id"] for d in wait["prefetched"]] == ["1", "2"] and [d["id"] for d in wait["held"]] == ["1"]
    assert wait["scheduled"] == 1
    late = waiting_deliveries(held, now, 2.0, busy=1, acks_late=True)   # the oldest is the running task
    assert [d["id"] for d in late["prefetched"]] == ["2"] and late["held"] == []


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300)
       | st.dictionaries(st.sampled_from(["body", "properties", "type"]),
                         st.none() | st.integers() | st.text(max_size=40) | st.dictionaries(st.text(max_size=5),
                                                                                            st.text(max_size=5)))
       .map(json.dumps))
def test_any_message_on_the_channel_parses_without_raising(raw):
    assert heartbeat(parse_event(raw)) is None or isinstance(heartbeat(parse_event(raw))["active"], int)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=8), st.floats(allow_nan=False, allow_infinity=False)), max_size=5),
       st.lists(st.none() | st.binary(max_size=60) | st.text(max_size=60), max_size=5))
def test_any_unacked_entry_reads_without_raising(scored, bodies):
    for d in deliveries(scored, bodies):
        assert d["task"] is None or isinstance(d["task"], str)
