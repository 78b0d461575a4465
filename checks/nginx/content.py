"""nginx's /content/ (the bucket behind it): nginx.content_storage, nginx.content_databases,
nginx.content_methods, nginx.content_listing."""

from __future__ import annotations

import re

from studiodoctor import studio_facts as facts
from studiodoctor.model import Command, Reason, error, fail, ok, skip, warn
from studiodoctor.parsers.cachecontrol import max_age, parse_cache_control
from studiodoctor.discovery import reach
from studiodoctor.discovery.reach import PROXY_GRANT
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import (CACHE_STATUS_HEADERS, CONTENT_DATABASES, CONTENT_LISTING, CONTENT_METHODS,
                     CONTENT_STORAGE, DATABASE_CACHE_CONTROL, IMMUTABLE_MAX_AGE, REACHABLE,
                     STORAGE_CACHE_CONTROL, WRITE_METHODS, _base, _commands, _curl, database_path,
                     _no_answer, _request)

# what a Cache-Control finding can make users report (never an outage: a 502, a 500, a hang)
CACHE_POLICY = ("caching", "headers")


def _storage_sample(ctx):
    """The content object to probe: ``nginx.storage_path``, else the first object the gcs layer's
    credentials list under ``gcs.storage_prefix`` (``storage/x`` is served as ``/content/storage/x``).
    Returns the path, or the Result that says why there is none."""
    path = str(ctx.setting("storage_path", ""))
    if path:
        return path
    if not ctx.section("gcs").get("bucket"):
        return skip("no content object to probe: set nginx.storage_path (a /content/storage/<a>/<b>/<md5>.<ext> "
                    "path) or gcs.bucket to find one", reason=Reason.NOT_CONFIGURED,
                    hint="set nginx.storage_path, or configure the gcs layer so a real object can be listed")
    from studiodoctor.backends import gcs

    prefix = str(ctx.section("gcs").get("storage_prefix") or "storage/")
    where = f"gs://{ctx.section('gcs')['bucket']}/{prefix}"
    try:
        name = gcs.first_object(ctx, prefix)
    except Exception as exc:  # noqa: BLE001 - any SDK or transport error: we could not look
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        return error(f"could not list {where} to find a content object to probe: {first}",
                     reason=Reason.UNEXPECTED, hint="set nginx.storage_path to a known content file")
    if not name:
        return error(f"no object under {where} to probe, and nginx.storage_path is not set",
                     reason=Reason.UNEXPECTED, hint="set nginx.storage_path (or gcs.storage_prefix)")
    return "/content/" + name


@check(CONTENT_STORAGE, title="/content/storage/ is cached immutable",
       depends_on=(REACHABLE,), explained_by=("gcs",), permissions=("HTTP HEAD", PROXY_GRANT),
       produces=("caching", "headers", "content", "permissions", "slow"))
def check_content_storage(ctx):
    """A content file (``nginx.storage_path``, else one listed in the bucket) comes back 200 with the long-lived immutable Cache-Control.

    Storage URLs are md5-addressed, so nginx hides GCS's Cache-Control and Expires and adds
    ``public, max-age=31536000, immutable, no-transform`` (PR #5829) so that CloudFlare and browsers
    keep them. A 404 is the bucket's answer (missing object: see the ``gcs`` layer)."""
    return reach.run_each(ctx, "nginx", _content_storage)


def _content_storage(ctx):
    path = _storage_sample(ctx)
    if not isinstance(path, str):
        return path
    resp, seconds, exc = _request(ctx, "HEAD", path)
    if exc is not None:
        return _no_answer(ctx, path, exc, seconds)
    cc_raw = resp.headers.get("cache-control", "")
    cc = parse_cache_control(cc_raw)
    evidence = {"path": path, "status": resp.status_code, "cache_control": cc_raw,
                "expires": resp.headers.get("expires", ""), "content_type": resp.headers.get("content-type", ""),
                "expected_cache_control": STORAGE_CACHE_CONTROL}
    cmds = _commands(ctx, _curl(ctx, path))
    if resp.status_code in (403, 404):
        return fail(f"{path} answered {resp.status_code} from the bucket "
                    f"({'not public' if resp.status_code == 403 else 'no such object'})", evidence=evidence,
                    commands=cmds, hint="See the gcs layer: object present, bucket publicly readable.")
    if resp.status_code >= 500:
        return fail(f"{path} answered {resp.status_code}: nginx could not get the object from the bucket",
                    evidence=evidence, commands=cmds)
    if resp.status_code != 200:
        return fail(f"{path} answered {resp.status_code}", evidence=evidence, commands=cmds)
    missing = []
    if "public" not in cc:
        missing.append("public")
    if (max_age(cc) or 0) < IMMUTABLE_MAX_AGE:
        missing.append(f"max-age>={IMMUTABLE_MAX_AGE}")
    if "immutable" not in cc:
        missing.append("immutable")
    if missing:
        return fail(f"{path} comes back with Cache-Control {cc_raw or '(none)'!r}, lacking {', '.join(missing)}: "
                    f"nginx's _cache.conf is not applied to /content/storage/", evidence=evidence, commands=cmds,
                    produces=CACHE_POLICY + ("slow",),
                    hint="location ^~ /content/storage/ needs proxy_hide_header Cache-Control; proxy_hide_header "
                         f"Expires; add_header Cache-Control \"{STORAGE_CACHE_CONTROL}\".")
    if resp.headers.get("expires"):
        return warn(f"{path} also carries Expires {resp.headers['expires']!r} (nginx should hide it)",
                    evidence=evidence, commands=cmds)
    if not cc.get("no-transform"):
        return warn(f"{path} Cache-Control lacks no-transform", evidence=evidence, commands=cmds)
    return ok(f"{path}: 200, Cache-Control {cc_raw!r}", evidence=evidence)


@check(CONTENT_DATABASES, title="/content/databases/ stays private and uncached",
       depends_on=(REACHABLE,), explained_by=("gcs",), permissions=("HTTP HEAD", PROXY_GRANT),
       produces=("caching", "headers", "content", "permissions"))
def check_content_databases(ctx):
    """A channel database comes back ``private`` and never as a cache HIT (asked twice).

    Channel databases (``databases/<channel_id>.sqlite3``) are overwritten on every publish; Studio uploads
    them with ``private, max-age=5, no-transform`` and nginx must pass that through. A public
    Cache-Control or an nginx/CloudFlare cache HIT serves Kolibri stale channel versions (incident 2019,
    PR #1707). The object is ``nginx.database_path``, else a channel's database named by any source the
    run has: the public channel API through nginx, the bucket's listing (gcs credentials), Studio's tables
    (the postgres layer's session); its evidence says which."""
    return reach.run_each(ctx, "nginx", _content_databases)


def _content_databases(ctx):
    path, source, failed = database_path(ctx)
    if not path and failed:
        return error(f"could not find a channel database to probe: {source}", reason=Reason.UNEXPECTED,
                     hint="set nginx.database_path in the profile's config (no source could be asked: the app "
                          "behind nginx did not list the public channels, see nginx.app_proxy; the bucket's listing "
                          "needs the gcs layer's credentials)")
    if not path:
        return skip(source, reason=Reason.NOT_CONFIGURED, hint="set nginx.database_path in the profile's config")
    rows = []
    for _ in range(2):  # a cache in the way stores the first answer and HITs on the second
        resp, seconds, exc = _request(ctx, "HEAD", path)
        if exc is not None:
            return _no_answer(ctx, path, exc, seconds)
        rows.append(resp)
    first, second = rows
    cc_raw = second.headers.get("cache-control", "")
    cc = parse_cache_control(cc_raw)
    hits = {h: r.headers.get(h) for r in rows for h in CACHE_STATUS_HEADERS if r.headers.get(h)}
    evidence = {"path": path, "source": source, "status": second.status_code, "cache_control": cc_raw,
                "content_encoding": second.headers.get("content-encoding", ""), "cache_status": hits,
                "expected_cache_control": DATABASE_CACHE_CONTROL}
    cmds = _commands(ctx, _curl(ctx, path))
    if second.status_code in (403, 404):
        return fail(f"{path} answered {second.status_code} from the bucket", evidence=evidence, commands=cmds,
                    hint="See the gcs layer: the channel database should exist and be publicly readable.")
    if second.status_code != 200:
        return fail(f"{path} answered {second.status_code}", evidence=evidence, commands=cmds)
    hit = [f"{h}: {v}" for h, v in hits.items() if str(v).upper() in ("HIT", "STALE", "UPDATING", "REVALIDATED")]
    if hit:
        return fail(f"{path} was served from a cache ({', '.join(hit)}): Kolibri can get a stale channel version",
                    evidence=evidence, commands=cmds, produces=CACHE_POLICY,
                    hint="Remove proxy_cache from the /content/ location (and any CloudFlare cache rule for "
                         "/content/databases/); databases must pass GCS's private Cache-Control through.")
    if "public" in cc or not ("private" in cc or "no-store" in cc or "no-cache" in cc):
        return fail(f"{path} comes back with Cache-Control {cc_raw or '(none)'!r}: shared caches may keep a "
                    f"channel database across publishes", evidence=evidence, commands=cmds, produces=CACHE_POLICY,
                    hint="nginx must not add or override Cache-Control on /content/ other than storage/, and the "
                         f"object must be uploaded with {DATABASE_CACHE_CONTROL!r} (gcs layer).")
    return ok(f"{path}: Cache-Control {cc_raw!r}, no cache HIT", evidence=evidence)


@check(CONTENT_METHODS, title="/content/ refuses writes", depends_on=(REACHABLE,),
       permissions=("HTTP OPTIONS", "reads nginx.config_file if set", PROXY_GRANT),
       produces=())
def check_content_methods(ctx):
    """Every ``/content/`` location that proxies to the bucket allows only GET, HEAD and OPTIONS.

    Studio's ``_proxy.conf`` has ``limit_except GET HEAD OPTIONS { deny all; }``: writes never reach the
    bucket through nginx. studiodoctor never sends a write to find out. nginx lets OPTIONS through that
    limit, so no read-only request shows it: the check reads ``nginx.config_file`` (a copy of the running
    config, e.g. ``kubectl exec ... -c nginx-proxy -- nginx -T > nginx-T.txt``; includes are followed)
    and warns for each content location without the limit (the bucket still refuses anonymous writes, so
    this is a warning, not an outage). Without the file it sends an OPTIONS and warns only if the answer's
    ``Allow`` names a write method; otherwise it skips, saying what to set."""
    return reach.run_each(ctx, "nginx", _content_methods)


def _content_methods(ctx):
    path = facts.CONTENT_DATABASES_PREFIX + "studiodoctor-options-probe.sqlite3"
    manual = _commands(ctx)   # the last one prints the running config (nginx -T)
    config_file = str(ctx.setting("config_file", ""))
    if config_file:
        return _methods_from_config(ctx, config_file, manual)
    resp, seconds, exc = _request(ctx, "OPTIONS", path)
    if exc is not None:
        return _no_answer(ctx, path, exc, seconds)
    allow = resp.headers.get("allow", "")
    cors = resp.headers.get("access-control-allow-methods", "")
    evidence = {"path": path, "method": "OPTIONS", "status": resp.status_code, "allow": allow,
                "access_control_allow_methods": cors}
    advertised = [m for m in WRITE_METHODS if m in allow.upper().replace(" ", "").split(",")]
    if advertised:
        return warn(f"OPTIONS {path} answers Allow: {allow}: writes ({', '.join(advertised)}) are offered through "
                    f"nginx", evidence=evidence, commands=manual,
                    hint="Add limit_except GET HEAD OPTIONS { deny all; } to every /content/ location "
                         "(includes/content/_proxy.conf).")
    return skip(f"nginx's method limit is not visible to a read-only probe (OPTIONS {path} answered "
                f"{resp.status_code}{', Allow: ' + allow if allow else ', no Allow header'}): set nginx.config_file "
                f"to the output of `nginx -T` to verify limit_except", evidence=evidence,
                reason=Reason.NOT_CONFIGURED, commands=manual)


def _methods_from_config(ctx, config_file: str, manual: list[Command]):
    """The content_methods verdict from a copy of nginx's config."""
    import os

    from studiodoctor.parsers import nginx_conf

    try:
        with open(os.path.expanduser(config_file), encoding="utf-8", errors="replace") as fh:
            text = fh.read(5_000_000)
    except OSError as exc:
        return error(f"nginx.config_file {config_file} cannot be read: {exc.strerror or exc}",
                     reason=Reason.NOT_CONFIGURED, hint="point nginx.config_file at a saved `nginx -T` output")
    content = [loc for loc in nginx_conf.locations(text)
               if loc["path"].startswith(facts.CONTENT_PREFIX) and loc["proxied"]]
    allowed = set(facts.CONTENT_ALLOWED_METHODS)
    open_locs = [loc for loc in content if loc["limit_except"] is None or not set(loc["limit_except"]) <= allowed]
    evidence = {"config_file": config_file, "content_locations": [
        {"location": f"{loc['modifier']} {loc['path']}".strip(), "limit_except": loc["limit_except"]}
        for loc in content]}
    if not content:
        return error(f"nginx.config_file {config_file} has no /content/ location that proxies: is it the "
                     f"nginx-proxy's `nginx -T` output?", evidence=evidence, reason=Reason.UNEXPECTED, commands=manual)
    if open_locs:
        names = ", ".join(f"location {loc['modifier']} {loc['path']}".replace("  ", " ") for loc in open_locs)
        return warn(f"{len(open_locs)} of {len(content)} /content/ locations do not limit methods to "
                    f"GET/HEAD/OPTIONS ({names}): writes are passed to the bucket", evidence=evidence,
                    commands=manual,
                    hint="Add limit_except GET HEAD OPTIONS { deny all; } to every /content/ location "
                         "(includes/content/_proxy.conf).")
    return ok(f"all {len(content)} /content/ locations allow only GET/HEAD/OPTIONS (limit_except, from "
              f"{config_file})", evidence=evidence)


@check(CONTENT_LISTING, title="/content/ does not list the bucket",
       depends_on=(REACHABLE,), explained_by=("gcs",), permissions=("HTTP GET", PROXY_GRANT),
       produces=("permissions",))
def check_content_listing(ctx):
    """``GET /content/`` must not return the bucket's object listing.

    nginx has no guard on the bare ``/content/`` (attempts were reverted, #1838): protection relies on the
    bucket refusing anonymous ``storage.objects.list``. A listing leaks every channel's files and ids."""
    return reach.run_each(ctx, "nginx", _content_listing)


def _content_listing(ctx):
    resp, seconds, exc = _request(ctx, "GET", "/content/")
    if exc is not None:
        return _no_answer(ctx, "/content/", exc, seconds)
    body = resp.text[:200000]
    keys = re.findall(r"<Key>([^<]*)</Key>", body)
    listing = "<ListBucketResult" in body or '"storage#objects"' in body
    evidence = {"status": resp.status_code, "content_type": resp.headers.get("content-type", ""),
                "listed_objects": len(keys), "sample": keys[:3]}
    if not listing and resp.status_code >= 500:
        return error(f"GET /content/ answered {resp.status_code}: cannot tell whether the bucket's listing is "
                     f"exposed (nginx did not get the bucket's answer)", evidence=evidence,
                     commands=_commands(ctx, _curl(ctx, "/content/", "GET")),
                     hint="See nginx.content_storage and the gcs layer: nginx must reach the bucket first.")
    if not listing and resp.status_code == 404:
        return error("GET /content/ answered 404: neither a listing nor a refusal, so it says nothing about the "
                     "bucket (is /content/ proxied to the right bucket?)", evidence=evidence,
                     reason=Reason.NOT_CONFIGURED, commands=_commands(ctx, _curl(ctx, "/content/", "GET")),
                     hint="Check nginx's /content/ location and AWS_BUCKET_NAME; the gcs layer's "
                          "gcs.listing_not_public asks the bucket directly.")
    if listing:
        return fail(f"GET /content/ lists the bucket ({len(keys)} objects shown, e.g. {keys[:1]})",
                    evidence=evidence, commands=_commands(ctx, _curl(ctx, "/content/", "GET")),
                    hint="Remove allUsers storage.objects.list (roles/storage.legacyBucketReader or objectViewer "
                         "at bucket level grants it) or deny the bare /content/ in nginx.")
    return ok(f"GET /content/ answers {resp.status_code} without a listing", evidence=evidence)
