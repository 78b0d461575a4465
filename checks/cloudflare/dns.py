"""cloudflare.dns_records: a proxied DNS record for each hostname."""

from __future__ import annotations

from studiodoctor.model import fail, ok
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import DNS_RECORDS, NEEDS, ZONE, _Fields, _curl, _guard, _raw, _unexpected, _zone_id


MAX_PAGES = 100
# Records per page (`cloudflare.per_page`): the API's maximum for DNS records is 5,000, so a zone of a few
# thousand records is one request, not one per hundred (each a round trip to the API).
PER_PAGE = 5000


def _dns_records(ctx, zone_id: str) -> list:
    """Every DNS record of the zone, page by page; a page shorter than ``per_page`` (or empty) is the last."""
    path, per_page, records = f"/zones/{zone_id}/dns_records", int(ctx.setting("per_page", PER_PAGE)), []
    for page in range(1, MAX_PAGES + 1):
        result = _raw(ctx, "DNS records", "DNS:Read", path, {"per_page": per_page, "page": page})["result"]
        if not isinstance(result, list):
            raise _unexpected(ctx, "DNS records", path, f"`result` is {type(result).__name__}, expected a list")
        records.extend(map(_Fields.of, result))
        if len(result) < per_page:
            break
    return records


@check(DNS_RECORDS, title="A proxied DNS record for each hostname", needs=NEEDS + ("dns.hostnames",),
       depends_on=(ZONE,), permissions=("DNS:Read",))
@_guard
def check_dns_records(ctx):
    """Each of `dns.hostnames` has an A/AAAA/CNAME record in the zone, proxied (orange cloud) for each
    of `dns.proxied_hostnames` (default: all of them).

    A missing record is NXDOMAIN for users (postmortem 002: the move to CloudFlare missed wildcard
    subdomains); a DNS-only record bypasses CloudFlare: no edge certificate, no cache, no DDoS
    protection, and the origin IP is public. Fix: DNS, Records: add the record / turn the proxy on."""
    zone_id = _zone_id(ctx)
    dns_cfg = ctx.section("dns")
    hostnames = [h.rstrip(".").lower() for h in dns_cfg.get("hostnames") or []]
    proxied_wanted = {h.rstrip(".").lower() for h in (dns_cfg.get("proxied_hostnames") or hostnames)}
    records = _dns_records(ctx, zone_id)
    by_name: dict[str, list] = {}
    for rec in records:
        if rec.type in ("A", "AAAA", "CNAME"):
            by_name.setdefault(rec.name.lower().rstrip("."), []).append(rec)
    missing, unproxied, seen = [], [], {}
    for host in hostnames:
        recs = by_name.get(host)
        via = host
        if not recs and "." in host:
            via = "*." + host.split(".", 1)[1]
            recs = by_name.get(via)
        if not recs:
            missing.append(host)
            continue
        seen[host] = [{"name": r.name, "type": r.type, "content": r.content, "proxied": r.proxied} for r in recs]
        if host in proxied_wanted and not all(r.proxied for r in recs):
            unproxied.append((host, [r for r in recs if not r.proxied]))
    evidence = {"zone_id": zone_id, "records_listed": len(records), "records": seen, "missing": missing,
                "not_proxied": [h for h, _ in unproxied]}
    commands = [_curl(ctx, f"/zones/{zone_id}/dns_records?name={h}") for h in missing + [h for h, _ in unproxied]]
    if missing:
        return fail(f"no DNS record for {', '.join(missing)} in zone {ctx.section('cloudflare')['zone']}",
                    evidence=evidence, commands=commands,
                    hint="Add the record (A/CNAME to the origin, proxied) in CloudFlare DNS.")
    if unproxied:
        host, recs = unproxied[0]
        return fail(f"{host} is DNS-only (not proxied): {recs[0].type} {recs[0].content} is exposed and "
                    f"CloudFlare's edge is bypassed", evidence=evidence, commands=commands,
                    hint="Turn the proxy status on (orange cloud) for the record in CloudFlare DNS.")
    return ok(f"{len(hostnames)} hostname(s) have proxied records ({len(records)} records in the zone)",
              evidence=evidence)
