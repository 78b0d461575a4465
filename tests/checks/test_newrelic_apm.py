"""newrelic.* with the real httpx client code against the lab's NerdGraph stand-in (a real HTTP server process
answering NerdGraph's documented shapes for the layer's GraphQL queries)."""

from __future__ import annotations

import time

import pytest

from checks.newrelic_apm import APP, DEPLOYMENT, SIGNALS
from studiodoctor import engine
from studiodoctor.lab.standins.newrelic_api import NewRelicAPI, handle
from studiodoctor.model import Reason, Status

ALL = [APP, SIGNALS, DEPLOYMENT]


@pytest.fixture(scope="module")
def nr_server(tmp_path_factory):
    server = NewRelicAPI(tmp_path_factory.mktemp("newrelic")).start()
    yield server
    server.stop()


@pytest.fixture
def nr(nr_server):
    nr_server.reset()
    yield nr_server
    nr_server.reset()


def run(make_profile, nr, timeout=5, **over):
    profile = make_profile({"newrelic": {**nr.profile()["newrelic"], **over}}, timeout=timeout)
    report = engine.check(profile, layers=["newrelic"], timeout=timeout)
    return report, {r.id: r for r in report.results}


def test_healthy_app(nr, make_profile):
    _, res = run(make_profile, nr)
    assert {i: res[i].status for i in ALL} == {i: Status.OK for i in ALL}, {i: res[i].summary for i in ALL}
    assert res[APP].evidence["minutes_since_last_data"] < 1 and res[APP].evidence["application_id"] == 987654
    assert res[SIGNALS].evidence["now"]["p95"] == 0.42 and res[SIGNALS].evidence["day_ago"]["apdex"] == 0.95
    assert res[DEPLOYMENT].summary.startswith("last deployment v2026.11.20 2.0 d ago by cloudbuild")


def test_agent_silent_fails_not_healthy(nr, make_profile):
    nr.agent_silent()
    _, res = run(make_profile, nr)
    r = res[APP]
    assert r.status is Status.FAIL and "for 180 min" in r.summary and "not the app healthy" in r.summary
    assert res[SIGNALS].status is Status.BLOCKED


def test_error_rate_jump_fails_and_latency_warns(nr, make_profile):
    nr.set(now={"throughput": 1500, "error_rate": 12.0, "apdex": 0.7, "p95": 2.5})
    assert run(make_profile, nr)[1][SIGNALS].status is Status.FAIL
    nr.set(now={"throughput": 1500, "error_rate": 0.5, "apdex": 0.93, "p95": 1.2})
    r = run(make_profile, nr)[1][SIGNALS]
    assert r.status is Status.WARN and r.summary.startswith("p95 doubled")


def test_p95_five_times_a_day_earlier_fails_degraded_not_down(nr, make_profile):
    """Nothing down, p95 five times yesterday's: a fail naming the ratio (the likely cause of `slow`), while a
    p95 only 2.5 times yesterday's stays a warning."""
    nr.p95_regression()
    r = run(make_profile, nr)[1][SIGNALS]
    assert r.status is Status.FAIL and r.summary.startswith("p95 5.0x a day earlier's"), r.summary
    assert "after deployment" not in r.summary                  # the last marker is 2 days old: no suspect
    nr.set(now={"throughput": 1800, "error_rate": 0.4, "apdex": 0.9, "p95": 1.125})
    assert run(make_profile, nr)[1][SIGNALS].status is Status.WARN


def test_error_rate_ten_times_after_a_deploy_names_the_release(nr, make_profile):
    nr.errors_after_deploy()
    r = run(make_profile, nr)[1][SIGNALS]
    assert r.status is Status.FAIL, r.summary
    assert r.summary.startswith("error rate up (10x a day earlier), after deployment v2026.12.06-rc1 (20 min ago)")
    assert r.evidence["last_deploy"] == {"revision": "v2026.12.06-rc1", "minutes_ago": 20}
    assert "roll back" in r.hint


def test_bad_key_is_an_auth_error(nr, make_profile):
    r = run(make_profile, nr, api_key="NRAK-WRONG")[1][APP]
    assert r.status is Status.ERROR and r.reason == Reason.AUTH.value and "401" in r.summary


def test_account_not_visible_is_forbidden_error(nr, make_profile):
    r = run(make_profile, nr, account_id="7654321")[1][APP]
    assert r.status is Status.ERROR and r.reason == Reason.FORBIDDEN.value and "7654321" in r.summary


def test_unknown_app_is_an_error_naming_the_key(nr, make_profile):
    r = run(make_profile, nr, app_name="nope")[1][APP]
    assert r.status is Status.ERROR and "newrelic.app_name" in r.summary


def test_bad_account_id_and_quotes_are_errors(nr, make_profile):
    assert run(make_profile, nr, account_id="abc")[1][APP].status is Status.ERROR
    assert run(make_profile, nr, app_name="x' OR 1=1")[1][APP].status is Status.ERROR


def test_unexpected_shape_is_an_error(nr, make_profile):
    from pytest_httpserver import HTTPServer

    with HTTPServer(host="127.0.0.1") as srv:
        srv.expect_request("/graphql", method="POST").respond_with_json({"data": {"viewer": {}}})
        r = run(make_profile, nr, api_url=srv.url_for("/graphql"))[1][APP]
    assert r.status is Status.ERROR and "unexpected answer" in r.summary


def test_hanging_api_is_bounded(nr, make_profile):
    nr.set(delay_s=10)
    t0 = time.monotonic()
    r = run(make_profile, nr, timeout=1.5)[1][APP]
    assert time.monotonic() - t0 < 4 and r.status is Status.FAIL and r.reason == Reason.TIMEOUT.value


def test_stand_in_refuses_mutations():
    state = {"api_key": "k", "account_id": 1}
    status, body = handle(state, "POST", "/graphql", {}, {"api-key": "k"}, {"query": "mutation { x }"})
    assert body["errors"]


def test_http_403_is_a_forbidden_error(nr, make_profile):
    from pytest_httpserver import HTTPServer

    with HTTPServer(host="127.0.0.1") as srv:
        srv.expect_request("/graphql", method="POST").respond_with_json(
            {"errors": [{"message": "Forbidden"}]}, status=403)
        r = run(make_profile, nr, api_url=srv.url_for("/graphql"))[1][APP]
    assert r.status is Status.ERROR and r.reason == Reason.FORBIDDEN.value and "access to the account" in r.summary
