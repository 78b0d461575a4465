"""sentry.* with the real httpx client code against the lab's Sentry web API stand-in (a real HTTP server
process serving Sentry's documented shapes) and, for the release comparison, the Kubernetes API stand-in."""

from __future__ import annotations

import time

import pytest

from checks.sentry_project import EVENTS_DROPPED, NEW_ISSUES, PROJECT, RELEASE
from studiodoctor import engine
from studiodoctor.lab.standins.kubernetes import KubeAPIServer
from studiodoctor.lab.standins.sentry_api import SentryAPI, handle
from studiodoctor.model import Reason, Status

ALL = [PROJECT, NEW_ISSUES, EVENTS_DROPPED, RELEASE]


@pytest.fixture(scope="module")
def sentry_server(tmp_path_factory):
    server = SentryAPI(tmp_path_factory.mktemp("sentry")).start()
    yield server
    server.stop()


@pytest.fixture
def sentry(sentry_server):
    sentry_server.reset()
    yield sentry_server
    sentry_server.reset()


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    server = KubeAPIServer(tmp_path_factory.mktemp("kube-sentry"), hostnames=["studio.localtest"]).start()
    yield server
    server.stop()


def run(make_profile, sentry, kube=None, timeout=5, **over):
    sections = {"sentry": {**sentry.profile()["sentry"], **over}}
    if kube is not None:
        sections["kubernetes"] = {**kube.profile()["kubernetes"], "app_deployment": "master-studio"}
    report = engine.check(make_profile(sections, timeout=timeout), layers=["sentry"], timeout=timeout)
    return report, {r.id: r for r in report.results}


def test_healthy_project_all_ok_and_release_matches_the_pods(sentry, kube, make_profile):
    _, res = run(make_profile, sentry, kube)
    assert {i: res[i].status for i in ALL} == {i: Status.OK for i in ALL}, {i: res[i].summary for i in ALL}
    assert res[PROJECT].evidence["id"] == "1252819"
    assert res[RELEASE].evidence["deployed_tag"] == "v2026.11.20" == res[RELEASE].evidence["latest_release"]
    assert "STUDIO-1A2" in res[NEW_ISSUES].summary  # the top issue is named even when nothing is new


def test_release_skipped_with_reason_without_kubernetes(sentry, make_profile, monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    _, res = run(make_profile, sentry)
    r = res[RELEASE]
    assert r.status is Status.SKIP and "Kubernetes is not configured" in r.summary
    assert r.evidence["latest_release"] == "v2026.11.20"


def test_deployed_tag_unknown_to_sentry_warns(sentry, kube, make_profile):
    sentry.edit(lambda s: s.__setitem__("releases", [{"version": "v2026.10.01", "released_min": 9000}]))
    r = run(make_profile, sentry, kube)[1][RELEASE]
    assert r.status is Status.WARN and "v2026.11.20" in r.summary and "RELEASE_COMMIT_SHA" in r.summary


def test_no_token_skips_naming_the_key(sentry, make_profile):
    _, res = run(make_profile, sentry, auth_token="")
    assert all(res[i].status is Status.SKIP for i in ALL)
    assert "sentry.auth_token" in res[PROJECT].summary


def test_revoked_token_is_an_error_not_a_verdict(sentry, make_profile):
    sentry.revoke()
    report, res = run(make_profile, sentry)
    assert res[PROJECT].status is Status.ERROR and res[PROJECT].reason == Reason.AUTH.value
    assert "401" in res[PROJECT].summary and "revoked" in res[PROJECT].summary
    assert all(res[i].status is Status.BLOCKED for i in (NEW_ISSUES, EVENTS_DROPPED, RELEASE))
    assert int(report.exit_code) == 3


def test_missing_scope_names_it(sentry, make_profile):
    sentry.set(scopes=["project:read", "org:read", "project:releases"])
    r = run(make_profile, sentry)[1][NEW_ISSUES]
    assert r.status is Status.ERROR and r.reason == Reason.FORBIDDEN.value and "event:read" in r.summary


def test_unknown_project_is_an_error_naming_the_keys(sentry, make_profile):
    r = run(make_profile, sentry, project="nope")[1][PROJECT]
    assert r.status is Status.ERROR and "sentry.project" in r.hint


def test_quota_exhausted_fails(sentry, make_profile):
    sentry.exhaust_quota()
    r = run(make_profile, sentry)[1][EVENTS_DROPPED]
    assert r.status is Status.FAIL and "410 error events dropped" in r.summary and "lost" in r.summary
    assert r.evidence["last_hour"]["rate_limited"] == 410


def test_error_spike_after_release_names_the_issue_and_release(sentry, make_profile):
    sentry.error_spike()
    r = run(make_profile, sentry)[1][NEW_ISSUES]
    assert r.status is Status.FAIL
    assert r.summary.startswith("new issue STUDIO-2C4 in release v2026.11.20") and "900 events" in r.summary


def test_steady_issue_that_spikes_is_caught(sentry, make_profile):
    sentry.edit(lambda s: s["issues"][0].__setitem__("hourly", [3] * 23 + [60]))
    r = run(make_profile, sentry)[1][NEW_ISSUES]
    assert r.status is Status.FAIL and r.summary.startswith("spiking issue STUDIO-1A2")


def test_unexpected_shapes_are_errors_not_crashes(make_profile, sentry):
    """An HTML page (wrong api_url) and a list where an object belongs: error with the reason."""
    from pytest_httpserver import HTTPServer

    with HTTPServer(host="127.0.0.1") as srv:
        srv.expect_request("/api/0/projects/learningequality/studio/").respond_with_data("<html>login</html>",
                                                                                      content_type="text/html")
        r = run(make_profile, sentry, api_url=srv.url_for("/api/0"))[1][PROJECT]
        assert r.status is Status.ERROR and "not JSON" in r.summary
    with HTTPServer(host="127.0.0.1") as srv:
        srv.expect_request("/api/0/projects/learningequality/studio/").respond_with_json({"id": "1"})
        srv.expect_request("/api/0/projects/learningequality/studio/issues/").respond_with_json({"issues": []})
        srv.expect_request("/api/0/organizations/learningequality/stats_v2/").respond_with_json([1, 2])
        _, res = run(make_profile, sentry, api_url=srv.url_for("/api/0"))
        assert res[NEW_ISSUES].status is Status.ERROR and "expected a list of issues" in res[NEW_ISSUES].summary
        assert res[EVENTS_DROPPED].status is Status.ERROR and "unexpected" in res[EVENTS_DROPPED].summary


def test_hanging_api_is_bounded_by_the_deadline(sentry, make_profile):
    sentry.set(delay_s=10)
    t0 = time.monotonic()
    _, res = run(make_profile, sentry, timeout=1.5)
    assert time.monotonic() - t0 < 4
    assert res[PROJECT].status is Status.FAIL and res[PROJECT].reason == Reason.TIMEOUT.value


def test_refused_is_unreachable(make_profile, sentry):
    from studiodoctor.lab.launcher import free_port

    r = run(make_profile, sentry, api_url=f"http://127.0.0.1:{free_port()}/api/0")[1][PROJECT]
    assert r.status is Status.FAIL and "unreachable from here" in r.summary


def test_stand_in_refuses_writes():
    status, body = handle({"token": "t"}, "POST", "/api/0/projects/o/p/", {}, {"authorization": "Bearer t"})
    assert status == 405


def test_spike_while_postgres_is_down_names_postgres(sentry, make_profile, monkeypatch, tmp_path):
    """The new issue is real, but with PostgreSQL unreachable it is the consequence: diagnose names postgres."""
    from studiodoctor.lab.launcher import free_port

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    sentry.error_spike()
    profile = make_profile({"sentry": sentry.profile()["sentry"],
                            "postgres": {"dsn": f"postgresql://u:p@127.0.0.1:{free_port()}/db"}}, timeout=5)
    report = engine.diagnose(profile, "python-error")
    assert {r.id: r.status for r in report.results}[NEW_ISSUES] is Status.FAIL
    assert report.likely_cause["layer"] == "postgres", report.likely_cause


def test_new_issue_outside_the_top_25_is_still_found(sentry, make_profile):
    """30 busy old issues fill the freq page; a new issue with 12 events is found by the firstSeen:-1h query."""
    def edit(s):
        s["issues"] = [dict(s["issues"][0], id=f"41000010{i:02d}", shortId=f"STUDIO-O{i}", hourly=[40] * 24)
                       for i in range(30)]
        s["issues"].append({"id": "4100000777", "shortId": "STUDIO-NEW", "level": "error", "title": "KeyError: 'x'",
                            "culprit": "contentcuration.views in x", "first_seen_min": 20, "last_seen_min": 1,
                            "hourly": [0] * 23 + [12], "firstRelease": "v2026.11.20"})
    sentry.edit(edit)
    r = run(make_profile, sentry)[1][NEW_ISSUES]
    assert r.status is Status.FAIL and "STUDIO-NEW" in r.summary
