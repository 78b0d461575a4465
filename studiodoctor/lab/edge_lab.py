"""The edge part of the lab in one place: the DNS server, the CloudFlare API stand-in and the edge proxy
agree on hostnames and addresses, and each named fault flips every stand-in it concerns (a missing
record is missing from CloudFlare's API *and* from DNS), so `lab break NAME` is one call.

Addresses: the edge answers on 127.0.0.1 (declared an extra edge range, so `dns.cloudflare_ranges`
counts it as CloudFlare); a DNS-only ("grey cloud") record points at ORIGIN_IP, outside that range.
"""

from __future__ import annotations

EDGE_IP = "127.0.0.1"
ORIGIN_IP = "127.0.0.2"

# fault name -> what it does (shown by `lab break --help`)
FAULTS = {
    "edge-cert-expired": "the edge serves an expired certificate",
    "edge-cert-wrong-san": "the edge serves a certificate for another name",
    "ssl-flexible": "SSL mode Flexible in CloudFlare, and the edge loops like postmortem 004",
    "http-not-redirected": "Always Use HTTPS off: plain HTTP is served",
    "redirect-loop": "the edge redirects HTTPS to itself",
    "record-unproxied": "the hostname's record is DNS-only: resolves to the origin, no CloudFlare headers",
    "record-missing": "the hostname's record is deleted from the zone (NXDOMAIN)",
    "databases-hit": "a cache rule caches /content/databases/ and the edge serves it as HIT",
    "edge-522": "the edge answers CloudFlare's 522 page (origin connect timeout)",
    "edge-524": "the edge answers CloudFlare's 524 page (origin took > 100 s)",
    "dns-servfail": "the resolver answers SERVFAIL for the hostname",
    "dns-timeout": "the resolver drops queries for the hostname",
    "cloudflare-403": "the API token lacks Zone Settings:Read (403 on settings)",
}


def records_for(hostnames: list[str], zone: str) -> list[dict]:
    recs = [{"name": h, "type": "A", "value": EDGE_IP} for h in hostnames]
    recs += [{"name": zone, "type": "NS", "value": ns} for ns in ("ada.ns.cloudflare.com", "bob.ns.cloudflare.com")]
    return recs


def profile(dns, cf, edge, *, static_path: str = "", storage_path: str = "", databases_sample: str = "") -> dict:
    """The profile sections for the edge layers (merge into the lab profile)."""
    out = edge.profile()
    out["dns"] = {**dns.profile()["dns"], "hostnames": list(edge.hostnames), "extra_edge_ranges": [f"{EDGE_IP}/32"]}
    out["cloudflare"] = {**cf.profile()["cloudflare"], "static_path": static_path, "storage_path": storage_path,
                         "databases_sample": databases_sample}
    return out


def apply(name: str, on: bool = True, *, dns, cf, edge, hostname: str | None = None) -> None:
    """Apply (on=True) or revert (on=False) a named fault across the stand-ins."""
    if name not in FAULTS:
        raise ValueError(f"unknown edge fault {name!r} (known: {', '.join(FAULTS)})")
    host = hostname or edge.hostnames[0]
    if name == "edge-cert-expired":
        edge.set_fault("expired_cert", on)
    elif name == "edge-cert-wrong-san":
        edge.set_fault("wrong_san", on)
    elif name == "ssl-flexible":
        cf.set_setting("ssl", "flexible" if on else "full")
        edge.set_fault("redirect_loop", on)
    elif name == "http-not-redirected":
        cf.set_setting("always_use_https", "off" if on else "on")
        edge.set_fault("no_redirect", on)
    elif name == "redirect-loop":
        edge.set_fault("redirect_loop", on)
    elif name == "record-unproxied":
        ip = ORIGIN_IP if on else EDGE_IP
        cf.set_record(host, proxied=not on, content=ip)
        dns.remove_record(host, "A")
        dns.add_record(host, "A", ip)
        edge.set_fault("unproxied", on)
    elif name == "record-missing":
        if on:
            cf.delete_record(host)
            dns.remove_record(host)
        else:
            cf.add_record(host, "A", EDGE_IP, proxied=True)
            dns.add_record(host, "A", EDGE_IP)
    elif name == "databases-hit":
        cf.set_cache_rule(cache_databases=on)
        edge.set_fault("databases_hit", on)
    elif name in ("edge-522", "edge-524"):
        edge.set_fault("error_" + name[-3:], on)
    elif name in ("dns-servfail", "dns-timeout"):
        dns.set_fault(host, name.split("-")[1] if on else None)
    elif name == "cloudflare-403":
        cf.set_deny(["settings"] if on else [])
