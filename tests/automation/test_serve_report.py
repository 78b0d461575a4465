"""`serve`'s /report: the in-cluster doctor's read-only JSON answer (studiodoctor.report/1), against a real
redis-server and a real Celery-shaped check set: GET only, read-only checks only, redacted, cached under the
one-run lock."""

from __future__ import annotations

import json

import httpx
import pytest

from studiodoctor.commands.serve import Exporter
from studiodoctor.model import BROKER_CONTROL, ok
from studiodoctor.registry import Registry, default_registry

from test_serve import serving  # noqa: F401  (fixture)

SECRET = "Rep0rt-S3cret-pw"


def test_report_answers_the_chosen_checks_as_redacted_report_json(make_profile, redis_server, serving):
    prof = make_profile({"redis": {"url": redis_server.url()},
                         "postgres": {"dsn": f"postgresql://doctor:{SECRET}@127.0.0.1:1/studio?sslmode=disable"}},
                        name="t", timeout=5)
    exporter = Exporter(prof, registry=default_registry.load_plugins(), interval=300, probe_budget=8, probe_cache=60)
    base = serving(exporter)
    answer = httpx.get(f"{base}/report", params=[("layer", "redis"), ("check", "postgres.reachable")], timeout=20)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    report = answer.json()
    assert report["schema"] == "studiodoctor.report/1" and report["profile"] == "t"
    results = {r["id"]: r for r in report["results"]}
    assert results["redis.reachable"]["status"] == "ok" and "redis.memory" in results
    assert results["postgres.reachable"]["status"] == "fail"          # nothing listens on :1
    assert SECRET not in answer.text                                   # redacted like every output
    again = httpx.get(f"{base}/report", params=[("check", "postgres.reachable"), ("layer", "redis")], timeout=20)
    assert again.json()["started_at"] == report["started_at"]          # the same run, from the cache


def test_report_never_runs_a_check_that_is_not_read_only(make_profile, serving):
    ran = []
    reg = Registry()
    reg.check("queue.depth", title="depth")(lambda ctx: ran.append("queue.depth") or ok("0 waiting"))
    reg.check("queue.ping", title="broadcast ping", safety=BROKER_CONTROL)(
        lambda ctx: ran.append("queue.ping") or ok("pong"))
    base = serving(Exporter(make_profile(name="t"), registry=reg, interval=300, probe_budget=5))
    report = httpx.get(f"{base}/report", params={"layer": "queue"}, timeout=20).json()
    assert ran == ["queue.depth"]
    ping = next(r for r in report["results"] if r["id"] == "queue.ping")
    assert ping["status"] == "skip" and "broker-control" in ping["summary"] and "read-only" in ping["summary"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_every_method_but_get_and_head_is_405(make_profile, serving, method):
    reg = Registry()
    reg.check("queue.depth", title="depth")(lambda ctx: pytest.fail("a refused method ran a check"))
    base = serving(Exporter(make_profile(name="t"), registry=reg, interval=300))
    answer = httpx.request(method, f"{base}/report", params={"layer": "queue"}, timeout=10)
    assert answer.status_code == 405 and answer.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("query, text", [({}, "say which layers or checks"),
                                         ({"check": "redis.reachabel"}, "did you mean redis.reachable")])
def test_bad_report_requests_are_400_with_one_line(make_profile, serving, query, text):
    base = serving(Exporter(make_profile(name="t"), registry=default_registry.load_plugins(), interval=300))
    answer = httpx.get(f"{base}/report", params=query, timeout=10)
    assert answer.status_code == 400 and text in answer.text and answer.text.count("\n") == 1
