"""The run's HTTP clients (probes/http.py ``run_client``): checks of one run share a connection per host
(one TCP connect, one TLS handshake), against a real HTTP/1.1 server that counts its connections."""

from __future__ import annotations

import http.server
import threading

import pytest

from studiodoctor.model import Status, ok
from studiodoctor.probes import http as httpprobe
from studiodoctor.registry import Registry
from studiodoctor.runner import run_checks


class _Counting(http.server.ThreadingHTTPServer):
    daemon_threads = True
    connections = 0

    def get_request(self):
        conn = super().get_request()
        type(self).connections += 1
        return conn


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def do_GET(self):
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Counting.connections = 0
    srv = _Counting(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_checks_of_a_run_share_one_connection_per_host(server, make_profile):
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    reg = Registry()
    trips = []

    def get(ctx):
        resp = httpprobe.request(ctx, "GET", url)
        trips.append(ctx.round_trips)
        return ok(f"HTTP {resp.status_code}")

    reg.check("one.first", title="first GET")(get)
    reg.check("one.second", title="second GET", depends_on=("one.first",))(get)
    reg.check("one.third", title="third GET", depends_on=("one.second",))(get)
    results = run_checks(list(reg.checks.values()), make_profile(), timeout=5)
    assert [r.status for r in results] == [Status.OK] * 3
    assert server.connections == 1  # before: one per request
    assert trips == [2, 1, 1]  # the connect and the exchange, then the exchange alone
    assert [r.evidence["round_trips"] for r in results] == trips


def test_a_new_run_opens_its_own_connection(server, make_profile):
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    reg = Registry()
    reg.check("one.get", title="GET")(lambda ctx: ok(str(httpprobe.request(ctx, "GET", url).status_code)))
    for _ in range(2):
        assert run_checks(list(reg.checks.values()), make_profile(), timeout=5)[0].status is Status.OK
    assert server.connections == 2
