"""The CloudFlare layer reads the v4 API as plain JSON (the SDK's client and typed resources cost
~0.45 CPU-s a run). This keeps that honest: the official ``cloudflare`` SDK, driven against the same
stand-in, parses every answer the layer reads into its typed models, and what it parses is what the
layer reports. A stand-in answer the real client would reject fails here."""

from __future__ import annotations

import pytest

from checks.cloudflare import CACHE_RULES, DNS_RECORDS, SSL_MODE, ZONE
from studiodoctor import engine
from studiodoctor.lab.standins.cloudflare_api import CloudflareAPI
from studiodoctor.model import Status

cloudflare = pytest.importorskip("cloudflare", reason="the cloudflare SDK is a test dependency")

HOSTS = ["studio.localtest", "hotfixes.studio.localtest"]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    server = CloudflareAPI(tmp_path_factory.mktemp("cf-sdk"), zone="localtest", hostnames=HOSTS).start()
    yield server
    server.stop()


def _sdk(api, token=None):
    return cloudflare.Cloudflare(api_token=token or api.token, base_url=api.api_url, max_retries=0, timeout=5)


def test_the_sdk_parses_what_the_layer_reads_and_agrees_with_it(api, make_profile):
    sdk = _sdk(api)
    assert sdk.user.tokens.verify().status == "active"
    (zone,) = list(sdk.zones.list(name="localtest"))
    ssl = sdk.zones.settings.get(setting_id="ssl", zone_id=zone.id)
    records = {r.name: r for r in sdk.dns.records.list(zone_id=zone.id)}
    entry = sdk.rulesets.phases.get(ruleset_phase="http_request_cache_settings", zone_id=zone.id)
    assert [r.phase for r in sdk.rulesets.list(zone_id=zone.id)] == ["http_request_cache_settings"]

    report = engine.check(make_profile({"cloudflare": api.profile()["cloudflare"], "dns": {"hostnames": HOSTS}},
                                       timeout=5), check_ids=[ZONE, SSL_MODE, DNS_RECORDS, CACHE_RULES])
    res = {r.id: r for r in report.results}
    assert all(r.status is Status.OK for r in res.values()), {i: r.summary for i, r in res.items()}
    assert res[ZONE].evidence["name_servers"] == zone.name_servers
    assert res[ZONE].evidence["id"] == zone.id and res[ZONE].evidence["status"] == zone.status
    assert res[SSL_MODE].evidence["value"] == ssl.value
    assert set(HOSTS) <= set(records) and all(records[h].proxied for h in HOSTS)
    databases_rule = next(r for r in entry.rules if "/content/databases/" in r.expression)
    assert databases_rule.action_parameters.cache is False and "never cache channel databases" in \
        res[CACHE_RULES].summary


def test_a_rejected_token_is_the_sdks_authentication_error(api):
    with pytest.raises(cloudflare.AuthenticationError):
        list(_sdk(api, token="not-the-token").zones.list())
