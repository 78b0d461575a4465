"""Least privilege, in CI: the redis, celery and postgres layers run as the narrowest users that work, on
a real redis-server (with a real Celery worker) and a real PostgreSQL:

- redis layer: an ACL user with ``-@all`` + ``checks.redis.READ_ACL`` (PING, INFO);
- celery layer: its reads (``checks.celery.READ_ACL``) + the broadcast's ``CONTROL_ACL`` + the
  pidbox channel, measured one grant at a time against a real worker, + SUBSCRIBE on the workers' heartbeat
  channel (``checks.celery.heartbeat_acl``: celery.busy_slots);
- postgres (and celery.stuck_publishes): a role with only ``pg_monitor`` + SELECT on Studio's tables.

Every check passes with those users and the server logs no refused command (ACL LOG). Take one grant away
and the result is ``error`` naming the grant to add, never ``fail``."""

from __future__ import annotations

import pytest

from checks.celery import CONTROL_ACL, READ_ACL as CELERY_READ_ACL, heartbeat_acl
from checks.redis import READ_ACL as REDIS_READ_ACL
from studiodoctor import engine, studio_facts as facts
from studiodoctor.lab import studio_schema
from studiodoctor.lab.servers.celery_worker import CeleryWorker
from studiodoctor.model import Status

LAYERS = ["redis", "celery", "postgres"]
# read by benchmarks/reliability.py
FIGURES = {"checks": 0, "passing": 0, "grants_removed": 0, "errors_naming_the_grant": 0}
PIDBOX = "&/0.celery.pidbox"
PG_ROLE = "doctor_least"


def celery_acl() -> list[str]:
    return [*CELERY_READ_ACL, *CONTROL_ACL, PIDBOX, *heartbeat_acl(0)]


def set_user(redis_server, name: str, rules, password: str) -> str:
    redis_server.client().execute_command("ACL", "SETUSER", name, "reset", "on", f">{password}", "-@all", *rules)
    return redis_server.url(0, user=name, password=password)


@pytest.fixture
def worker(redis_server):
    w = CeleryWorker(redis_server.dir.parent / "worker-lp", broker_url=redis_server.url(0), name="lp-worker@lab")
    w.start()
    yield w
    w.stop(cold=True)


@pytest.fixture
def pg_least(postgres_server):
    """Studio's tables (healthy) and a role with only pg_monitor + SELECT on the tables the checks read."""
    from psycopg import sql

    with postgres_server.connect() as conn:
        studio_schema.seed_healthy(conn)
    dsn = postgres_server.create_role(PG_ROLE, "least-pw-41", monitor=True)
    with postgres_server.connect() as conn:
        for table in facts.STUDIO_TABLES:
            conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(table), sql.Identifier(PG_ROLE)))
    yield postgres_server, dsn
    with postgres_server.connect() as conn:  # back to the grants every test starts from
        conn.execute(sql.SQL("GRANT pg_monitor TO {}").format(sql.Identifier(PG_ROLE)))
        for table in facts.STUDIO_TABLES:
            conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(table), sql.Identifier(PG_ROLE)))


def least_profile(make_profile, redis_server, pg_dsn, redis_rules=REDIS_READ_ACL, celery_rules=None):
    redis_url = set_user(redis_server, "doctor-read", redis_rules, "read-pw-17")
    broker_url = set_user(redis_server, "doctor-celery", celery_rules or celery_acl(), "celery-pw-18")
    return make_profile({"redis": {"url": redis_url}, "postgres": {"dsn": pg_dsn},
                         "celery": {"broker_url": broker_url, "ping_timeout": 1.0},
                         "kubernetes": {"namespace": "studio"}}, timeout=8)


def run(profile):
    report = engine.check(profile, layers=LAYERS)
    return {r.id: r for r in report.results}


def test_every_check_passes_with_the_least_privileged_users(worker, pg_least, redis_server, make_profile):
    _, dsn = pg_least
    admin = redis_server.client()
    admin.execute_command("ACL", "LOG", "RESET")
    res = run(least_profile(make_profile, redis_server, dsn))
    assert len(res) >= 20
    FIGURES.update(checks=len(res), passing=sum(r.status is Status.OK for r in res.values()))
    assert {i: r.status for i, r in res.items()} == {i: Status.OK for i in res}, \
        {i: r.summary for i, r in res.items() if r.status is not Status.OK}
    assert admin.execute_command("ACL", "LOG") == []  # nothing was refused, not even a tolerated probe
    assert res["redis.reachable"].evidence["user"] == "doctor-read"


def test_the_issue_read_user_also_passes_the_redis_layer(redis_server, make_profile):
    """The read-only user of issue 17 (+@read +@connection +info +ping +client|list): a superset of READ_ACL."""
    url = set_user(redis_server, "doctor-ro", ["~*", "+@read", "+@connection", "+info", "+ping", "+client|list"], "ro-9")
    report = engine.check(make_profile({"redis": {"url": url}}, timeout=5), layers=["redis"])
    assert all(r.status is Status.OK for r in report.results), [(r.id, r.summary) for r in report.results]


def test_every_control_grant_is_needed_and_its_absence_is_an_error_naming_it(worker, pg_least, redis_server,
                                                                             make_profile):
    """One grant of the broadcast's ACL removed at a time: the ping is refused (error naming the ACL line
    to add), never a `fail` blaming the broker. +script|exists is the tolerated one (see CONTROL_ACL)."""
    _, dsn = pg_least
    needed = [g for g in (*CONTROL_ACL, PIDBOX) if g != "+script|exists"]
    for grant in needed:
        rules = [g for g in celery_acl() if g != grant]
        redis_server.client().execute_command("SCRIPT", "FLUSH")  # the worst case: no script cached yet
        res = engine.check(least_profile(make_profile, redis_server, dsn, celery_rules=rules),
                           check_ids=["celery.workers"])
        r = {x.id: x for x in res.results}["celery.workers"]
        assert r.status is Status.ERROR and r.reason == "forbidden", (grant, r.status, r.summary)
        assert "ACL SETUSER doctor-celery" in r.summary and grant in r.summary + r.hint, (grant, r.summary)
        if grant.startswith("+") and grant not in ("+time", "+sadd", "+zadd"):  # those fail inside kombu's Lua
            assert f"lacks {grant}: ACL SETUSER doctor-celery {grant}" in r.summary, r.summary
        assert "celery-pw-18" not in r.summary + r.hint
        FIGURES["grants_removed"] += 1
        FIGURES["errors_naming_the_grant"] += 1


@pytest.mark.parametrize("layer,grant,check_id", [
    ("redis", "+info", "redis.memory"),
    ("redis", "+ping", "redis.reachable"),
    ("celery", "+llen", "celery.queue_depth"),
    ("celery", "+zrange", "celery.unacked"),
    ("celery", "+client|list", "celery.consumers"),
    ("celery", "+subscribe", "celery.busy_slots"),
    ("celery", "&/0.celeryev/worker.heartbeat", "celery.busy_slots"),
])
def test_a_missing_redis_read_grant_is_an_error_naming_it(layer, grant, check_id, pg_least, redis_server,
                                                          make_profile):
    _, dsn = pg_least
    kw = ({"redis_rules": [g for g in REDIS_READ_ACL if g != grant]} if layer == "redis"
          else {"celery_rules": [g for g in celery_acl() if g != grant]})
    res = engine.check(least_profile(make_profile, redis_server, dsn, **kw), check_ids=[check_id])
    r = {x.id: x for x in res.results}[check_id]
    user = "doctor-read" if layer == "redis" else "doctor-celery"
    assert r.status is Status.ERROR and r.reason == "forbidden", r.summary
    assert f"ACL user {user} lacks {grant}: ACL SETUSER {user} {grant}" in r.summary, r.summary
    FIGURES["grants_removed"] += 1
    FIGURES["errors_naming_the_grant"] += 1


def test_a_missing_select_is_an_error_naming_the_grant(pg_least, make_profile):
    pg, dsn = pg_least
    pg.execute(f"REVOKE SELECT ON {facts.NODE_TABLE} FROM {PG_ROLE}")
    report = engine.check(make_profile({"postgres": {"dsn": dsn}}, timeout=8),
                          check_ids=["postgres.reachable", "celery.stuck_publishes"])
    r = {x.id: x for x in report.results}["celery.stuck_publishes"]
    assert r.status is Status.ERROR and r.reason == "forbidden", r.summary
    assert f"GRANT SELECT ON {facts.NODE_TABLE} TO {PG_ROLE}" in r.summary, r.summary
    assert "least-pw-41" not in r.summary + r.hint
    FIGURES["grants_removed"] += 1
    FIGURES["errors_naming_the_grant"] += 1


def test_without_pg_monitor_the_postgres_checks_name_the_grant_never_fail(pg_least, make_profile):
    pg, dsn = pg_least
    pg.execute(f"REVOKE pg_monitor FROM {PG_ROLE}")
    pg.start_holder("idle-in-transaction")
    try:
        report = engine.check(make_profile({"postgres": {"dsn": dsn}}, timeout=8), layers=["postgres"])
    finally:
        pg.stop_holders()
    res = {x.id: x for x in report.results}
    assert not [i for i, r in res.items() if r.status is Status.FAIL], {i: r.summary for i, r in res.items()}
    errors = [r for r in res.values() if r.status is Status.ERROR]
    assert errors and all(f"GRANT pg_monitor TO {PG_ROLE}" in r.hint for r in errors), \
        [(r.id, r.summary, r.hint) for r in errors]
    FIGURES["grants_removed"] += 1
    FIGURES["errors_naming_the_grant"] += 1
