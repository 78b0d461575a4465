"""``lab up --rtt``'s relay (studiodoctor/lab/latency.py) in front of real servers: the added round trips
are really there (a connection's first byte one round trip late, each read half a round trip each way),
bytes pass intact, UDP too; and the profile is rewritten to point at it, nothing else."""

from __future__ import annotations

import socket
import socketserver
import threading
import time

import pytest

from studiodoctor.lab.latency import Latency, endpoints, route

RTT_MS = 100


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", server.server_address[1]))  # the same port over UDP, as the DNS server listens

    def udp_echo():
        while True:
            try:
                data, peer = udp.recvfrom(2048)
            except OSError:
                return
            udp.sendto(data, peer)

    threading.Thread(target=udp_echo, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    udp.close()


@pytest.fixture
def relay(tmp_path, echo):
    svc = Latency(tmp_path, rtt_ms=RTT_MS, upstreams=[echo]).start()
    yield svc, svc.delayed[echo]
    svc.stop()


def test_tcp_exchanges_cross_the_round_trip_and_bytes_pass_intact(relay):
    _, port = relay
    payload = bytes(range(256)) * 600  # several reads
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        t0 = time.perf_counter()
        sock.sendall(b"ping")
        assert sock.recv(16) == b"ping"
        first = time.perf_counter() - t0  # the connection's round trip + the exchange's
        t0 = time.perf_counter()
        sock.sendall(b"again")
        assert sock.recv(16) == b"again"
        second = time.perf_counter() - t0
        sock.sendall(payload)
        got = b""
        while len(got) < len(payload):
            got += sock.recv(65536)
    assert got == payload
    assert first >= 2 * RTT_MS / 1000 * 0.95, first  # the connection's round trip, then the exchange's
    assert RTT_MS / 1000 * 0.95 <= second < first, (first, second)  # the exchange's alone


def test_udp_datagrams_cross_the_round_trip(relay):
    _, port = relay
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        t0 = time.perf_counter()
        sock.sendto(b"query", ("127.0.0.1", port))
        data, _ = sock.recvfrom(2048)
        took = time.perf_counter() - t0
    assert data == b"query" and took >= RTT_MS / 1000 * 0.95


def test_the_profile_points_at_the_relay_and_only_at_loopback_ports():
    profile = {"redis": {"url": "redis://127.0.0.1:6400/0"},
               "postgres": {"dsn": "postgresql://u:p@127.0.0.1:5500/db"},
               "http": {"resolve": {"studio.example:443": "127.0.0.1:8443"}},
               "dns": {"resolvers": ["127.0.0.1:5353"]},
               "email": {"smtp_host": "127.0.0.1", "smtp_port": 2525},
               "public_urls": ["https://studio.example/"], "sentry": {"api_url": "https://sentry.io:443/api/0"}}
    assert endpoints(profile) == [6400, 5500, 8443, 5353, 2525]
    routed = route(profile, {6400: 1, 5500: 2, 8443: 3, 5353: 4, 2525: 5})
    assert routed["redis"]["url"] == "redis://127.0.0.1:1/0"
    assert routed["postgres"]["dsn"] == "postgresql://u:p@127.0.0.1:2/db"
    assert routed["http"]["resolve"] == {"studio.example:443": "127.0.0.1:3"}
    assert routed["dns"]["resolvers"] == ["127.0.0.1:4"]
    assert routed["email"] == {"smtp_host": "127.0.0.1", "smtp_port": 5}
    assert routed["public_urls"] == profile["public_urls"] and routed["sentry"] == profile["sentry"]


def test_a_stopped_server_is_refused_through_the_relay_as_without_it(tmp_path):
    """The relay listens only while its server does: a lab fault that stops a server is a refused
    connection with the added latency too, not a connection that opens and closes."""

    from studiodoctor.lab.launcher import free_port, wait_until

    upstream = free_port()
    svc = Latency(tmp_path, rtt_ms=10, upstreams=[upstream]).start()
    port = svc.delayed[upstream]

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return False
        except ConnectionRefusedError:
            return True

    try:
        assert refused()
        server = socket.create_server(("127.0.0.1", upstream))
        assert wait_until(lambda: not refused(), 5, "the relay did not follow its server up")
        server.close()
        assert wait_until(refused, 5, "the relay did not follow its server down")
    finally:
        svc.stop()


def test_jitter_varies_the_delay_never_the_order_of_the_bytes(tmp_path, echo):
    svc = Latency(tmp_path, rtt_ms=20, jitter_ms=30, upstreams=[echo]).start()
    try:
        with socket.create_connection(("127.0.0.1", svc.delayed[echo]), timeout=5) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sent = b""
            for i in range(40):  # many small writes: each may be read, and delayed, on its own
                chunk = f"{i:03d};".encode()
                sock.sendall(chunk)
                sent += chunk
                time.sleep(0.002)
            got = b""
            while len(got) < len(sent):
                got += sock.recv(4096)
    finally:
        svc.stop()
    assert got == sent
