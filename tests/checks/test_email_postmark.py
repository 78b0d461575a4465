"""email.* with the real httpx and smtplib client code against the lab's Postmark stand-in (server and status
APIs, a real HTTP server process) and a real SMTP server with STARTTLS (aiosmtpd, the lab relay)."""

from __future__ import annotations

import time

import pytest

from checks.email_postmark import BOUNCES, DELIVERIES, KEY_ENV, SMTP, STATUS, STREAM, TOKEN
from studiodoctor import engine
from studiodoctor.lab.launcher import free_port
from studiodoctor.lab.standins.postmark_api import PostmarkAPI
from studiodoctor.lab.servers.smtp_relay import SMTPRelay
from studiodoctor.model import Reason, Status

API = [TOKEN, STREAM, BOUNCES, DELIVERIES, STATUS]
ALL = API + [SMTP]


@pytest.fixture(scope="module")
def pm_server(tmp_path_factory):
    server = PostmarkAPI(tmp_path_factory.mktemp("postmark")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def relay(tmp_path_factory):
    server = SMTPRelay(tmp_path_factory.mktemp("smtp")).start()
    yield server
    server.stop()


@pytest.fixture
def pm(pm_server):
    pm_server.reset()
    yield pm_server
    pm_server.reset()


def run(make_profile, pm, relay=None, timeout=5, **over):
    section = {**pm.profile()["email"], **(relay.profile()["email"] if relay else {}), **over}
    report = engine.check(make_profile({"email": section}, timeout=timeout), layers=["email"], timeout=timeout)
    return report, {r.id: r for r in report.results}


def test_healthy_email_all_ok_token_never_shown(pm, relay, make_profile):
    report, res = run(make_profile, pm, relay)
    assert {i: res[i].status for i in ALL} == {i: Status.OK for i in ALL}, {i: res[i].summary for i in ALL}
    assert res[TOKEN].evidence == {"ID": 1252, "Name": "Studio", "DeliveryType": "Live", "SmtpApiActivated": True}
    assert res[BOUNCES].evidence["bounce_rate_pct"] == pytest.approx(1.448, abs=0.01)
    assert res[DELIVERIES].evidence["minutes_ago"] == 3
    assert res[SMTP].evidence["tls"].startswith("TLSv1.") and res[SMTP].evidence["days_left"] >= 80
    assert 0 < res[SMTP].network_ms <= res[SMTP].duration_ms + 0.1  # the SMTP stages are its network time
    import json

    assert pm.token not in json.dumps([r.to_dict() for r in report.results])  # /server answers ApiTokens


def test_smtp_only_without_relay_config_skips(pm, make_profile):
    res = run(make_profile, pm, smtp_host="")[1]
    assert res[SMTP].status is Status.SKIP and "email.smtp_host" in res[SMTP].summary


def test_stream_paused_fails_and_sends_stopped(pm, make_profile):
    pm.pause_stream()
    pm.set(last_message_min=60 * 7)
    res = run(make_profile, pm)[1]
    assert res[STREAM].status is Status.FAIL and "archived (paused)" in res[STREAM].summary
    assert res[DELIVERIES].status is Status.FAIL and "sends stopped" in res[DELIVERIES].summary


def test_bounce_rate_over_threshold_fails(pm, make_profile):
    pm.bounce_rate()
    r = run(make_profile, pm)[1][BOUNCES]
    assert r.status is Status.FAIL and "bounce rate 20" in r.summary and "10%" in r.summary
    pm.edit(lambda s: s["day"].update(Bounced=21, SpamComplaints=1))  # 1 of 1450 = 0.069% >= half of 0.1%
    assert run(make_profile, pm)[1][BOUNCES].status is Status.WARN


def test_sandbox_server_fails(pm, make_profile):
    pm.edit(lambda s: s["server"].update(DeliveryType="Sandbox"))
    assert run(make_profile, pm)[1][TOKEN].status is Status.FAIL


def test_status_api_degraded_smtp_fails(pm, make_profile):
    pm.set(status={"api": "UP", "smtp": "DEGRADED", "web": "UP", "inbound": "DOWN"})
    r = run(make_profile, pm)[1][STATUS]
    assert r.status is Status.FAIL and "SMTP DEGRADED" in r.summary and "API" not in r.summary.split(":")[0]
    pm.set(status={"api": "UP", "smtp": "MAINTENANCE", "web": "UP", "inbound": "DOWN"})
    assert run(make_profile, pm)[1][STATUS].status is Status.OK  # as Studio's prober accepted


def test_bad_token_is_an_auth_error(pm, make_profile):
    res = run(make_profile, pm, server_token="nope-nope")[1]
    assert res[TOKEN].status is Status.ERROR and res[TOKEN].reason == Reason.AUTH.value and "401" in res[TOKEN].summary
    assert all(res[i].status is Status.BLOCKED for i in (STREAM, BOUNCES, DELIVERIES))


def test_unexpected_shapes_are_errors(pm, make_profile):
    from pytest_httpserver import HTTPServer

    with HTTPServer(host="127.0.0.1") as srv:
        srv.expect_request("/server").respond_with_json({"Name": "x"})
        srv.expect_request("/stats/outbound").respond_with_json({"Sent": "many"})
        srv.expect_request("/messages/outbound").respond_with_json([])
        srv.expect_request("/message-streams/outbound").respond_with_json({"ID": "outbound"})
        srv.expect_request("/api/1.0/services").respond_with_json({"status": "UP"})
        res = run(make_profile, pm, postmark_api_url=srv.url_for(""), status_url=srv.url_for("/api/1.0"))[1]
    assert {i: res[i].status for i in (STREAM, BOUNCES, DELIVERIES, STATUS)} == {
        i: Status.ERROR for i in (STREAM, BOUNCES, DELIVERIES, STATUS)}


def test_hanging_api_is_bounded(pm, make_profile):
    pm.set(delay_s=10)
    t0 = time.monotonic()
    r = run(make_profile, pm, timeout=1.5)[1][TOKEN]
    assert time.monotonic() - t0 < 4 and r.status is Status.FAIL and r.reason == Reason.TIMEOUT.value


def test_relay_unreachable_fails(pm, make_profile):
    r = run(make_profile, pm, smtp_host="127.0.0.1", smtp_port=free_port())[1][SMTP]
    assert r.status is Status.FAIL and "unreachable from here" in r.summary and "refused" in r.summary


def test_relay_certificate_not_trusted_fails(pm, relay, make_profile):
    r = run(make_profile, pm, relay, ca_file="")[1][SMTP]  # the lab CA is not in certifi's bundle
    assert r.status is Status.FAIL and "does not verify" in r.summary


@pytest.fixture
def recording_smtp(tmp_path):
    """An in-process SMTP server that records every command a client sends; STARTTLS optional."""
    import ssl

    import trustme
    from aiosmtpd.controller import Controller

    seen: list[str] = []

    class Handler:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            seen.append("EHLO")
            session.host_name = hostname
            return responses

        async def handle_MAIL(self, server, session, envelope, address, options):
            seen.append("MAIL")
            return "550 no"

        async def handle_QUIT(self, server, session, envelope):
            seen.append("QUIT")
            return "221 bye"

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    def start(starttls: bool):
        kwargs = {}
        if starttls:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(tls)
            kwargs = {"tls_context": tls}
        ctl = Controller(Handler(), hostname="127.0.0.1", port=free_port(), auth_require_tls=True, **kwargs)
        ctl.start()
        return ctl

    started = []

    def make(starttls=True):
        ctl = start(starttls)
        started.append(ctl)
        return ctl.port, str(ca_file), seen

    yield make
    for ctl in started:
        ctl.stop()


def test_smtp_check_never_authenticates_or_sends(pm, recording_smtp, make_profile):
    port, ca_file, seen = recording_smtp(starttls=True)
    r = run(make_profile, pm, smtp_host="127.0.0.1", smtp_port=port, ca_file=ca_file)[1][SMTP]
    assert r.status is Status.OK, r.summary
    assert seen == ["EHLO", "EHLO", "QUIT"]


def test_relay_without_starttls_fails(pm, recording_smtp, make_profile):
    port, ca_file, _ = recording_smtp(starttls=False)
    r = run(make_profile, pm, smtp_host="127.0.0.1", smtp_port=port, ca_file=ca_file)[1][SMTP]
    assert r.status is Status.FAIL and "does not offer STARTTLS" in r.summary


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    from studiodoctor.lab.standins.kubernetes import KubeAPIServer

    server = KubeAPIServer(tmp_path_factory.mktemp("kube-email"), hostnames=["studio.localtest"]).start()
    yield server
    server.stop()


def _app_env(kube, env):
    state = kube.read_state()
    for dep in state["namespaces"]["studio"]["deployments"]:
        if dep["metadata"]["name"] == "master-studio":
            dep["spec"]["template"]["spec"]["containers"][0]["env"] = env
    kube.write_state(state)


def run_key_env(make_profile, kube):
    profile = make_profile({"kubernetes": {**kube.profile()["kubernetes"], "app_deployment": "master-studio"}},
                           timeout=5)
    return {r.id: r for r in engine.check(profile, check_ids=[KEY_ENV], timeout=5).results}[KEY_ENV]


def test_app_key_env_from_secret_missing_or_literal(kube, make_profile):
    original = kube.read_state()
    try:
        r = run_key_env(make_profile, kube)
        assert r.status is Status.OK and r.evidence["from"] == "secret master-studio key postmark-api-key"
        _app_env(kube, [{"name": "BRANCH_ENVIRONMENT", "value": "master"}])
        r = run_key_env(make_profile, kube)
        assert r.status is Status.FAIL and "EMAIL_CREDENTIALS_POSTMARK_API_KEY is not set" in r.summary
        _app_env(kube, [{"name": "POSTMARK_SERVER_TOKEN", "valueFrom": {"secretKeyRef": {"name": "m", "key": "t"}}}])
        r = run_key_env(make_profile, kube)  # another chart's name for it is discovered
        assert r.status is Status.OK and r.evidence["variable"] == "POSTMARK_SERVER_TOKEN"
        _app_env(kube, [{"name": "EMAIL_CREDENTIALS_POSTMARK_API_KEY", "value": "pm-literal-key-123"}])
        r = run_key_env(make_profile, kube)
        assert r.status is Status.WARN and "pm-literal-key-123" not in str(r.to_dict())
    finally:
        kube.write_state(original)


def test_app_key_env_skipped_without_kubernetes(make_profile, monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    r = {x.id: x for x in engine.check(make_profile({}, timeout=5), check_ids=[KEY_ENV]).results}[KEY_ENV]
    assert r.status is Status.SKIP and "Kubernetes is not configured" in r.summary


def test_smtp_greeting_that_never_comes_is_bounded(pm, make_profile):
    """A relay that accepts TCP and never greets: a timeout inside the check's deadline, not a hang."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        t0 = time.monotonic()
        r = run(make_profile, pm, timeout=1.5, smtp_host="127.0.0.1", smtp_port=srv.getsockname()[1])[1][SMTP]
        assert time.monotonic() - t0 < 4
        assert r.status is Status.FAIL and r.reason == Reason.TIMEOUT.value
    finally:
        srv.close()


def test_app_container_is_discovered_without_names(kube, make_profile):
    """No app_deployment in the profile, other names: the Deployment whose pods run gunicorn is found."""
    original = kube.read_state()
    try:
        state = kube.read_state()
        for dep in state["namespaces"]["studio"]["deployments"]:
            if dep["metadata"]["name"] == "master-studio":
                dep["metadata"]["name"] = "cw-web"
                dep["spec"]["template"]["spec"]["containers"][0]["name"] = "django"
        kube.write_state(state)
        profile = make_profile({"kubernetes": kube.profile()["kubernetes"]}, timeout=5)
        r = {x.id: x for x in engine.check(profile, check_ids=[KEY_ENV], timeout=5).results}[KEY_ENV]
        assert r.status is Status.OK, r.summary
        assert (r.evidence["deployment"], r.evidence["container"]) == ("cw-web", "django")
    finally:
        kube.write_state(original)
