"""Answers through CloudFlare: edge.proxied (CloudFlare's headers), edge.error_pages (no CloudFlare 52x or
origin error page)."""

from __future__ import annotations

from studiodoctor.model import Command, fail, ok
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import (CF_CODES, CF_PAGE_MARKERS, ERROR_PAGES, ORIGIN_LAYERS, PROXIED, _curl_i, _fetch, _host,
                     _urls)


@check(PROXIED, title="Responses come through CloudFlare", needs=("public_urls",),
       explained_by=("cloudflare.dns_records", "cloudflare.zone", "dns.cloudflare_ranges"),
       produces=("dns", "ssl", "caching", "headers"))
def check_proxied(ctx):
    """Responses at each public URL carry `cf-ray` and `server: cloudflare`.

    Without them the request did not go through CloudFlare: the record is DNS-only or the zone is
    paused, so there is no edge cache, no DDoS protection, and the origin's address is public.
    Fix: proxy the DNS record (orange cloud); see cloudflare.dns_records."""
    rows, bad = {}, []
    for url in _urls(ctx):
        resp, problem = _fetch(ctx, url)
        if problem:
            return problem
        server, ray = resp.headers.get("server", ""), resp.headers.get("cf-ray")
        rows[url] = {"status": resp.status_code, "server": server, "cf-ray": ray}
        if server.lower() != "cloudflare" or not ray:
            bad.append(url)
    evidence = {"responses": rows}
    if bad:
        r = rows[bad[0]]
        return fail(f"{bad[0]} is not served through CloudFlare: server: {r['server'] or '(none)'}, "
                    f"cf-ray {'present' if r['cf-ray'] else 'missing'}", evidence=evidence,
                    commands=[_curl_i(u) for u in bad],
                    hint="Turn on the proxy (orange cloud) for the hostname's DNS record and check the zone is not "
                         "paused.")
    return ok(f"{len(rows)} URL(s) served by CloudFlare (cf-ray {next(iter(rows.values()))['cf-ray']})",
              evidence=evidence)


def _is_cf_page(resp) -> bool:
    body = resp.text[:20000].lower() if resp.content else ""
    return any(m in body for m in CF_PAGE_MARKERS)


@check(ERROR_PAGES, title="No CloudFlare or origin error page at the public URLs",
       needs=("public_urls",), explained_by=ORIGIN_LAYERS, smoke=True)
def check_error_pages(ctx):
    """Each public URL answers without a 5xx; CloudFlare's own error pages (520-527, 530) are told
    apart from the origin's (a 502/504 page from nginx or Traefik passed through), and explained.

    521 origin refused the connection (ingress down), 522 connect timeout, 524 the origin took more than
    CloudFlare's fixed 100 s, 525/526 the origin's TLS (handshake, certificate). Those are consequences:
    the cause is in the traefik, kubernetes, nginx or app layers, which `diagnose 502` walks next."""
    rows, found = {}, []
    for url in _urls(ctx):
        resp, problem = _fetch(ctx, url)
        if problem:
            problem.hint = (problem.hint or "") + " A request CloudFlare holds for 100 s ends in a 524."
            return problem
        code = resp.status_code
        cf_page = _is_cf_page(resp) if code >= 500 else False
        rows[url] = {"status": code, "server": resp.headers.get("server"), "cf-ray": resp.headers.get("cf-ray"),
                     "cloudflare_page": cf_page}
        if code in CF_CODES:
            who = "CloudFlare's error page" if cf_page else "a page that is not CloudFlare's (the origin sent it)"
            found.append((url, f"{url} answers {code} ({who}): {CF_CODES[code]}"))
        elif code >= 500:
            who = "CloudFlare's page" if cf_page else \
                f"the origin's page ({resp.headers.get('server') or 'unknown server'}), passed through CloudFlare"
            found.append((url, f"{url} answers {code}, {who}"))
    evidence = {"responses": rows}
    if found:
        url, summary = found[0]
        entry = ctx.section("traefik").get("entrypoint")
        commands = [_curl_i(url), Command(f"curl -s https://{_host(url)}/cdn-cgi/trace",
                                          note="which CloudFlare colo answers")]
        if entry:
            commands.append(Command(f"curl -skI -H 'Host: {_host(url)}' {entry.rstrip('/')}/",
                                    note="the origin directly, bypassing CloudFlare"))
        return fail(summary, evidence=evidence, commands=commands,
                    hint="CloudFlare only reports the origin's failure: walk the origin (traefik, kubernetes, "
                         "nginx, app): `studiodoctor diagnose 502`.")
    return ok(f"no error page at {len(rows)} URL(s) ({', '.join(str(r['status']) for r in rows.values())})",
              evidence=evidence)
