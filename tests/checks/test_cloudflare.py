"""cloudflare.* driven by the real `cloudflare` SDK against the lab's v4 API stand-in (a real HTTP server
process serving CloudFlare's envelopes, state reread from a JSON file)."""

from __future__ import annotations

import pytest

from checks.cloudflare import ALWAYS_HTTPS, CACHE_RULES, DEVELOPMENT_MODE, DNS_RECORDS, MIN_TLS, SSL_MODE, ZONE
from studiodoctor.parsers.cfrules import Undecidable, matches, request_fields
from studiodoctor import engine
from studiodoctor.lab.standins.cloudflare_api import CloudflareAPI
from studiodoctor.lab.launcher import free_port
from studiodoctor.model import MUTATING, Reason, Status

HOSTS = ["studio.localtest", "hotfixes.studio.localtest"]
API_IDS = [ZONE, DEVELOPMENT_MODE, SSL_MODE, ALWAYS_HTTPS, MIN_TLS, DNS_RECORDS, CACHE_RULES]


@pytest.fixture(scope="module")
def cf_server(tmp_path_factory):
    server = CloudflareAPI(tmp_path_factory.mktemp("cf"), zone="localtest", hostnames=HOSTS).start()
    yield server
    server.stop()


@pytest.fixture
def cf(cf_server):
    cf_server.reset()
    yield cf_server
    cf_server.reset()


def run(make_profile, api, cloudflare: dict | None = None, dns: dict | None = None):
    sections = {"cloudflare": {**api.profile()["cloudflare"], **(cloudflare or {})},
                "dns": {"hostnames": HOSTS, **(dns or {})}}
    report = engine.check(make_profile(sections, timeout=5), check_ids=API_IDS)
    return {r.id: r for r in report.results}


def test_healthy_zone(cf, make_profile):
    res = run(make_profile, cf)
    assert {i: res[i].status for i in API_IDS} == {i: Status.OK for i in API_IDS}
    assert res[ZONE].evidence["name_servers"] == ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"]
    assert "never cache channel databases" in res[CACHE_RULES].summary


def test_no_token_skips_naming_the_key(cf, make_profile):
    res = run(make_profile, cf, {"api_token": ""})
    assert all(res[i].status is Status.SKIP for i in API_IDS)
    assert "cloudflare.api_token" in res[ZONE].summary


def test_ssl_flexible_fails_naming_the_loop(cf, make_profile):
    cf.set_setting("ssl", "flexible")
    r = run(make_profile, cf)[SSL_MODE]
    assert r.status is Status.FAIL and "redirect loop" in r.summary and "004" in r.summary
    assert any(c.safety == MUTATING and "settings/ssl" in c.text and "strict" in c.text for c in r.commands)


def test_record_not_proxied(cf, make_profile):
    cf.set_record("hotfixes.studio.localtest", proxied=False, content="203.0.113.7")
    r = run(make_profile, cf)[DNS_RECORDS]
    assert r.status is Status.FAIL
    assert "hotfixes.studio.localtest" in r.summary and "203.0.113.7" in r.summary and "not proxied" in r.summary


def test_missing_record(cf, make_profile):
    cf.delete_record("hotfixes.studio.localtest")
    r = run(make_profile, cf)[DNS_RECORDS]
    assert r.status is Status.FAIL and r.evidence["missing"] == ["hotfixes.studio.localtest"]


def test_records_paginated_until_a_short_page(cf, make_profile):
    """250 records at per_page 100: the host on page 3 is found, and page 3 (50 records) is the last
    asked for (no request for an empty page 4); at the default per_page (5,000) they are one request."""
    state = cf.read_state()
    filler = [{"id": f"f{i:031d}", "name": f"n{i}.localtest", "type": "A", "content": "192.0.2.1",
               "proxied": False, "ttl": 1} for i in range(248)]
    state["zones"][0]["dns_records"] = filler + state["zones"][0]["dns_records"]
    cf.write_state(state)
    r = run(make_profile, cf, cloudflare={"per_page": 100})[DNS_RECORDS]
    assert r.status is Status.OK and r.evidence["records_listed"] == 250
    page_requests = [line for line in cf.log.read_text().splitlines() if "/dns_records" in line]
    assert any("page=3" in line for line in page_requests)
    assert not any("page=4" in line for line in page_requests)
    before = len(page_requests)
    r = run(make_profile, cf)[DNS_RECORDS]
    assert r.status is Status.OK and r.evidence["records_listed"] == 250
    after = [line for line in cf.log.read_text().splitlines() if "/dns_records" in line][before:]
    assert len(after) == 1 and "per_page=5000" in after[0]


def test_403_names_the_permission(cf, make_profile):
    cf.set_deny(["settings"])
    res = run(make_profile, cf)
    assert res[ZONE].status is Status.OK
    r = res[SSL_MODE]
    assert r.status is Status.ERROR and r.reason == Reason.FORBIDDEN.value
    assert "Zone Settings:Read" in r.summary
    assert res[DNS_RECORDS].status is Status.OK


def test_403_on_zones(cf, make_profile):
    cf.set_deny(["zones"])
    res = run(make_profile, cf)
    assert res[ZONE].status is Status.ERROR and "Zone:Read" in res[ZONE].summary
    assert res[SSL_MODE].status is Status.BLOCKED and res[SSL_MODE].blocked_by == [ZONE]


def test_bad_token_is_auth_error(cf, make_profile):
    r = run(make_profile, cf, {"api_token": "not-the-token"})[ZONE]
    assert r.status is Status.ERROR and r.reason == Reason.AUTH.value and "401" in r.summary
    assert "not-the-token" not in r.summary


def test_api_unreachable(make_profile):
    port = free_port()
    r = engine.check(make_profile({"cloudflare": {"api_url": f"http://127.0.0.1:{port}/client/v4",
                                                  "api_token": "t", "zone": "localtest"}}, timeout=5),
                     check_ids=[ZONE]).results[0]
    assert r.status is Status.FAIL and r.reason == Reason.UNREACHABLE.value and "unreachable" in r.summary


def test_paused_and_pending_zone(cf, make_profile):
    cf.set_zone(paused=True)
    assert "paused" in run(make_profile, cf)[ZONE].summary
    cf.set_zone(paused=False, status="pending")
    r = run(make_profile, cf)[ZONE]
    assert r.status is Status.FAIL and "pending" in r.summary and "ada.ns.cloudflare.com" in r.hint


def test_settings_faults(cf, make_profile):
    cf.set_setting("always_use_https", "off")
    cf.set_setting("min_tls_version", "1.0")
    cf.set_setting("development_mode", "on")
    res = run(make_profile, cf)
    assert res[ALWAYS_HTTPS].status is Status.FAIL
    assert res[MIN_TLS].status is Status.WARN and "1.0" in res[MIN_TLS].summary
    assert res[DEVELOPMENT_MODE].status is Status.WARN and "180 more min" in res[DEVELOPMENT_MODE].summary


def test_cache_rule_caching_databases_fails(cf, make_profile):
    cf.set_cache_rule(cache_databases=True)
    r = run(make_profile, cf)[CACHE_RULES]
    assert r.status is Status.FAIL and "never cache channel databases" in r.summary and "eligible" in r.summary


def test_broad_rule_after_bypass_wins(cf, make_profile):
    state = cf.read_state()
    state["zones"][0]["rulesets"]["http_request_cache_settings"]["rules"].append(
        {"id": "r3", "enabled": True, "action": "set_cache_settings", "description": "cache all content",
         "expression": 'http.request.uri.path matches "^/content/"', "action_parameters": {"cache": True}})
    cf.write_state(state)
    r = run(make_profile, cf)[CACHE_RULES]
    assert r.status is Status.FAIL and "cache all content" in r.summary


def test_no_cache_rules_warns(cf, make_profile):
    state = cf.read_state()
    state["zones"][0]["rulesets"] = {}
    cf.write_state(state)
    r = run(make_profile, cf)[CACHE_RULES]
    assert r.status is Status.WARN and "no cache rules" in r.summary


def test_undecidable_rule_is_error_not_ok(cf, make_profile):
    state = cf.read_state()
    state["zones"][0]["rulesets"]["http_request_cache_settings"]["rules"].append(
        {"id": "r4", "enabled": True, "action": "set_cache_settings", "description": "bots",
         "expression": "cf.bot_management.score lt 30", "action_parameters": {"cache": True}})
    cf.write_state(state)
    r = run(make_profile, cf)[CACHE_RULES]
    assert r.status is Status.ERROR and "cf.bot_management.score" in r.summary


def test_rules_expression_evaluator():
    f = request_fields("studio.localtest", "/content/databases/abc.sqlite3")
    assert matches('(starts_with(http.request.uri.path, "/content/databases/"))', f)
    assert matches('http.request.uri.path.extension in {"sqlite3" "json"} and http.host eq "studio.localtest"', f)
    assert not matches('not http.request.uri.path contains "/content/"', f)
    assert matches('http.request.uri.path wildcard "/CONTENT/*"', f)
    assert not matches('http.request.uri.path strict wildcard "/CONTENT/*"', f)
    with pytest.raises(Undecidable):
        matches('ip.src in {1.2.3.4}', f)


def _cache_ruleset(cf, **flags):
    state = cf.read_state()
    ruleset = state["zones"][0]["rulesets"]["http_request_cache_settings"]
    ruleset.update(flags)
    cf.write_state(state)
    return state


def test_entrypoint_answered_as_a_list_is_read_not_crashed(cf, make_profile):
    """Before: `'list' object has no attribute 'rules'` (check crashed)."""
    _cache_ruleset(cf, answer_as_list=True)
    r = run(make_profile, cf)[CACHE_RULES]
    assert r.status is Status.OK, r.summary
    assert "never cache channel databases" in r.summary


def test_rules_in_a_zone_ruleset_without_entrypoint_are_found_through_the_paginated_list(cf, make_profile):
    state = _cache_ruleset(cf, entrypoint=False)
    zone = state["zones"][0]
    for i in range(3):  # rulesets of other phases are listed too and must be ignored
        zone["rulesets"][f"phase_{i}"] = {"id": f"other{i}", "name": "x", "kind": "zone", "phase": f"http_phase_{i}",
                                          "rules": []}
    cf.write_state(state)
    r = run(make_profile, cf)[CACHE_RULES]
    assert r.status is Status.OK, r.summary
    assert r.evidence["found_in"] == "zone rulesets"
    cf.set_cache_rule(cache_databases=True)
    assert run(make_profile, cf)[CACHE_RULES].status is Status.FAIL


def test_ruleset_list_pagination_follows_the_cursor():
    from studiodoctor.lab.standins.cloudflare_api import default_state, handle

    state = default_state("localtest", HOSTS, "t")
    zone = state["zones"][0]
    for i in range(60):
        zone["rulesets"][f"p{i}"] = {"id": f"x{i}", "name": "x", "kind": "zone", "phase": f"p{i}", "rules": []}
    code, first = handle(state, "GET", f"/client/v4/zones/{zone['id']}/rulesets", {}, "Bearer t")
    assert code == 200 and len(first["result"]) == 50 and first["result_info"]["cursor"] == "50"
    assert "rules" not in first["result"][0]


def test_empty_entrypoint_ruleset_is_no_rules(cf, make_profile):
    state = cf.read_state()
    state["zones"][0]["rulesets"]["http_request_cache_settings"]["rules"] = []
    cf.write_state(state)
    r = run(make_profile, cf)[CACHE_RULES]
    assert r.status is Status.WARN and "no cache rules" in r.summary


def test_an_answer_that_is_not_a_ruleset_is_an_error_naming_it(make_profile):
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Odd(BaseHTTPRequestHandler):
        def do_GET(self):
            if "/zones?" in self.path or self.path.endswith("/zones"):
                body = {"success": True, "errors": [], "messages": [], "result": [
                    {"id": "z1", "name": "localtest", "status": "active", "paused": False, "name_servers": []}],
                    "result_info": {"page": 1, "per_page": 20, "count": 1, "total_count": 1}}
            else:
                body = {"success": True, "errors": [], "messages": [], "result": "rules live elsewhere"}
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Odd)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        profile = make_profile({"cloudflare": {"api_url": f"http://127.0.0.1:{server.server_port}/client/v4",
                                               "api_token": "t", "zone": "localtest"},
                                "dns": {"hostnames": HOSTS}}, timeout=5)
        res = {r.id: r for r in engine.check(profile, check_ids=[ZONE, CACHE_RULES]).results}
    finally:
        server.shutdown()
        server.server_close()
    r = res[CACHE_RULES]
    assert r.status is Status.ERROR and r.reason == Reason.UNEXPECTED.value, r.summary
    assert "crashed" not in r.summary and "`result` is str" in r.summary
