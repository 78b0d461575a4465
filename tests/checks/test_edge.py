"""edge.* at the public URLs, against the lab edge: real nginx with lab-CA (trustme) certificates,
proxy_cache and CloudFlare's headers, in front of a small origin."""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from checks.edge import (CACHE_STATUS, CERTIFICATE, DATABASES_NOT_CACHED, ERROR_PAGES, HTTPS_REDIRECT,
                         ORIGIN_LAYERS, PROXIED)
from studiodoctor import engine
from studiodoctor.lab.standins.edge_proxy import EdgeProxy
from studiodoctor.lab.launcher import free_port
from studiodoctor.model import Reason, Status
from studiodoctor.registry import default_registry

HOST = "studio.localtest"
CHANNEL = "0c3f6a3b9d0a4f7e8a2b1c9d8e7f6a5b"
EDGE_IDS = [HTTPS_REDIRECT, CERTIFICATE, PROXIED, ERROR_PAGES, CACHE_STATUS, DATABASES_NOT_CACHED]
_names = itertools.count()


class Origin(BaseHTTPRequestHandler):
    """Studio's origin as the edge sees it: storage immutable, databases private, a 502 page on demand."""

    protocol_version = "HTTP/1.1"
    channels: list = []          # what the public channels API lists

    def do_GET(self):
        status, headers, body = 200, {"Content-Type": "text/html"}, b"<html>studio</html>"
        if self.path.startswith("/content/storage/"):
            headers = {"Cache-Control": "public, max-age=31536000, immutable, no-transform",
                       "Content-Type": "video/mp4"}
        elif self.path.startswith("/content/databases/"):
            headers = {"Cache-Control": "private", "Content-Type": "application/octet-stream"}
        elif self.path.startswith("/static/"):
            headers = {"Content-Type": "application/javascript"}
        elif self.path.startswith("/with-assets/"):
            body = (b'<html><head><script src="/static/js/main.3f9c2e.js"></script>'
                    b'<link rel="icon" href="https://cdn.example/x.ico"></head></html>')
        elif self.path.startswith("/api/public/v1/channels"):
            headers = {"Content-Type": "application/json"}
            body = json.dumps(Origin.channels).encode()
        elif self.path.startswith("/bad-gateway"):
            status, body = 502, b"<html><head><title>502 Bad Gateway</title></head><center>nginx</center></html>"
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def origin():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def edge_server(tmp_path_factory, origin):
    server = EdgeProxy(tmp_path_factory.mktemp("edge"), hostnames=[HOST], origin_url=origin).start()
    yield server
    server.stop()


@pytest.fixture
def edge(edge_server):
    yield edge_server
    if edge_server.faults:
        edge_server.clear_faults()


def run(make_profile, edge, path: str = "/", **cloudflare):
    prof = edge.profile()
    n = next(_names)  # fresh object names: the edge cache must not carry over between tests
    sections = {"http": prof["http"], "cloudflare": {"static_path": f"/static/app{n}.js",
                                                     "storage_path": f"/content/storage/a/b/{n:032x}.mp4",
                                                     "databases_sample": f"/content/databases/{n:032x}.sqlite3",
                                                     **cloudflare}}
    report = engine.check(make_profile(sections, timeout=8, public_urls=[f"https://{HOST}{path}"]),
                          check_ids=EDGE_IDS)
    return {r.id: r for r in report.results}


def test_healthy_edge(edge, make_profile):
    res = run(make_profile, edge)
    assert {i: res[i].status for i in EDGE_IDS} == {i: Status.OK for i in EDGE_IDS}, \
        {i: res[i].summary for i in EDGE_IDS}
    assert 85 < res[CERTIFICATE].evidence["certificates"][HOST]["days_left"] < 91
    chain = res[HTTPS_REDIRECT].evidence["chains"][f"http://{HOST}/"]
    assert chain[0]["status"] == 301 and chain[0]["location"] == f"https://{HOST}/"
    assert res[DATABASES_NOT_CACHED].evidence["responses"][1]["cf-cache-status"] == "BYPASS"
    assert res[CACHE_STATUS].evidence["samples"]["storage"]["cf-cache-status"] in ("MISS", "HIT")


def test_expired_certificate(edge, make_profile):
    edge.set_fault("expired_cert")
    r = run(make_profile, edge)[CERTIFICATE]
    assert r.status is Status.FAIL and "expired" in r.summary and HOST in r.summary


def test_wrong_san(edge, make_profile):
    edge.set_fault("wrong_san")
    r = run(make_profile, edge)[CERTIFICATE]
    assert r.status is Status.FAIL and "does not cover" in r.summary and "wrong-name.localtest" in r.summary


def test_expiry_thresholds(edge, make_profile):
    assert run(make_profile, edge, cert_warn_days=120)[CERTIFICATE].status is Status.WARN
    assert run(make_profile, edge, cert_fail_days=120)[CERTIFICATE].status is Status.FAIL


def test_untrusted_chain(edge, make_profile, tmp_path):
    import trustme

    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    prof = edge.profile()
    report = engine.check(make_profile({"http": {**prof["http"], "ca_file": str(other)}}, timeout=8,
                                       public_urls=[f"https://{HOST}/"]), check_ids=[CERTIFICATE])
    r = report.results[0]
    assert r.status is Status.FAIL and "does not verify" in r.summary


def test_plain_http_not_redirected(edge, make_profile):
    edge.set_fault("no_redirect")
    r = run(make_profile, edge)[HTTPS_REDIRECT]
    assert r.status is Status.FAIL and "plain HTTP" in r.summary and "not redirected" in r.summary


def test_redirect_loop(edge, make_profile):
    edge.set_fault("redirect_loop")
    r = run(make_profile, edge)[HTTPS_REDIRECT]
    assert r.status is Status.FAIL and "redirect loop" in r.summary
    assert "ssl_mode" in r.hint
    assert "cloudflare.ssl_mode" in default_registry.get(HTTPS_REDIRECT).explained_by


@pytest.mark.parametrize("code, words", [(522, "timed out"), (524, "100 s")])
def test_cloudflare_error_pages(edge, make_profile, code, words):
    edge.set_fault(f"error_{code}")
    r = run(make_profile, edge)[ERROR_PAGES]
    assert r.status is Status.FAIL
    assert str(code) in r.summary and "CloudFlare's error page" in r.summary and words in r.summary
    assert r.evidence["responses"][f"https://{HOST}/"]["cloudflare_page"] is True
    assert set(ORIGIN_LAYERS) <= set(default_registry.get(ERROR_PAGES).explained_by)


def test_origin_502_page_passed_through(edge, make_profile):
    r = run(make_profile, edge, path="/bad-gateway")[ERROR_PAGES]
    assert r.status is Status.FAIL and "502" in r.summary and "origin's page" in r.summary


def test_databases_object_served_as_hit(edge, make_profile):
    edge.set_fault("databases_hit")
    r = run(make_profile, edge)[DATABASES_NOT_CACHED]
    assert r.status is Status.FAIL and "HIT" in r.summary
    assert [s["cf-cache-status"] for s in r.evidence["responses"]] == ["MISS", "HIT"]


def test_not_proxied(edge, make_profile):
    edge.set_fault("unproxied")
    res = run(make_profile, edge)
    r = res[PROXIED]
    assert r.status is Status.FAIL and "not served through CloudFlare" in r.summary and "cf-ray missing" in r.summary
    assert res[DATABASES_NOT_CACHED].status is Status.WARN


def test_edge_unreachable(make_profile):
    port = free_port()
    report = engine.check(make_profile({"http": {"resolve": {f"{HOST}:443": f"127.0.0.1:{port}",
                                                             f"{HOST}:80": f"127.0.0.1:{port}"}}},
                                       timeout=5, public_urls=[f"https://{HOST}/"]),
                          check_ids=[PROXIED, CERTIFICATE, HTTPS_REDIRECT])
    for r in report.results:
        assert r.status is Status.FAIL and r.reason == Reason.UNREACHABLE.value, r.summary


def test_no_sample_configured_or_found_is_an_error_naming_the_keys(edge, make_profile):
    report = engine.check(make_profile({"http": edge.profile()["http"]}, timeout=5,
                                       public_urls=[f"https://{HOST}/"]), check_ids=[CACHE_STATUS, DATABASES_NOT_CACHED])
    res = {r.id: r for r in report.results}
    db, cache = res[DATABASES_NOT_CACHED], res[CACHE_STATUS]
    assert db.status is Status.ERROR and "cloudflare.databases_sample" in db.summary, db.summary
    assert cache.status is Status.ERROR and "cloudflare.static_path" in cache.summary, cache.summary


def test_samples_are_discovered_from_the_live_site(edge, make_profile):
    """Before: skipped unless cloudflare.static_path / databases_sample named a file of our own lab."""
    Origin.channels = [{"id": "not-a-channel-id"}, {"id": CHANNEL, "name": "Math"}]
    try:
        report = engine.check(make_profile({"http": edge.profile()["http"]}, timeout=8,
                                           public_urls=[f"https://{HOST}/with-assets/"]),
                              check_ids=[CACHE_STATUS, DATABASES_NOT_CACHED])
    finally:
        Origin.channels = []
    res = {r.id: r for r in report.results}
    cache, db = res[CACHE_STATUS], res[DATABASES_NOT_CACHED]
    assert cache.status is Status.OK, cache.summary
    assert cache.evidence["samples"]["static"]["url"].endswith("/static/js/main.3f9c2e.js")
    assert cache.evidence["samples"]["static"]["source"].startswith("referenced by")
    assert db.status is Status.OK, db.summary
    assert db.evidence["url"].endswith(f"/content/databases/{CHANNEL}.sqlite3")
    assert db.evidence["source"] == f"a channel of the public channel API at https://{HOST}"


# ---- the whole edge lab: diagnose names the right cause for each fault -------------------------------
@pytest.fixture(scope="module")
def edge_lab(tmp_path_factory, edge_server):
    from studiodoctor.lab import edge_lab as lab
    from studiodoctor.lab.standins.cloudflare_api import CloudflareAPI
    from studiodoctor.lab.standins.dns_server import DnsServer

    root = tmp_path_factory.mktemp("edgelab")
    dns = DnsServer(root, zone="localtest", records=lab.records_for([HOST], "localtest")).start()
    cf = CloudflareAPI(root, zone="localtest", hostnames=[HOST]).start()
    yield dns, cf, edge_server
    dns.stop()
    cf.stop()


@pytest.mark.parametrize("fault, symptom, cause", [
    (None, "ssl", None),
    ("edge-cert-expired", "ssl", CERTIFICATE),
    ("edge-cert-wrong-san", "ssl", CERTIFICATE),
    ("ssl-flexible", "ssl", "cloudflare.ssl_mode"),
    ("http-not-redirected", "ssl", "cloudflare.always_use_https"),
    ("redirect-loop", "ssl", HTTPS_REDIRECT),
    ("record-unproxied", "dns", "cloudflare.dns_records"),
    ("record-missing", "dns", "cloudflare.dns_records"),
    ("dns-servfail", "dns", "dns.resolves"),
    ("databases-hit", "caching", "cloudflare.cache_rules"),
    ("edge-522", "502", ERROR_PAGES),
    ("edge-524", "524", ERROR_PAGES),
])
def test_diagnose_names_the_cause(edge_lab, make_profile, fault, symptom, cause):
    from studiodoctor.lab import edge_lab as lab

    dns, cf, edge = edge_lab
    n = next(_names)
    sections = lab.profile(dns, cf, edge, static_path=f"/static/d{n}.js", storage_path=f"/content/storage/d{n}.mp4",
                           databases_sample=f"/content/databases/{n:032x}.sqlite3")
    top = {"public_urls": sections.pop("public_urls")}
    if fault:
        lab.apply(fault, True, dns=dns, cf=cf, edge=edge)
    try:
        report = engine.diagnose(make_profile(sections, timeout=8, **top), symptom)
    finally:
        if fault:
            lab.apply(fault, False, dns=dns, cf=cf, edge=edge)
    failing = {r.id: r.summary for r in report.results if r.status is Status.FAIL}
    if cause is None:
        assert report.likely_cause is None, failing
    else:
        assert report.likely_cause and report.likely_cause["check"] == cause, failing


# ---- cf-cache-status values the lab edge never sends -----------------------------------------------------
class _Statuses(BaseHTTPRequestHandler):
    """Answers every GET with the next cf-cache-status of ``server.statuses`` (CloudFlare's headers)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        status = self.server.statuses.pop(0) if self.server.statuses else None
        self.send_response(206)
        for k, v in {"Server": "cloudflare", "CF-RAY": "8a1b2c3d4e5f6a7b-AMS", "Content-Length": "1",
                     "Content-Range": "bytes 0-0/10", "Age": "42"}.items():
            self.send_header(k, v)
        if status:
            self.send_header("CF-Cache-Status", status)
        self.end_headers()
        self.wfile.write(b"x")

    def log_message(self, *args):
        pass


@pytest.fixture
def status_edge():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Statuses)
    server.daemon_threads = True
    server.statuses = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _databases_result(make_profile, server, statuses):
    server.statuses[:] = statuses
    profile = make_profile({"cloudflare": {"databases_sample": "/content/databases/abc.sqlite3"}}, timeout=5,
                           public_urls=[f"http://127.0.0.1:{server.server_port}/"])
    return engine.check(profile, check_ids=[DATABASES_NOT_CACHED]).results[0]


@pytest.mark.parametrize("statuses", [["UPDATING", "UPDATING"], ["MISS", "STALE"]])
def test_databases_served_stale_from_the_cache_fail(make_profile, status_edge, statuses):
    r = _databases_result(make_profile, status_edge, statuses)
    assert r.status is Status.FAIL, r.summary
    assert "served from CloudFlare's cache" in r.summary and statuses[-1] in r.summary


@pytest.mark.parametrize("statuses", [["BYPASS", None], ["DYNAMIC", "NONE/UNKNOWN"]])
def test_databases_unreadable_cache_status_is_an_error(make_profile, status_edge, statuses):
    r = _databases_result(make_profile, status_edge, statuses)
    assert r.status is Status.ERROR, r.summary
    assert "cannot tell" in r.summary


def test_databases_bypassed_is_ok(make_profile, status_edge):
    assert _databases_result(make_profile, status_edge, ["BYPASS", "BYPASS"]).status is Status.OK
