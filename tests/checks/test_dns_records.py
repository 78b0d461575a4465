"""dns.* against a real DNS server on loopback (studiodoctor.lab.standins.dns_server, dnslib in its own process)."""

from __future__ import annotations

import pytest

from checks.dns_records import CLOUDFLARE_RANGES, CONSISTENT, DELEGATION, RESOLVES, _resolvers
from studiodoctor import engine
from studiodoctor.lab.standins.dns_server import DnsServer
from studiodoctor.lab.launcher import free_port
from studiodoctor.model import Reason, Status

GOOD = [
    {"name": "studio.localtest", "type": "A", "value": "104.16.1.1"},
    {"name": "studio.localtest", "type": "AAAA", "value": "2606:4700::6810:101"},
    {"name": "www.studio.localtest", "type": "CNAME", "value": "studio.localtest"},
    {"name": "lab.localtest", "type": "A", "value": "127.0.0.1"},
    {"name": "exposed.localtest", "type": "A", "value": "203.0.113.7"},
    {"name": "moved.localtest", "type": "A", "value": "104.16.2.2"},
    {"name": "broken.localtest", "type": "A", "value": "104.16.3.3"},
    {"name": "slow.localtest", "type": "A", "value": "104.16.4.4"},
    {"name": "localtest", "type": "NS", "value": "ada.ns.cloudflare.com"},
    {"name": "localtest", "type": "NS", "value": "bob.ns.cloudflare.com"},
    {"name": "mixed.test", "type": "NS", "value": "ada.ns.cloudflare.com"},
    {"name": "mixed.test", "type": "NS", "value": "dns1.registrar-servers.com"},
]
FAULTS = {"broken.localtest": "servfail", "slow.localtest": "timeout"}


@pytest.fixture(scope="module")
def dns_pair(tmp_path_factory):
    """Two resolvers: the same zone except moved.localtest (a propagation in progress)."""
    root = tmp_path_factory.mktemp("dns")
    first = DnsServer(root / "a", records=GOOD, faults=FAULTS).start()
    other = [dict(r, value="104.16.9.9") if r["name"] == "moved.localtest" else r for r in GOOD]
    second = DnsServer(root / "b", records=other, faults=FAULTS).start()
    yield first, second
    first.stop()
    second.stop()


def run(make_profile, dns: dict, **top):
    profile = make_profile({"dns": {"query_timeout": 0.6, **dns}}, timeout=5, **top)
    report = engine.check(profile, layers=["dns"])
    return {r.id: r for r in report.results}


def test_good_zone_all_ok(dns_pair, make_profile):
    a, b = dns_pair
    res = run(make_profile, {"zone": "localtest", "hostnames": ["studio.localtest", "www.studio.localtest"],
                             "resolvers": [a.resolver, b.resolver]})
    assert {k: v.status for k, v in res.items()} == {DELEGATION: Status.OK, RESOLVES: Status.OK,
                                                     CONSISTENT: Status.OK, CLOUDFLARE_RANGES: Status.OK}
    assert "ada.ns.cloudflare.com" in res[DELEGATION].summary
    www = next(row for row in res[RESOLVES].evidence["lookups"] if row["host"] == "www.studio.localtest")
    assert www["cnames"] == ["www.studio.localtest", "studio.localtest"]
    assert sorted(www["addresses"]) == ["104.16.1.1", "2606:4700::6810:101"]
    assert res[CLOUDFLARE_RANGES].evidence["ranges_date"] == "2026-11-28"


def test_missing_record_is_nxdomain(dns_pair, make_profile):
    res = run(make_profile, {"hostnames": ["studio.localtest", "gone.localtest"], "resolvers": [dns_pair[0].resolver]})
    r = res[RESOLVES]
    assert r.status is Status.FAIL
    assert "gone.localtest" in r.summary and "NXDOMAIN" in r.summary
    assert any("dig" in c.text and "gone.localtest" in c.text and f"-p {dns_pair[0].port}" in c.text
               for c in r.commands)


def test_servfail_told_apart(dns_pair, make_profile):
    r = run(make_profile, {"hostnames": ["broken.localtest"], "resolvers": [dns_pair[0].resolver]})[RESOLVES]
    assert r.status is Status.FAIL and "SERVFAIL" in r.summary and r.reason == Reason.FINDING.value


def test_timeout_told_apart(dns_pair, make_profile):
    r = run(make_profile, {"hostnames": ["slow.localtest"], "resolvers": [dns_pair[0].resolver]})[RESOLVES]
    assert r.status is Status.FAIL and "timed out" in r.summary and r.reason == Reason.TIMEOUT.value


def test_resolver_not_listening(make_profile):
    port = free_port()
    r = run(make_profile, {"hostnames": ["studio.localtest"], "resolvers": [f"127.0.0.1:{port}"]})[RESOLVES]
    assert r.status is Status.FAIL
    assert r.reason in (Reason.UNREACHABLE.value, Reason.TIMEOUT.value)


def test_unproxied_name_outside_cloudflare_ranges(dns_pair, make_profile):
    res = run(make_profile, {"hostnames": ["studio.localtest", "exposed.localtest"],
                             "resolvers": [dns_pair[0].resolver]})
    r = res[CLOUDFLARE_RANGES]
    assert r.status is Status.FAIL and "203.0.113.7" in r.summary and "exposed.localtest" in r.summary
    assert r.evidence["outside"] == {"exposed.localtest": ["203.0.113.7"]}


def test_lab_edge_ranges_count_loopback(dns_pair, make_profile):
    dns = {"hostnames": ["lab.localtest"], "resolvers": [dns_pair[0].resolver]}
    assert run(make_profile, dns)[CLOUDFLARE_RANGES].status is Status.FAIL
    assert run(make_profile, {**dns, "extra_edge_ranges": ["127.0.0.0/8"]})[CLOUDFLARE_RANGES].status is Status.OK


def test_divergent_resolvers_warn(dns_pair, make_profile):
    a, b = dns_pair
    r = run(make_profile, {"hostnames": ["moved.localtest"], "resolvers": [a.resolver, b.resolver]})[CONSISTENT]
    assert r.status is Status.WARN
    assert "104.16.2.2" in r.summary and "104.16.9.9" in r.summary


def test_delegation_not_cloudflare(dns_pair, make_profile):
    r = run(make_profile, {"zone": "mixed.test", "hostnames": ["studio.localtest"],
                           "resolvers": [dns_pair[0].resolver]})[DELEGATION]
    assert r.status is Status.FAIL
    assert "dns1.registrar-servers.com" in r.summary and "mixed" in r.summary


def test_delegation_fault_flip_and_revert(tmp_path, make_profile):
    """The launcher's zone file is reread: a lab fault applies and reverts without a restart."""
    server = DnsServer(tmp_path, zone="localtest", records=GOOD).start()
    try:
        dns = {"zone": "localtest", "hostnames": ["studio.localtest"], "resolvers": [server.resolver]}
        assert run(make_profile, dns)[DELEGATION].status is Status.OK
        server.set_nameservers(["ns1.old-dns-host.example"])
        assert run(make_profile, dns)[DELEGATION].status is Status.FAIL
        server.remove_record("studio.localtest")
        assert "NXDOMAIN" in run(make_profile, dns)[RESOLVES].summary
    finally:
        server.stop()
    assert not server.alive()


def test_resolver_parsing(make_profile):
    from studiodoctor.context import CheckContext, Shared
    from studiodoctor.registry import default_registry

    profile = make_profile({"dns": {"resolvers": ["1.1.1.1", "127.0.0.1:5353", "[::1]:53", "2606:4700::1111"]}})
    ctx = CheckContext(default_registry.get(RESOLVES), profile, 0, Shared())
    assert _resolvers(ctx) == [("1.1.1.1", "1.1.1.1", 53), ("127.0.0.1:5353", "127.0.0.1", 5353),
                               ("[::1]:53", "::1", 53), ("2606:4700::1111", "2606:4700::1111", 53)]


def test_unreadable_ns_answer_is_an_error_not_a_broken_delegation(make_profile):
    """A resolver that answers NOTIMP tells nothing about the zone's delegation."""
    import socket
    import threading

    from dnslib import RCODE, DNSRecord

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except OSError:
                continue
            reply = DNSRecord.parse(data).reply()
            reply.header.rcode = RCODE.NOTIMP
            sock.sendto(reply.pack(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        resolver = f"127.0.0.1:{sock.getsockname()[1]}"
        profile = make_profile({"dns": {"zone": "localtest", "resolvers": [resolver], "query_timeout": 0.6}},
                               timeout=5)
        r = engine.check(profile, check_ids=[DELEGATION]).results[0]
    finally:
        stop.set()
        thread.join(2)
        sock.close()
    assert r.status is Status.ERROR, r.summary
    assert r.evidence["answers"][resolver]["outcome"] == "error"


def test_delegation_without_dns_zone_uses_cloudflare_zone(dns_pair, make_profile):
    """Before: skipped ("dns.zone is not set"), a key outside DESIGN's contract."""
    a, _ = dns_pair
    profile = make_profile({"dns": {"query_timeout": 0.6, "hostnames": ["studio.localtest"], "resolvers": [a.resolver]},
                            "cloudflare": {"zone": "localtest"}}, timeout=5)
    r = engine.check(profile, check_ids=[DELEGATION]).results[0]
    assert r.status is Status.OK, r.summary
    assert r.evidence["zone"] == "localtest" and r.evidence["zone_from"] == "from cloudflare.zone"


def test_delegation_with_no_zone_at_all_finds_it_from_the_hostnames(dns_pair, make_profile):
    a, _ = dns_pair
    profile = make_profile({"dns": {"query_timeout": 0.6, "resolvers": [a.resolver]}}, timeout=5,
                           public_urls=["https://www.studio.localtest/"])
    assert profile.derived["dns.zone"].startswith("derived from dns.hostnames")
    r = engine.check(profile, check_ids=[DELEGATION]).results[0]
    assert r.status is Status.OK, r.summary
    assert r.evidence["zone"] == "localtest"  # not the guess "studio.localtest": the closest name with NS
    assert r.evidence["zone_from"].startswith("found from www.studio.localtest")
