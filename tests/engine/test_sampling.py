"""studiodoctor.probes.sampling against real HTTP servers on loopback: counts, bounds, ratios and percentiles."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from studiodoctor.probes import sampling
from studiodoctor.context import CheckContext, Shared


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        server = self.server
        with server.lock:
            server.count += 1
            nth = server.count
            server.in_flight += 1
            server.most = max(server.most, server.in_flight)
        try:
            if server.delay:
                time.sleep(server.delay)
            status = 500 if server.fail_every and nth % server.fail_every == 0 else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        finally:
            with server.lock:
                server.in_flight -= 1

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.lock, srv.count, srv.in_flight, srv.most, srv.delay, srv.fail_every = threading.Lock(), 0, 0, 0, 0.0, 0
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _ctx(make_profile, shared=None, timeout=5.0, **options):
    profile = make_profile({}, timeout=timeout)
    return CheckContext(None, profile, time.monotonic() + timeout, shared or Shared(), options)


def _url(srv) -> str:
    return f"http://127.0.0.1:{srv.server_port}/x"


def test_five_samples_by_default_the_ratio_and_percentiles(server, make_profile):
    server.fail_every = 3
    ctx = _ctx(make_profile)
    got = sampling.take(ctx, sampling.timed(ctx, "GET", _url(server)), endpoint=_url(server))
    assert server.count == 5 and got.sent == 5
    assert got.failed == 1 or got.failed == 2     # 5 consecutive requests hold one or two multiples of 3
    assert got.intermittent and not got.all_failed
    assert got.intermittent_text().startswith(f"intermittent: {got.failed} of 5 answered 500")
    assert got.summary()["sent"] == 5 and got.summary()["failed"] == got.failed
    assert 0 < got.summary()["p50_ms"] <= got.summary()["p95_ms"]
    assert ctx.sampled == [got]


def test_samples_option_and_profile_key(server, make_profile):
    assert sampling.count(_ctx(make_profile, samples=3)) == 3
    assert sampling.count(_ctx(make_profile, samples=500)) == sampling.MAX_SAMPLES
    ctx = CheckContext(None, make_profile({}, samples=2), time.monotonic() + 5, Shared(), {})
    assert sampling.count(ctx) == 2
    assert sampling.count(_ctx(make_profile)) == sampling.DEFAULT_SAMPLES


def test_a_refused_endpoint_costs_one_request(make_profile):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()                                   # nothing listens there now
    ctx = _ctx(make_profile)
    url = f"http://127.0.0.1:{port}/"
    got = sampling.take(ctx, sampling.timed(ctx, "GET", url), endpoint=url)
    assert got.sent == 1 and got.all_failed
    assert "connection refused" in got.failure_text()


def test_concurrency_and_the_run_budget_per_backend(server, make_profile, monkeypatch):
    """At most CONCURRENCY in flight to one backend, and past BACKEND_BUDGET a probe gets one request,
    saying so in its evidence."""
    monkeypatch.setattr(sampling, "BACKEND_BUDGET", 12)
    server.delay = 0.2
    shared = Shared()
    outs = []
    for _ in range(3):
        ctx = _ctx(make_profile, shared=shared, samples=10)
        outs.append(sampling.take(ctx, sampling.timed(ctx, "GET", _url(server)), endpoint=_url(server)))
    assert [o.sent for o in outs] == [10, 2, 1]
    assert server.count == 13 and server.most <= sampling.CONCURRENCY
    assert "this run already sent 12 sampled requests" in outs[1].evidence()["cut"]
    assert outs[2].evidence()["backend_requests"] == 13


def test_a_slow_first_answer_leaves_room_only_for_what_fits(server, make_profile):
    """Each answer takes 1 s and the check has 2.2 s: the first, then one wave at most, never past the deadline."""
    server.delay = 1.0
    ctx = _ctx(make_profile, timeout=2.2)
    t0 = time.monotonic()
    got = sampling.take(ctx, sampling.timed(ctx, "GET", _url(server)), endpoint=_url(server))
    assert time.monotonic() - t0 < 2.2
    assert 1 <= got.sent <= 1 + sampling.CONCURRENCY and got.failed == 0


def test_percentile_and_tail():
    assert sampling.percentile([5, 1, 3, 2, 4], 50) == 3
    assert sampling.percentile([5, 1, 3, 2, 4], 95) == 5
    assert sampling.percentile([], 95) == 0
    s = sampling.Samples("http://h/x", [sampling.Sample(200, t) for t in (0.01, 0.02, 3.0, 0.01, 0.02)])
    assert len(s.tail(lambda sec: sec > 2)) == 1                  # 1 of 5 is the failing share
    assert s.tail(lambda sec: sec > 2, ratio=0.4) == []           # not twice that


def test_the_cli_samples_option_reaches_the_checks_and_the_json(server, tmp_path, monkeypatch, capsys):
    """`check --samples 3 --format json`: the app got three requests, and the result says so in `samples`."""
    import json

    from studiodoctor.cli import main

    config = tmp_path / "studiodoctor.toml"
    config.write_text(f'[profiles.t]\npublic_urls = []\n[profiles.t.app]\nurl = "http://127.0.0.1:{server.server_port}"\n')
    monkeypatch.delenv("STUDIODOCTOR_CONFIG", raising=False)
    server.fail_every = 2
    code = main(["check", "--config", str(config), "--profile", "t", "--check", "app.stealthz", "--samples", "3",
                 "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    result = data["results"][0]
    assert server.count == 3
    assert result["samples"] == {**result["samples"], "sent": 3, "failed": 1}
    assert result["status"] == "fail" and "intermittent: 1 of 3 answered 500" in result["summary"]
    assert code == 2
