"""Layer `redis` against a real redis-server (fixtures start one per test on a free port)."""

from __future__ import annotations

import json
import socket
import time

import pytest

from checks.redis import (EVICTIONS, LATENCY, MEMORY, PERSISTENCE, REACHABLE, REJECTED_CONNECTIONS, ROLE,
                          VERSION)
from studiodoctor import engine
from studiodoctor.lab.launcher import free_port
from studiodoctor.lab.servers.redis_server import RedisServer
from studiodoctor.model import Status

ALL = (REACHABLE, LATENCY, VERSION, MEMORY, EVICTIONS, REJECTED_CONNECTIONS, PERSISTENCE, ROLE)
PASSWORD = "redis-Secret-4711"


def run(make_profile, timeout=5, **redis_section):
    profile = make_profile({"redis": redis_section}, timeout=timeout)
    report = engine.check(profile, layers=["redis"], timeout=timeout)
    return report, {r.id: r for r in report.results}


def raw_text(report) -> str:
    """Every result as the JSON report carries it, before any redaction."""
    return json.dumps([r.to_dict() for r in report.results], default=str)


@pytest.fixture
def secured_redis(lab_root, request):
    server = RedisServer(lab_root / ("pw-" + request.node.name[:40]), password=PASSWORD).start()
    yield server
    server.stop()


def test_healthy_every_check_ok_and_password_never_shown(secured_redis, make_profile):
    report, res = run(make_profile, url=secured_redis.url())
    assert set(res) == set(ALL)
    assert {i: r.status for i, r in res.items()} == {i: Status.OK for i in ALL}, \
        {i: r.summary for i, r in res.items()}
    assert res[REACHABLE].evidence["stage"] == "ok"
    assert res[VERSION].evidence["redis_version"].startswith("7.")
    assert res[VERSION].evidence["resp3_supported"] is True
    assert res[ROLE].evidence["role"] == "master"
    assert res[LATENCY].evidence["samples"] == 5
    assert PASSWORD not in raw_text(report)
    # the staged connect and the commands' round trips are the checks' network time (issue 18)
    for cid in (REACHABLE, LATENCY):
        assert 0 < res[cid].network_ms <= res[cid].duration_ms + 0.1, (cid, res[cid].network_ms)
    assert all(r.network_ms is None or r.network_ms <= r.duration_ms + 0.1 for r in res.values())


def test_stopped_redis_fails_with_refused_address_and_blocks_dependents(redis_server, make_profile):
    url = redis_server.url()
    redis_server.stop()
    t0 = time.monotonic()
    report, res = run(make_profile, url=url)
    assert time.monotonic() - t0 < 2  # no retries: a refused port answers at once
    r = res[REACHABLE]
    assert r.status is Status.FAIL
    assert r.evidence["stage"] == "tcp"
    assert r.evidence["address"] == redis_server.address
    assert redis_server.address in r.summary and "connection refused" in r.summary
    for cid in ALL[1:]:
        assert res[cid].status is Status.BLOCKED and res[cid].blocked_by == [REACHABLE]
    assert int(report.exit_code) == 2


def test_wrong_password_names_the_auth_stage(secured_redis, make_profile):
    report, res = run(make_profile, url=secured_redis.url(password="not-the-password"))
    r = res[REACHABLE]
    assert r.status is Status.ERROR and r.reason == "auth"
    assert r.evidence["stage"] == "auth"
    assert "stage auth" in r.summary
    assert res[MEMORY].status is Status.BLOCKED
    assert "not-the-password" not in raw_text(report) and PASSWORD not in raw_text(report)


def test_unknown_host_names_the_dns_stage(make_profile):
    report, res = run(make_profile, url="redis://no-such-host.invalid:6379/0")
    assert res[REACHABLE].status is Status.FAIL
    assert res[REACHABLE].evidence["stage"] == "dns"


def test_memory_nearly_full_warns_then_fails_with_figures(redis_server, make_profile):
    mem = redis_server.fill_memory(85, limit_bytes=3 * 1024 * 1024)
    pct = mem["used_memory"] * 100 / mem["maxmemory"]
    assert 85 <= pct < 95
    _, res = run(make_profile, url=redis_server.url())
    r = res[MEMORY]
    assert r.status is Status.WARN, r.summary
    assert r.evidence["maxmemory"] == mem["maxmemory"]
    assert 85 <= r.evidence["percent"] < 95
    assert f"{r.evidence['percent']:.1f} %" in r.summary

    redis_server.fill_memory(96)
    _, res = run(make_profile, url=redis_server.url(), memory_fail_percent=95)
    r = res[MEMORY]
    assert r.status is Status.FAIL, r.summary
    assert r.evidence["percent"] >= 95 and "noeviction" in r.summary

    # the thresholds are the profile's
    _, res = run(make_profile, url=redis_server.url(), memory_warn_percent=99.9, memory_fail_percent=100.1)
    assert res[MEMORY].status is Status.OK


def test_evictions_and_rejected_connections_are_reported(redis_server, make_profile):
    assert redis_server.cause_evictions() > 0
    redis_server.clear_fill()
    assert redis_server.cause_rejected_connections() > 0
    stats = redis_server.info("stats")
    evicted, rejected = stats["evicted_keys"], stats["rejected_connections"]
    _, res = run(make_profile, url=redis_server.url())
    assert res[EVICTIONS].status is Status.WARN
    assert res[EVICTIONS].evidence["evicted_keys"] == evicted
    assert res[REJECTED_CONNECTIONS].status is Status.WARN
    assert res[REJECTED_CONNECTIONS].evidence["rejected_connections"] == rejected
    assert res[MEMORY].status is Status.OK


def test_failed_background_save_fails_persistence(redis_server, make_profile):
    redis_server.break_persistence()
    _, res = run(make_profile, url=redis_server.url())
    assert res[PERSISTENCE].status is Status.FAIL
    assert res[PERSISTENCE].evidence["rdb_last_bgsave_status"] == "err"
    redis_server.fix_persistence()
    _, res = run(make_profile, url=redis_server.url())
    assert res[PERSISTENCE].status is Status.OK


def test_replica_fails_role_unless_expected(redis_server, lab_root, make_profile):
    master_port = free_port()  # nothing listens there: the master link stays down
    redis_server.make_replica_of("127.0.0.1", master_port)
    _, res = run(make_profile, url=redis_server.url())
    r = res[ROLE]
    assert r.status is Status.FAIL and "READONLY" in r.summary
    assert r.evidence["master_port"] == master_port
    _, res = run(make_profile, url=redis_server.url(), expected_role="any")
    assert res[ROLE].status is Status.FAIL and res[ROLE].evidence["master_link_status"] == "down"

    master = RedisServer(lab_root / "role-master").start()
    try:
        master.client().config_set("repl-diskless-sync-delay", 0)  # sync at once, not after 5 s
        redis_server.make_replica_of("127.0.0.1", master.port)
        deadline = time.monotonic() + 10
        while redis_server.info("replication").get("master_link_status") != "up" and time.monotonic() < deadline:
            time.sleep(0.05)
        _, res = run(make_profile, url=redis_server.url(), expected_role="replica")
        assert res[ROLE].status is Status.OK and res[ROLE].evidence["master_link_status"] == "up"
        _, res = run(make_profile, url=master.url())
        assert res[ROLE].status is Status.OK and res[ROLE].evidence["connected_slaves"] == 1
    finally:
        redis_server.make_master()
        master.stop()


def test_server_without_resp3_warns_while_client_default_is_resp3(lab_root, make_profile):
    # rename-command HELLO "" answers HELLO exactly like Redis 4: ERR unknown command 'HELLO'
    server = RedisServer(lab_root / "no-resp3", password=PASSWORD, disable_commands=("HELLO",)).start()
    try:
        report, res = run(make_profile, url=server.url())
        assert res[REACHABLE].status is Status.OK  # RESP2 forced: the handshake works without HELLO
        assert PASSWORD not in raw_text(report)  # Redis echoes "HELLO 3 AUTH default <password>" args
        r = res[VERSION]
        assert r.evidence["resp3_supported"] is False
        assert r.evidence["resp3_inferred_from_version"] is False
        assert "unknown command" in r.evidence["resp3_probe"].lower()
        if r.evidence["client_default_protocol"] >= 3:
            assert r.status is Status.WARN and "RESP2" in r.summary
        _, res = run(make_profile, url=server.url(), client_protocol=2)
        assert res[VERSION].status is Status.OK and res[VERSION].evidence["resp3_supported"] is False
    finally:
        server.stop()


def test_readonly_acl_user_passes_and_nothing_is_written(secured_redis, make_profile):
    admin = secured_redis.client()
    admin.set("celery-probe", "x")
    admin.hset("unacked", "t1", "body")
    url = secured_redis.add_readonly_user("doctor", "doctor-pw-99")
    admin.execute_command("ACL", "LOG", "RESET")
    before = admin.info()
    keys_before = sorted(admin.keys("*"))
    report, res = run(make_profile, url=url)
    assert {i: r.status for i, r in res.items()} == {i: Status.OK for i in ALL}, \
        {i: r.summary for i, r in res.items()}
    assert res[REACHABLE].evidence["user"] == "doctor"
    after = admin.info()
    assert after["rdb_changes_since_last_save"] == before["rdb_changes_since_last_save"]
    assert admin.dbsize() == 2 and sorted(admin.keys("*")) == keys_before
    assert admin.execute_command("ACL", "LOG") == []  # no command was refused: we only sent allowed ones
    assert "doctor-pw-99" not in raw_text(report)


def test_port_that_never_answers_times_out_within_budget(make_profile):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # accepts TCP (backlog), never answers
        port = listener.getsockname()[1]
        t0 = time.monotonic()
        report, res = run(make_profile, timeout=2, url=f"redis://127.0.0.1:{port}/0")
        elapsed = time.monotonic() - t0
    assert elapsed < 3
    r = res[REACHABLE]
    assert r.status is Status.FAIL and "timed out" in r.summary
    assert r.evidence["stage"] == "handshake" and r.reason == "timeout"
    assert res[MEMORY].status is Status.BLOCKED
