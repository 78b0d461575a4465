"""HTTPS at the edge: edge.https_redirect (HTTP redirects to HTTPS, without loops), edge.certificate (valid,
matching, not expiring)."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from studiodoctor.probes import http as httpprobe
from studiodoctor.model import Command, Reason, error, fail, ok, skip, warn
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import CERTIFICATE, HTTPS_REDIRECT, _fetch, _host, _setting, _urls


# ------------------------------------------------------------------------------------------------ checks
@check(HTTPS_REDIRECT, title="HTTP redirects to HTTPS, without loops", needs=("public_urls",),
       explained_by=("cloudflare.ssl_mode", "cloudflare.always_use_https"), smoke=True, produces=("ssl",))
def check_https_redirect(ctx):
    """`http://HOST/` answers with a redirect to `https://HOST/`, and following redirects from both
    the HTTP and the HTTPS URL ends on a page within `cloudflare.max_redirects` hops (default 10).

    Without the redirect users and Kolibri devices talk to Studio in clear text. A redirect loop is the
    classic Flexible-SSL failure (postmortem 004): CloudFlare fetches the origin over HTTP, the origin
    redirects to HTTPS, the browser comes back to CloudFlare, forever (ERR_TOO_MANY_REDIRECTS).
    Fix: Always Use HTTPS on; SSL mode Full (strict); no origin redirect that fights the edge."""
    max_hops = int(_setting(ctx, "max_redirects", 10))
    findings, chains = [], {}
    starts = []
    for url in _urls(ctx):
        parts = urlsplit(url)
        starts += [(f"http://{parts.hostname}{parts.path or '/'}", True), (url, False)]
    # the chains are followed at the same time (each hop on the run's pooled connections); a URL both
    # reach (http:// redirects to the https:// start) is asked once, the other chain waits for its answer
    fetch = _once(lambda url: _fetch(ctx, url))
    followed = _concurrently([lambda start=start: _follow(fetch, start, max_hops) for start, _ in starts])
    for (start, plain_start), (hops, loop, problem) in zip(starts, followed):
        if problem:
            return problem
        chains[start] = hops
        if loop:
            findings.append(("loop", start, loop))
            continue
        last = hops[-1]
        if plain_start:
            if len(hops) == 1:
                findings.append(("plain", start, f"{start} is served over plain HTTP (status {last['status']}), "
                                                 f"not redirected to HTTPS"))
            elif not str(last["url"]).startswith("https://"):
                findings.append(("plain", start, f"redirects from {start} end on plain HTTP at {last['url']}"))
    evidence = {"chains": chains, "max_redirects": max_hops}
    if findings:
        kind, start, summary = next((f for f in findings if f[0] == "loop"), findings[0])
        hint = ("A loop between CloudFlare and the origin: check cloudflare.ssl_mode (Flexible + an origin that "
                "redirects to HTTPS loops, postmortem 004) and any redirect rule." if kind == "loop" else
                "Turn Always Use HTTPS on in CloudFlare (SSL/TLS, Edge Certificates) or add a redirect rule.")
        return fail(summary, evidence=evidence, hint=hint,
                    commands=[Command(f"curl -sSIL --max-redirs {max_hops} {start}")])
    return ok(f"plain HTTP redirects to HTTPS for {len(_urls(ctx))} URL(s), no loop", evidence=evidence)


def _follow(fetch, start: str, max_hops: int):
    """(hops, loop summary or "", failing Result or None) of the redirects from ``start``; ``fetch(url)``
    gives (response, None) or (None, failing Result)."""
    hops, seen, current = [], set(), start
    while True:
        resp, problem = fetch(current)
        if problem:
            return hops, "", problem
        location = resp.headers.get("location")
        hops.append({"url": current, "status": resp.status_code, "location": location})
        if resp.status_code not in (301, 302, 303, 307, 308) or not location:
            return hops, "", None
        seen.add(current)
        current = urljoin(current, location)
        if current in seen or len(hops) >= max_hops:
            hops.append({"url": current, "status": "loop" if current in seen else "too many"})
            return hops, (f"redirect loop from {start}: "
                          f"{' -> '.join(str(h['status']) for h in hops[:6])} back to {current}"), None


def _once(fetch):
    """``fetch`` asked at most once per URL: a second caller of the same URL waits for the first's answer."""
    import threading

    answers: dict = {}
    lock = threading.Lock()

    def fetch_once(url: str):
        with lock:
            slot = answers.setdefault(url, [threading.Lock(), None])
        with slot[0]:
            if slot[1] is None:
                slot[1] = fetch(url)
            return slot[1]

    return fetch_once


def _concurrently(calls: list) -> list:
    """The results of ``calls``, run at the same time (each in its own thread), in order."""
    from concurrent.futures import ThreadPoolExecutor

    if len(calls) < 2:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="edge-redirects") as pool:
        return [f.result() for f in [pool.submit(call) for call in calls]]


@check(CERTIFICATE, title="Edge certificate valid, matching and not expiring",
       needs=("public_urls",), explained_by=("cloudflare.dns_records", "cloudflare.zone"), smoke=True,
       metrics=("certificates.*.days_left;warn_days:;fail_days:;0",), produces=("ssl",))
def check_certificate(ctx):
    """The certificate served for each public hostname covers the name (SAN), chains to a trusted root
    (`http.ca_file` adds a CA) and has more than `cloudflare.cert_warn_days` (14) days left; below
    `cloudflare.cert_fail_days` (3) or expired it fails.

    CloudFlare's Universal SSL renews itself, but it covers only the apex and first-level subdomains
    (`*.learningequality.org`, not `hotfixes.studio.learningequality.org`); a host that is not proxied
    shows the origin's Let's Encrypt or Traefik default certificate instead (postmortem 004: an expired
    Let's Encrypt certificate nobody was alerted about). Fix: an Advanced/Total TLS certificate for deep
    names; for the origin's certificate see the traefik layer."""
    from studiodoctor.probes.tls import handshake_problem, inspect_certificate

    warn_days = float(_setting(ctx, "cert_warn_days", 14))
    fail_days = float(_setting(ctx, "cert_fail_days", 3))
    ca_file = ctx.section("http").get("ca_file") or ""
    mapping = ctx.section("http").get("resolve") or {}
    problems, infos = [], {}
    for url in _urls(ctx):
        _, host, port = httpprobe.split_target(url)
        if urlsplit(url).scheme != "https":
            continue
        target = mapping.get(f"{host}:{port}") or f"{host}:{port}"
        addr, _, tport = target.rpartition(":")
        try:
            info = inspect_certificate(addr, int(tport), host, timeout=ctx.timeout(10, margin=0.5) / 2, ca_file=ca_file,
                                       on_network=getattr(ctx, "add_network", None))
        except (OSError, ValueError) as exc:
            return handshake_problem(exc, "edge TLS", target, host)
        ev = info.evidence()
        infos[host] = ev
        days = info.days_left
        if days < 0:
            problems.append(("fail", f"the edge certificate for {host} expired {-days:.0f} day(s) ago "
                                     f"({info.not_after:%Y-%m-%d})"))
        elif not info.names_match:
            extra = " (Traefik's default certificate: the host is not routed)" if info.is_traefik_default else ""
            problems.append(("fail", f"the edge certificate for {host} does not cover it: SAN "
                                     f"{', '.join(info.sans) or 'none'}{extra}"))
        elif info.verify_error:
            problems.append(("fail", f"the edge certificate for {host} does not verify: {info.verify_error}"))
        elif info.verify_unknown:
            problems.append(("error", f"could not verify the edge certificate for {host}: {info.verify_unknown}"))
        elif days < fail_days:
            problems.append(("fail", f"the edge certificate for {host} expires in {days:.1f} day(s)"))
        elif days < warn_days:
            problems.append(("warn", f"the edge certificate for {host} expires in {days:.0f} day(s) "
                                     f"({info.not_after:%Y-%m-%d})"))
    evidence = {"certificates": infos, "warn_days": warn_days, "fail_days": fail_days}
    hosts = list(infos) or [_host(u) for u in _urls(ctx)]
    commands = [Command(f"openssl s_client -connect {h}:443 -servername {h} </dev/null 2>/dev/null | "
                        f"openssl x509 -noout -subject -issuer -dates -ext subjectAltName") for h in hosts]
    if not infos:
        return skip("no https:// URL in public_urls", reason=Reason.NOT_APPLICABLE)
    hint = ("Check the certificate in CloudFlare (SSL/TLS, Edge Certificates): Universal SSL covers only the apex and "
            "first-level subdomains; a host that is not proxied serves the origin's certificate (traefik layer).")
    for level in ("fail", "error", "warn"):
        found = [p for lvl, p in problems if lvl == level]
        if found:
            build = {"fail": fail, "error": error, "warn": warn}[level]
            return build(found[0] + (f" (+{len(found) - 1} more)" if len(found) > 1 else ""), evidence=evidence,
                         hint=hint, commands=commands)
    least = min(infos.values(), key=lambda e: e["days_left"])
    return ok(f"{len(infos)} edge certificate(s) valid, {least['days_left']:.0f} days left at least "
              f"(issuer {least['issuer']})", evidence=evidence)
