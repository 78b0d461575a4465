"""local.control ("is it me?") against real sockets on loopback: a control that accepts a connection, one
that refuses, a name mapped by http.resolve, and controls that disagree."""

from __future__ import annotations

import socket

import pytest

from checks.local_network import CONTROL, controls
from studiodoctor import engine
from studiodoctor.model import Status


@pytest.fixture
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def run(profile):
    report = engine.check(profile, check_ids=[CONTROL])
    return next(r for r in report.results if r.id == CONTROL)


def test_a_control_that_accepts_is_ok(make_profile, listener):
    res = run(make_profile({"local": {"control_urls": [f"127.0.0.1:{listener}"]}}))
    assert res.status is Status.OK, res.summary
    row = res.evidence["controls"][0]
    assert row["control"] == f"127.0.0.1:{listener}" and row["connected"] == "127.0.0.1" and not row["error"]
    assert res.evidence["source"] == "local.control_urls"


def test_a_control_that_refuses_fails_and_names_this_machine(make_profile):
    port = closed_port()
    res = run(make_profile({"local": {"control_urls": [f"https://127.0.0.1:{port}/client/v4"]}}))
    assert res.status is Status.FAIL
    assert res.summary.startswith("this machine's network or VPN: the control 127.0.0.1:")
    assert "refused" in res.evidence["controls"][0]["error"].lower()
    assert any("resolv.conf" in c.text for c in res.commands)


def test_the_default_control_is_the_cloudflare_api_host_mapped_by_http_resolve(make_profile, listener):
    profile = make_profile({"local": {"control_urls": []},
                            "cloudflare": {"api_url": "https://api.cloudflare.test/client/v4"},
                            "http": {"resolve": {"api.cloudflare.test:443": f"127.0.0.1:{listener}"}}})
    assert controls(profile) == ([("api.cloudflare.test", 443)], "the CloudFlare API's host (cloudflare.api_url)")
    res = run(profile)
    assert res.status is Status.OK, res.summary
    assert res.evidence["controls"][0]["via"] == "http.resolve"


def test_one_control_of_two_failing_warns(make_profile, listener):
    port = closed_port()
    res = run(make_profile({"local": {"control_urls": [f"127.0.0.1:{listener}", f"127.0.0.1:{port}"]}}))
    assert res.status is Status.WARN
    assert res.evidence["answered"] == 1 and res.evidence["tried"] == 2
    assert f"127.0.0.1:{port}" in res.summary
