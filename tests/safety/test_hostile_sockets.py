"""Hostile sockets: real servers that answer HTML where JSON is expected, a 10 MB body, cut a TLS
handshake mid-way, reset the connection, or drip one byte a second. Every HTTP layer pointed at them
returns within --timeout + 1 s, with results that carry a reason (never a crash), and the 10 MB body is
not read whole."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from studiodoctor import engine
from studiodoctor.model import Reason, Status
from tests.safety.sockets import Hostile, answer, read_request, reset
from tests.safety.stack import HTTP_LAYERS

TIMEOUT = 2.0
BIG = 10 * 1024 * 1024


def _html(conn, i):
    answer(conn, b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
           content_type="text/html")


class _Big:
    """Sends a 10 MB answer; records per connection whether all of it went out (the client read it, or
    the kernel buffered the rest) or the client hung up first."""

    def __init__(self):
        self.complete: list[bool] = []

    def __call__(self, conn, i):
        read_request(conn)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {BIG}\r\n"
                     f"Connection: close\r\n\r\n".encode())
        chunk = b"[" + b"1," * 32767 + b"1"  # valid JSON tokens, never closed
        left = BIG
        try:
            while left > 0:
                part = chunk[:left]
                conn.sendall(part)
                left -= len(part)
        finally:
            self.complete.append(left == 0)


def _tls_cut(conn, i):
    """Reads the ClientHello, answers the first bytes of a ServerHello record, then closes."""
    conn.settimeout(5)
    conn.recv(4096)
    conn.sendall(b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03")  # record header + start of ServerHello


def _reset(conn, i):
    read_request(conn)
    reset(conn)


def _drip(conn, i):
    read_request(conn)
    for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}":
        conn.sendall(bytes([byte]))
        time.sleep(1)


def _run(stack_at, server, layer, https=False, without=()):
    url = server.url.replace("http://", "https://") if https else server.url
    profile = stack_at(url, without=without, timeout=TIMEOUT)
    started = time.monotonic()
    results = engine.check(profile, layers=[layer]).results
    return results, time.monotonic() - started


def _assert_reasoned(results, wall):
    assert wall < TIMEOUT + 1.0, f"{wall:.2f} s"
    for r in results:
        assert r.reason != Reason.BUG.value, f"{r.id}: {r.summary}"
        assert r.summary.strip()
    roots = [r for r in results if r.status is not Status.BLOCKED and r.status is not Status.SKIP]
    assert roots and all(r.status is not Status.OK for r in roots if r.layer != "nginx" or "reachable" in r.id)


@pytest.fixture(autouse=True)
def _imported():
    from studiodoctor.registry import default_registry
    from studiodoctor.runner import preload

    preload(default_registry.load_plugins().checks.values())


@pytest.mark.parametrize("layer", HTTP_LAYERS)
@pytest.mark.parametrize("kind", ["html", "reset", "drip"])
def test_hostile_http_server(kind, layer, stack_at):
    server = Hostile({"html": _html, "reset": _reset, "drip": _drip}[kind])
    try:
        results, wall = _run(stack_at, server, layer)
    finally:
        server.close()
    assert wall < TIMEOUT + 1.0, f"{wall:.2f} s"
    for r in results:
        assert r.reason != Reason.BUG.value, f"{r.id}: {r.summary}"
        assert r.summary.strip()
        assert r.status is not Status.OK or kind == "html", f"{r.id}: ok from a {kind} server: {r.summary}"


@pytest.mark.parametrize("layer", HTTP_LAYERS)
def test_tls_handshake_cut_midway(layer, stack_at):
    server = Hostile(_tls_cut)
    try:
        results, wall = _run(stack_at, server, layer, https=True)
    finally:
        server.close()
    assert wall < TIMEOUT + 1.0, f"{wall:.2f} s"
    assert server.connections >= 1
    for r in results:
        assert r.reason != Reason.BUG.value, f"{r.id}: {r.summary}"
        assert r.status is not Status.OK, f"{r.id}: ok through a cut TLS handshake"


@pytest.mark.parametrize("layer", ["app", "nginx"])
def test_a_10_mb_body_is_not_read_whole(layer, stack_at):
    """The layers that read through httpprobe stop at MAX_BODY (the SDK-based ones read what their SDK
    reads)."""
    big = _Big()
    server = Hostile(big)
    try:
        # without gcs: nginx.content_storage would list one object through the gcs SDK to find a content
        # file, and SDK reads are the SDK's (not bounded by httpprobe), as for the gcs layer itself
        results, wall = _run(stack_at, server, layer, without=("gcs",))
        deadline = time.monotonic() + 3
        while len(big.complete) < server.connections and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.close()
    assert wall < TIMEOUT + 1.0
    for r in results:
        assert r.reason != Reason.BUG.value, f"{r.id}: {r.summary}"
    assert big.complete and not any(big.complete), "a client read all 10 MB"
