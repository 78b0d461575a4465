"""The edge cache: edge.cache_status (static assets and storage objects cached), edge.databases_not_cached
(channel databases never from the cache)."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

from studiodoctor import studio_facts as facts
from studiodoctor.model import Command, Reason, error, fail, ok, warn
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import (CACHE_STATUS, CACHED, DATABASES_NOT_CACHED, NOT_FROM_CACHE, PROXIED, SERVED_FROM_CACHE,
                     _fetch, _host, _setting, _urls)


def _sample_urls(ctx, key: str) -> list[str]:
    path = _setting(ctx, key, "")
    if not path:
        return []
    return [_site(u) + (path if path.startswith("/") else "/" + path) for u in _urls(ctx)[:1]]


def _site(url: str) -> str:
    return url.split("://", 1)[0] + "://" + urlsplit(url).netloc


# Studio's public API lists the public channels; each id names /content/databases/<id>.sqlite3 (facts §5)
PUBLIC_CHANNELS = facts.PUBLIC_CHANNELS_PATH
_STATIC_REF = re.compile(r"""(?:src|href)\s*=\s*["']([^"'#?]+)""", re.IGNORECASE)


def _discover(ctx, kind: str) -> tuple[str, str, list[str]]:
    """(url, where it came from, what was tried) of a sample found on the live site, cached per run:
    "static": an asset under /static/ that the public page references; "databases": the database of a
    channel any source of the run names (``studiodoctor.discovery.channel_databases``)."""

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
        from studiodoctor.discovery import channel_databases

        found = channel_databases.channel_ids(ctx, [site])
        tried += found.tried
        if not found.ids:
            return "", "", tried
        return site + channel_databases.database_path(found.ids[0]), f"a channel of {found.source}", tried

    return ctx.shared.get(f"edge:sample:{kind}", find)


@check(CACHE_STATUS, title="Static assets and storage objects go through the edge cache",
       needs=("public_urls",), explained_by=(PROXIED, "cloudflare.cache_rules"),
       produces=("caching", "slow", "static"))
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


@check(DATABASES_NOT_CACHED, title="Channel databases never served from the edge cache",
       needs=("public_urls",), explained_by=("cloudflare.cache_rules",), produces=("caching",))
def check_databases_not_cached(ctx):
    """A channel database (`cloudflare.databases_sample`, e.g. `/content/databases/<channel_id>.sqlite3`;
    else a channel's from any source the run has: Studio's public API `/api/public/v1/channels` at the edge,
    the bucket's listing, Studio's tables) is never a HIT in CloudFlare's cache, asked twice (one byte each,
    `Range: bytes=0-0`).

    Databases are rewritten on every publish under the same URL; a cached copy gives Kolibri a stale
    channel (the reason nginx marks them `Cache-Control: private`). HIT (or STALE/UPDATING: an expired
    copy served from the cache) fails; MISS twice warns (eligible for cache: only the origin's headers keep
    it out); BYPASS or DYNAMIC is ok; a status it cannot read (missing on one answer, unknown) is an error.
    Fix: a cache rule for `/content/databases/` with Bypass cache; purge the URL."""
    configured = _sample_urls(ctx, "databases_sample")
    url, source, tried = (configured[0], "cloudflare.databases_sample", []) if configured else _discover(ctx, "databases")
    if not url:
        return error(f"could not find a channel database to ask about: no source named one ({'; '.join(tried)})"
                     "; set cloudflare.databases_sample"[:300], reason=Reason.NOT_CONFIGURED, evidence={"tried": tried})
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
