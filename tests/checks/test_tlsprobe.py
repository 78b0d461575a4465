"""The TLS probe classifies what went wrong (no answer, reset, refused, verification) instead of
calling every socket error on the verifying handshake "certificate does not verify"."""

from __future__ import annotations

import socket
import ssl
import struct
import threading

import pytest

from checks import edge, traefik
from studiodoctor import engine
from studiodoctor.lab.certs import LabCA
from studiodoctor.lab.launcher import free_port
from studiodoctor.model import Reason, Status
from studiodoctor.probes.tls import TLSProbeError, inspect_certificate

HOST = "studio.localtest"


class OddTLS:
    """Completes the first ``good`` TLS handshakes, then misbehaves: "hang" (accepts, never answers) or
    "reset" (accepts, then RST)."""

    def __init__(self, tmp_path, mode: str, good: int = 1):
        ca = LabCA(tmp_path)
        self.ca_file = str(ca.ca_file)
        cert, key = ca.issue(HOST)
        self.cert_file = cert
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.mode, self.good = mode, good
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.held: list = []
        self.stop = threading.Event()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        n = 0
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            n += 1
            if n <= self.good:
                try:
                    with self.ctx.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(1)
                except (ssl.SSLError, OSError):
                    pass
            elif self.mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.recv(1024)
                conn.close()
            else:
                self.held.append(conn)  # never answers

    def close(self):
        self.stop.set()
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.fixture
def odd(tmp_path):
    servers = []

    def make(mode, good=1):
        s = OddTLS(tmp_path / f"{mode}{good}", mode, good)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


@pytest.mark.parametrize("mode", ["hang", "reset"])
def test_second_handshake_failure_is_not_a_verification_failure(odd, mode):
    server = odd(mode)
    info = inspect_certificate("127.0.0.1", server.port, HOST, timeout=1.0, ca_file=server.ca_file)
    assert info.verify_error is None  # before: "timed out" / "Connection reset by peer" as a verify error
    assert info.verify_unknown and ("no answer" if mode == "hang" else "reset") in info.verify_unknown


@pytest.mark.parametrize("mode, kind", [("hang", "timeout"), ("reset", "reset")])
def test_first_handshake_failure_has_a_kind(odd, mode, kind):
    server = odd(mode, good=0)
    with pytest.raises(TLSProbeError) as info:
        inspect_certificate("127.0.0.1", server.port, HOST, timeout=1.0)
    assert info.value.kind == kind
    with pytest.raises(TLSProbeError) as info:
        inspect_certificate("127.0.0.1", free_port(), HOST, timeout=1.0)
    assert info.value.kind == "refused"


def test_untrusted_chain_is_still_a_verify_error(odd):
    server = odd("hang", good=2)
    info = inspect_certificate("127.0.0.1", server.port, HOST, timeout=2.0)  # no lab CA: untrusted
    assert info.verify_error and "certificate" in info.verify_error.lower() and info.verify_unknown is None


def test_edge_certificate_timeout_on_verify_is_an_error_not_a_certificate_fault(odd, make_profile):
    server = odd("hang")
    profile = make_profile({"http": {"ca_file": server.ca_file, "resolve": {f"{HOST}:443": f"127.0.0.1:{server.port}"}}},
                           timeout=3, public_urls=[f"https://{HOST}/"])
    r = engine.check(profile, check_ids=[edge.CERTIFICATE]).results[0]
    assert r.status is Status.ERROR, r.summary
    assert "does not verify" not in r.summary and "no answer" in r.summary


def test_edge_certificate_reset_on_first_handshake_is_a_tls_fail_not_unreachable(odd, make_profile):
    server = odd("reset", good=0)
    profile = make_profile({"http": {"resolve": {f"{HOST}:443": f"127.0.0.1:{server.port}"}}},
                           timeout=3, public_urls=[f"https://{HOST}/"])
    r = engine.check(profile, check_ids=[edge.CERTIFICATE]).results[0]
    assert r.status is Status.FAIL and r.reason == Reason.FINDING.value, r.summary
    assert "accepted the connection" in r.summary and "reset" in r.summary


def test_traefik_certificates_timeout_on_verify_is_an_error(odd, make_profile):
    server = odd("hang")
    profile = make_profile({"http": {"ca_file": server.ca_file}, "dns": {"hostnames": [HOST]},
                            "traefik": {"entrypoint": f"https://127.0.0.1:{server.port}"}}, timeout=3)
    r = engine.check(profile, check_ids=[traefik.CERTIFICATES]).results[0]
    assert r.status is Status.ERROR, r.summary
    assert "could not verify" in r.summary and "not trusted" not in r.summary


def test_certificate_reads_report_their_handshakes_as_network_time(odd, make_profile):
    server = odd("hang", good=2)  # both handshakes complete
    spans = []
    inspect_certificate("127.0.0.1", server.port, HOST, timeout=2.0, ca_file=server.ca_file, on_network=spans.append)
    assert len(spans) == 2 and all(0 < s < 2.0 for s in spans)
    server = odd("hang", good=2)
    profile = make_profile({"http": {"ca_file": server.ca_file, "resolve": {f"{HOST}:443": f"127.0.0.1:{server.port}"}}},
                           timeout=3, public_urls=[f"https://{HOST}/"])
    r = engine.check(profile, check_ids=[edge.CERTIFICATE]).results[0]
    assert r.status is Status.OK, r.summary
    assert 0 < r.network_ms <= r.duration_ms + 0.1


def test_a_verified_certificate_reads_the_same_without_cryptography(odd):
    """A certificate that verifies is read from the verifying handshake's own decoding (no parser to import,
    ~70 ms of a run's start-up): subject, issuer, names and expiry exactly as cryptography reads them."""
    import subprocess
    import sys

    from studiodoctor.probes.tls import _parse_der

    server = odd("hang", good=4)
    info = inspect_certificate("127.0.0.1", server.port, HOST, timeout=2.0, ca_file=server.ca_file)
    assert info.verify_error is None and info.verify_unknown is None, info.evidence()
    leaf = open(server.cert_file).read().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    der = ssl.PEM_cert_to_DER_cert(leaf)
    assert (info.subject, info.issuer, info.sans, info.not_after) == _parse_der(der)
    assert "Testing CA" in info.issuer and info.sans == [HOST] and info.names_match, info.evidence()
    code = ("import sys; from studiodoctor.probes.tls import inspect_certificate as i; "
            "c = i('127.0.0.1', %d, %r, timeout=2.0, ca_file=%r); print(c.subject, 'cryptography' in sys.modules)"
            % (server.port, HOST, server.ca_file))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == f"{info.subject} False", out.stdout + out.stderr


def test_a_certificate_that_does_not_verify_is_still_read(odd):
    server = odd("hang", good=2)
    info = inspect_certificate("127.0.0.1", server.port, HOST, timeout=2.0)  # no lab CA: the parser reads it
    assert info.verify_error and info.sans == [HOST] and "CN=" + HOST in info.subject, info.evidence()
