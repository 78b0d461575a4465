"""Layer `cloudflare` (edge behaviour, ids `edge.*`): what users get at the public URLs: the HTTPS
redirect, the edge certificate, CloudFlare's headers, its 52x error pages and its cache status.
Every request goes through `httpprobe` (a fresh client per request, so one client per SNI name)."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import checks.cloudflare_zone  # noqa: F401  (API checks register first: they come first in a walk)
from studiodoctor import httpprobe
from studiodoctor.model import Command, Reason, error, fail, ok, skip, unreachable, warn
from studiodoctor.registry import check

# imported by the runner before any check starts (see studiodoctor.runner.preload)
SDK_IMPORTS = ("httpx", "cryptography.x509")

HTTPS_REDIRECT = "edge.https_redirect"
CERTIFICATE = "edge.certificate"
PROXIED = "edge.proxied"
ERROR_PAGES = "edge.error_pages"
CACHE_STATUS = "edge.cache_status"
DATABASES_NOT_CACHED = "edge.databases_not_cached"

ORIGIN_LAYERS = ("traefik", "kubernetes", "nginx", "app")

# CloudFlare's own status codes: what each means for Studio's origin
CF_CODES = {
    520: "the origin sent an empty, unknown or malformed response (a crashed or reset connection, "
         "oversized headers)",
    521: "the origin refused the connection: the ingress (Traefik/nginx) is down or drops CloudFlare's IPs",
    522: "CloudFlare's connection to the origin timed out: the load balancer, node or ingress is not answering",
    523: "the origin is unreachable: the DNS record points at an address CloudFlare cannot route to",
    524: "the origin accepted the connection but sent no response within 100 s: a slow Django view, "
         "busy gunicorn workers or database locks (nginx's proxy_read_timeout must be >= 100 s)",
    525: "the TLS handshake between CloudFlare and the origin failed (origin TLS setup, SNI, no certificate)",
    526: "the origin's certificate is invalid (expired, wrong name) and SSL mode is Full (strict)",
    527: "a Railgun connection error between CloudFlare and the origin",
    530: "CloudFlare could not resolve or reach the origin (shown with a 1xxx error, e.g. 1016 origin DNS error)",
}
CF_PAGE_MARKERS = ("cf-error-details", "cf-wrapper", "cloudflare ray id", "cdn-cgi/", "performance & security by cloudflare",
                   "performance &amp; security by cloudflare")
CACHED = {"HIT", "MISS", "EXPIRED", "REVALIDATED", "UPDATING", "STALE"}
# cf-cache-status values that mean the answer came out of CloudFlare's cache (STALE/UPDATING: an expired copy)
SERVED_FROM_CACHE = {"HIT", "STALE", "UPDATING"}
# ... and those that mean it was not eligible for the cache at all
NOT_FROM_CACHE = {"BYPASS", "DYNAMIC"}


def _urls(ctx) -> list[str]:
    return [u for u in ctx.profile.value("public_urls") or [] if u]


def _host(url: str) -> str:
    return urlsplit(url).hostname or ""


def _fetch(ctx, url: str, *, method: str = "GET", headers: dict | None = None, verify: bool = False):
    """(response, None) or (None, failing Result) for a network error."""
    try:
        return httpprobe.request(ctx, method, url, headers=headers, verify=verify,
                                 timeout=float(ctx.setting("request_timeout", 15.0))), None
    except Exception as exc:  # httpx raises many types; describe_error classifies them
        timed_out, text = httpprobe.describe_error(exc)
        target, _, _ = httpprobe.resolved(ctx, url)
        return None, unreachable("edge", url + (f" (via {urlsplit(target).netloc})" if target != url else ""),
                                 text, timed_out=timed_out,
                                 commands=[Command(f"curl -sSI {url}")])


def _curl_i(url: str) -> Command:
    return Command(f"curl -sSI {url}")


# ------------------------------------------------------------------------------------------------ checks
@check(HTTPS_REDIRECT, title="HTTP redirects to HTTPS, without loops", layer="cloudflare", needs=("public_urls",),
       explained_by=("cloudflare.ssl_mode", "cloudflare.always_use_https"), smoke=True)
def check_https_redirect(ctx):
    """`http://HOST/` answers with a redirect to `https://HOST/`, and following redirects from both
    the HTTP and the HTTPS URL ends on a page within `cloudflare.max_redirects` hops (default 10).

    Without the redirect users and Kolibri devices talk to Studio in clear text. A redirect loop is the
    classic Flexible-SSL failure (postmortem 004): CloudFlare fetches the origin over HTTP, the origin
    redirects to HTTPS, the browser comes back to CloudFlare, forever (ERR_TOO_MANY_REDIRECTS).
    Fix: Always Use HTTPS on; SSL mode Full (strict); no origin redirect that fights the edge."""
    max_hops = int(ctx.setting("max_redirects", 10))
    findings, chains = [], {}
    for url in _urls(ctx):
        parts = urlsplit(url)
        start_http = f"http://{parts.hostname}{parts.path or '/'}"
        for start in (start_http, url):
            hops, seen, current = [], set(), start
            while True:
                resp, problem = _fetch(ctx, current)
                if problem:
                    return problem
                location = resp.headers.get("location")
                hops.append({"url": current, "status": resp.status_code, "location": location})
                if resp.status_code not in (301, 302, 303, 307, 308) or not location:
                    break
                seen.add(current)
                current = urljoin(current, location)
                if current in seen or len(hops) >= max_hops:
                    hops.append({"url": current, "status": "loop" if current in seen else "too many"})
                    findings.append(("loop", start, f"redirect loop from {start}: "
                                     f"{' -> '.join(str(h['status']) for h in hops[:6])} back to {current}"))
                    break
            chains[start] = hops
            if findings and findings[-1][1] == start:
                continue
            last = hops[-1]
            if start == start_http:
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


@check(CERTIFICATE, title="Edge certificate valid, matching and not expiring", layer="cloudflare",
       needs=("public_urls",), explained_by=("cloudflare.dns_records", "cloudflare.zone"), smoke=True,
       metrics=("certificates.*.days_left;warn_days:;fail_days:;0",))
def check_certificate(ctx):
    """The certificate served for each public hostname covers the name (SAN), chains to a trusted root
    (`http.ca_file` adds a CA) and has more than `cloudflare.cert_warn_days` (14) days left; below
    `cloudflare.cert_fail_days` (3) or expired it fails.

    CloudFlare's Universal SSL renews itself, but it covers only the apex and first-level subdomains
    (`*.learningequality.org`, not `hotfixes.studio.learningequality.org`); a host that is not proxied
    shows the origin's Let's Encrypt or Traefik default certificate instead (postmortem 004: an expired
    Let's Encrypt certificate nobody was alerted about). Fix: an Advanced/Total TLS certificate for deep
    names; for the origin's certificate see the traefik layer."""
    from studiodoctor.tlsprobe import handshake_problem, inspect_certificate

    warn_days = float(ctx.setting("cert_warn_days", 14))
    fail_days = float(ctx.setting("cert_fail_days", 3))
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
            info = inspect_certificate(addr, int(tport), host, timeout=ctx.timeout(10, margin=0.5) / 2, ca_file=ca_file)
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


@check(PROXIED, title="Responses come through CloudFlare", layer="cloudflare", needs=("public_urls",),
       explained_by=("cloudflare.dns_records", "cloudflare.zone", "dns.cloudflare_ranges"))
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


@check(ERROR_PAGES, title="No CloudFlare or origin error page at the public URLs", layer="cloudflare",
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


def _sample_urls(ctx, key: str) -> list[str]:
    path = ctx.setting(key, "")
    if not path:
        return []
    return [_site(u) + (path if path.startswith("/") else "/" + path) for u in _urls(ctx)[:1]]


def _site(url: str) -> str:
    return url.split("://", 1)[0] + "://" + urlsplit(url).netloc


# Studio's public API lists the public channels; each id names /content/databases/<id>.sqlite3 (facts §5)
PUBLIC_CHANNELS = "/api/public/v1/channels"
_STATIC_REF = re.compile(r"""(?:src|href)\s*=\s*["']([^"'#?]+)""", re.IGNORECASE)


def _discover(ctx, kind: str) -> tuple[str, str, list[str]]:
    """(url, where it came from, what was tried) of a sample found on the live site, cached per run:
    "static": an asset under /static/ that the public page references; "databases": the database of
    the first public channel Studio's public API lists."""

    def find():
        urls = _urls(ctx)
        if not urls:
            return "", "", []
        site, tried = _site(urls[0]), []
        if kind == "static":
            page = urls[0]
            for _ in range(3):  # the page, following same-site redirects (/ -> /en/accounts/)
                resp, problem = _fetch(ctx, page)
                tried.append(page)
                if problem or resp is None:
                    return "", "", tried
                location = resp.headers.get("location")
                if resp.status_code in (301, 302, 303, 307, 308) and location:
                    nxt = urljoin(page, location)
                    if _site(nxt) != site:
                        break
                    page = nxt
                    continue
                for ref in _STATIC_REF.findall(resp.text[:200000] if resp.content else ""):
                    target = urlsplit(urljoin(page, ref))
                    if target.netloc == urlsplit(site).netloc and target.path.startswith("/static/") \
                            and not target.path.endswith("/"):
                        return site + target.path, f"referenced by {page}", tried
                break
            return "", "", tried
        url = site + PUBLIC_CHANNELS
        resp, problem = _fetch(ctx, url, headers={"Accept": "application/json"})
        tried.append(url)
        if problem or resp is None or resp.status_code != 200:
            return "", "", tried
        try:
            data = resp.json()
        except ValueError:
            return "", "", tried
        items = data.get("results") if isinstance(data, dict) else data   # a plain list, or DRF's paginated page
        ids = [c.get("id") for c in items or [] if isinstance(c, dict) and re.fullmatch(r"[0-9a-f]{32}", str(c.get("id")))]
        if not ids:
            return "", "", tried
        return f"{site}/content/databases/{ids[0]}.sqlite3", f"first public channel of {url}", tried

    return ctx.shared.get(f"edge:sample:{kind}", find)


@check(CACHE_STATUS, title="Static assets and storage objects go through the edge cache", layer="cloudflare",
       needs=("public_urls",), explained_by=(PROXIED, "cloudflare.cache_rules"))
def check_cache_status(ctx):
    """A static asset (`cloudflare.static_path`, else one the public page references under /static/) and
    a storage object (`cloudflare.storage_path`, when set) carry `cf-cache-status` with a cache verdict
    (HIT, MISS, EXPIRED, REVALIDATED...), not DYNAMIC or BYPASS. No sample at all is an error.

    Studio relies on CloudFlare to cache `/static/` and every `/content/storage/` object (md5-named,
    immutable); DYNAMIC means every download goes to nginx and GCS. The request asks one byte
    (`Range: bytes=0-0`), so large objects cost nothing. Fix: a cache rule for `/content/storage/`
    ("Eligible for cache"); check the origin's Cache-Control (nginx layer)."""
    samples = [(kind, url, f"cloudflare.{key}") for kind, key in (("static", "static_path"), ("storage", "storage_path"))
               for url in _sample_urls(ctx, key)]
    tried = []
    if not any(kind == "static" for kind, _, _ in samples):
        url, source, tried = _discover(ctx, "static")
        if url:
            samples.insert(0, ("static", url, source))
    if not samples:
        return error("could not find a sample object to ask about: no asset under /static/ referenced by the "
                     "public page, and none configured (cloudflare.static_path, cloudflare.storage_path, e.g. "
                     "/static/js/main.js, /content/storage/a/b/<md5>.mp4)", reason=Reason.NOT_CONFIGURED,
                     evidence={"tried": tried})
    rows, warnings, errors = {}, [], []
    for kind, url, source in samples:
        resp, problem = _fetch(ctx, url, headers={"Range": "bytes=0-0"})
        if problem:
            return problem
        status = resp.headers.get("cf-cache-status")
        rows[kind] = {"url": url, "source": source, "status": resp.status_code, "cf-cache-status": status,
                      "cache-control": resp.headers.get("cache-control")}
        if resp.status_code >= 400:
            errors.append(f"{kind} sample {url} answered {resp.status_code}: cannot judge its caching")
        elif not status:
            warnings.append(f"{kind} object {url} has no cf-cache-status: not served through CloudFlare's cache")
        elif status.upper() not in CACHED:
            warnings.append(f"{kind} object {url} is not cached at the edge (cf-cache-status {status})")
    evidence = {"samples": rows}
    commands = [Command(f"curl -sSI {r['url']}") for r in rows.values()]
    if warnings:
        return warn(warnings[0] + (f" (+{len(warnings) - 1} more)" if len(warnings) > 1 else ""), evidence=evidence,
                    commands=commands, hint="Add a CloudFlare cache rule making /content/storage/ and /static/ "
                                            "eligible for cache, and check the origin's Cache-Control.")
    if errors:
        return error(errors[0], evidence=evidence, commands=commands,
                     hint="Point cloudflare.static_path / cloudflare.storage_path at objects that exist.")
    return ok("; ".join(f"{k}: {r['cf-cache-status']}" for k, r in rows.items()), evidence=evidence)


@check(DATABASES_NOT_CACHED, title="Channel databases never served from the edge cache", layer="cloudflare",
       needs=("public_urls",), explained_by=("cloudflare.cache_rules",))
def check_databases_not_cached(ctx):
    """A channel database (`cloudflare.databases_sample`, e.g. `/content/databases/<channel_id>.sqlite3`;
    else the first public channel's, from Studio's public API `/api/public/v1/channels`) is never a HIT in CloudFlare's cache, asked twice (one byte each, `Range: bytes=0-0`).

    Databases are rewritten on every publish under the same URL; a cached copy gives Kolibri a stale
    channel (the reason nginx marks them `Cache-Control: private`). HIT (or STALE/UPDATING: an expired
    copy served from the cache) fails; MISS twice warns (eligible for cache: only the origin's headers keep
    it out); BYPASS or DYNAMIC is ok; a status it cannot read (missing on one answer, unknown) is an error.
    Fix: a cache rule for `/content/databases/` with Bypass cache; purge the URL."""
    configured = _sample_urls(ctx, "databases_sample")
    url, source, tried = (configured[0], "cloudflare.databases_sample", []) if configured else _discover(ctx, "databases")
    if not url:
        return error(f"could not find a channel database to ask about: {PUBLIC_CHANNELS} listed no public channel "
                     "(or did not answer JSON); set cloudflare.databases_sample", reason=Reason.NOT_CONFIGURED,
                     evidence={"tried": tried})
    seen = []
    for _ in range(2):
        resp, problem = _fetch(ctx, url, headers={"Range": "bytes=0-0"})
        if problem:
            return problem
        seen.append({"status": resp.status_code, "cf-cache-status": resp.headers.get("cf-cache-status"),
                     "cache-control": resp.headers.get("cache-control"), "age": resp.headers.get("age")})
    evidence = {"url": url, "source": source, "responses": seen}
    statuses = [(s["cf-cache-status"] or "").upper() for s in seen]
    host = _host(url)
    commands = [Command(f"curl -sSI {url}")]
    if any(s["status"] >= 400 for s in seen):
        code = next(s["status"] for s in seen if s["status"] >= 400)
        return error(f"{url} answered {code}: cannot judge its caching", evidence=evidence, commands=commands,
                     hint="Point cloudflare.databases_sample at a database that exists.")
    served = [st for st in statuses if st in SERVED_FROM_CACHE]
    if served:
        return fail(f"{url} was served from CloudFlare's cache (cf-cache-status {served[0]}, age "
                    f"{next(s['age'] for s in seen if (s['cf-cache-status'] or '').upper() == served[0]) or '?'}): "
                    f"Kolibri can get a stale channel database", evidence=evidence, commands=commands,
                    hint=f"Add a cache rule bypassing /content/databases/ on {host} and purge the URL "
                         "(Caching, Configuration, Custom Purge).")
    if not any(statuses):
        return warn(f"{url} has no cf-cache-status: not served through CloudFlare's cache (see edge.proxied)",
                    evidence=evidence, commands=commands)
    if all(s in ("MISS", "EXPIRED", "REVALIDATED") for s in statuses):
        return warn(f"{url} is eligible for CloudFlare's cache (cf-cache-status {', '.join(statuses)}): only the "
                    f"origin's headers keep it from being stored", evidence=evidence, commands=commands,
                    hint="Add a cache rule bypassing the cache for /content/databases/.")
    if any(st not in NOT_FROM_CACHE | {"MISS", "EXPIRED", "REVALIDATED"} for st in statuses):
        return error(f"{url}: cannot tell whether it is cached at the edge (cf-cache-status "
                     f"{', '.join(st or '(none)' for st in statuses)})", evidence=evidence, commands=commands,
                     hint="Ask again by hand and read cf-cache-status; see cloudflare.cache_rules.")
    return ok(f"{url} not cached at the edge (cf-cache-status {', '.join(statuses)})", evidence=evidence)
