"""The objects' Cache-Control: gcs.databases_cache_control (channel databases never cacheable),
gcs.storage_cache_control (content files cacheable for long)."""

from __future__ import annotations

import time

from studiodoctor.model import MUTATING, READ_ONLY, Command, Reason, Result, error, fail, ok, warn
from studiodoctor.backends import gcs
from studiodoctor.parsers.cachecontrol import max_age, parse_cache_control
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import (BUCKET, DATABASES_CACHE_CONTROL, GCS_DEFAULT_PUBLIC, MAX_NAMED, STORAGE_CACHE_CONTROL,
                     STUDIO_DB_CACHE_CONTROL, _audit_listing, _max_objects, _named, _nothing_under)


def database_cache_problem(value: str | None, limit: int) -> str:
    """Why a database object's Cache-Control lets caches keep stale copies ("" if it does not)."""
    if not value:
        return f"no Cache-Control: GCS serves it as `{GCS_DEFAULT_PUBLIC}`"
    d = parse_cache_control(value)
    if "no-store" in d:
        return ""
    if "private" not in d:
        return "not private: shared caches (CloudFlare, nginx) may keep it"
    if "no-cache" in d:
        return ""
    age = max_age(d)
    if age is None:
        return "no max-age: browsers and clients cache it heuristically"
    if age > limit:
        return f"max-age {age} s > {limit} s"
    return ""


def storage_cache_problem(value: str | None, minimum: int) -> str:
    """Why a content object's Cache-Control does not let caches keep it for long ("" if it does)."""
    if not value:
        return f"no Cache-Control: GCS serves it as `{GCS_DEFAULT_PUBLIC}` (1 hour)"
    d = parse_cache_control(value)
    for bad in ("private", "no-store", "no-cache"):
        if bad in d:
            return f"{bad}: shared caches will not keep it"
    age = max_age(d)
    if age is None:
        return "no max-age"
    if age < minimum:
        return f"max-age {age} s < {minimum} s"
    return ""


@check(DATABASES_CACHE_CONTROL, title="Channel databases are never cacheable", needs=("gcs.bucket",),
       depends_on=(BUCKET,), permissions=("storage.objects.list",), produces=("caching", "headers"))
def check_databases_cache_control(ctx):
    """Every object under `databases/` has `Cache-Control: private` with max-age <= 5 s, and gzip.

    Kolibri downloads `databases/<channel_id>.sqlite3` to import a channel; the unversioned name is
    overwritten on every publish. If any cache between GCS and Kolibri (CloudFlare, nginx, a proxy)
    keeps it, Kolibri imports a stale channel version (Studio incident #800, PR #1707: "nginx was
    caching our content DB"). Studio's upload code sets `private, max-age=5, no-transform` and gzips
    the bytes with `Content-Encoding: gzip` for every `.sqlite3`; objects written by other tools (a
    manual `gsutil cp`, a restore) lack it. The audit lists `databases/` (1,000 objects a request, only
    name/cacheControl/contentEncoding/size/updated), up to `--max-objects`: the first page alone, then,
    when more than two pages are left, the rest cut at two-hex-digit points of the channel ids into up to
    16 name ranges, `gcs.list_concurrency` (4) listed at once (evidence: `requests`, `ranges`,
    `concurrency`, `sequential_requests`). Offenders are a
    `fail` with their count and up to 10 names with their actual value; a `.sqlite3` without
    `Content-Encoding: gzip` is a `warn`. Thresholds: `gcs.databases_max_age` (5)."""
    name = gcs.bucket_name(ctx)
    prefix = ctx.setting("databases_prefix", "databases/")
    limit_age = int(ctx.setting("databases_max_age", 5))
    cap = _max_objects(ctx)
    offenders: list[tuple[str, str]] = []
    offender_count = 0
    not_gzip: list[str] = []
    not_gzip_count = 0
    newest = [None, ""]

    def visit(blob):
        nonlocal offender_count, not_gzip_count
        value = blob.cache_control
        if database_cache_problem(value, limit_age):
            offender_count += 1
            if len(offenders) < MAX_NAMED:
                offenders.append((blob.name, value or "none"))
        if blob.name.endswith(".sqlite3") and (blob.content_encoding or "").lower() != "gzip":
            not_gzip_count += 1
            if len(not_gzip) < MAX_NAMED:
                not_gzip.append(blob.name)
        if blob.updated and (newest[0] is None or blob.updated > newest[0]):
            newest[0], newest[1] = blob.updated, blob.name

    started = time.monotonic()
    listed = _audit_listing(ctx, name, prefix, cap, visit)
    if isinstance(listed, Result):
        return listed
    audited, requests, complete, by_deadline = listed.audited, listed.requests, listed.complete, listed.by_deadline
    evidence = {"bucket": name, "prefix": prefix, "audited": audited, "requests": requests, **listed.figures(),
                "complete": complete, "max_objects": cap, "list_ms": round((time.monotonic() - started) * 1000, 1),
                "offenders": offender_count,
                "offending_objects": [{"name": n, "cache_control": v} for n, v in offenders],
                "sqlite3_without_gzip": not_gzip_count, "not_gzip_objects": not_gzip,
                "expected": STUDIO_DB_CACHE_CONTROL}
    if newest[0] is not None:
        evidence["newest"] = {"name": newest[1], "updated": newest[0].isoformat()}
    scope = f"{audited} objects under gs://{name}/{prefix}"
    if not complete:
        scope += (" (stopped at the deadline)" if by_deadline else f" ({audited}: --max-objects reached)"
                  if listed.capped else " (not all: the API ignored the name ranges asked)")
    sample = (offenders or [(f"{prefix}CHANNEL_ID.sqlite3", "")])[0][0]
    commands = [Command(f"gcloud storage objects describe gs://{name}/{sample} "
                        f"--format='value(cache_control,content_encoding)'", READ_ONLY),
                Command(f"gcloud storage objects update gs://{name}/{sample} "
                        f"--cache-control='{STUDIO_DB_CACHE_CONTROL}'", MUTATING,
                        "then purge the URL from CloudFlare's cache")]
    if offender_count:
        return fail(f"{offender_count} of {scope} are cacheable: {_named(offenders)}", evidence=evidence,
                    commands=commands,
                    hint=f"set Cache-Control `{STUDIO_DB_CACHE_CONTROL}` on these objects and purge them from "
                         f"CloudFlare/nginx caches; find what wrote them (Studio's own upload sets it for every "
                         f".sqlite3). Cached databases make Kolibri import stale channel versions (#800)")
    if by_deadline:
        return error(f"audit of gs://{name}/{prefix} stopped at the deadline after {audited} objects "
                     f"({requests} requests) with no offender so far", evidence=evidence, reason=Reason.TIMEOUT,
                     hint="raise the profile's timeout or lower --max-objects")
    if not audited:
        return _nothing_under(name, prefix, "databases_prefix", evidence)
    if not_gzip_count:
        return warn(f"{not_gzip_count} of {scope} are .sqlite3 without Content-Encoding gzip: "
                    f"{', '.join(not_gzip[:3])}{' ...' if not_gzip_count > 3 else ''}", evidence=evidence,
                    commands=commands[:1],
                    hint="Studio uploads channel databases gzipped with Content-Encoding: gzip; objects without "
                         "it were written by another tool and are served uncompressed")
    return ok(f"all {scope} are private with max-age <= {limit_age} s", evidence=evidence)


@check(STORAGE_CACHE_CONTROL, title="Content files are cacheable for long", needs=("gcs.bucket",),
       depends_on=(BUCKET,), permissions=("storage.objects.list",), produces=("caching", "headers", "slow"))
def check_storage_cache_control(ctx):
    """Content objects under `storage/` are publicly cacheable for long (public, long max-age).

    Content files are named by their md5 (`storage/<h0>/<h1>/<md5>.<ext>`), so they never change and
    can be cached for a year. Studio's upload code sets no Cache-Control on them (its own code, checked in
    the studio lab variant), so GCS serves them as `public, max-age=3600`; since PR #5829 the internal
    nginx overrides that on `/content/storage/`, which is how users get them: objects without a
    Cache-Control of their own are therefore `ok` (counted in the evidence: direct bucket reads cache them
    for an hour). The check audits up to `gcs.storage_max_objects` (default 5,000, bounded by
    `--max-objects`) objects and warns with samples when an object's own Cache-Control has a max-age below
    `gcs.storage_min_max_age` (default 30 days) or makes it private."""
    name = gcs.bucket_name(ctx)
    prefix = ctx.setting("storage_prefix", "storage/")
    minimum = int(ctx.setting("storage_min_max_age", 30 * 86400))
    cap = min(_max_objects(ctx), int(ctx.setting("storage_max_objects", 5000)))
    short: list[tuple[str, str]] = []
    short_count = 0
    values: dict[str, int] = {}

    def visit(blob):
        nonlocal short_count
        value = blob.cache_control or ""
        values[value or "none"] = values.get(value or "none", 0) + 1
        if value and storage_cache_problem(value, minimum):
            short_count += 1
            if len(short) < MAX_NAMED:
                short.append((blob.name, value or "none"))

    listed = _audit_listing(ctx, name, prefix, cap, visit)
    if isinstance(listed, Result):
        return listed
    audited, requests, complete, by_deadline = listed.audited, listed.requests, listed.complete, listed.by_deadline
    top = dict(sorted(values.items(), key=lambda kv: -kv[1])[:5])
    evidence = {"bucket": name, "prefix": prefix, "audited": audited, "requests": requests, **listed.figures(),
                "complete": complete,
                "max_objects": cap, "min_max_age": minimum, "short_lived": short_count,
                "samples": [{"name": n, "cache_control": v} for n, v in short], "cache_control_values": top}
    scope = f"{audited} objects under gs://{name}/{prefix}" + ("" if complete else " (a bounded sample)")
    if not audited:
        if by_deadline:
            return error(f"audit of gs://{name}/{prefix} stopped at the deadline", evidence=evidence,
                         reason=Reason.TIMEOUT)
        return _nothing_under(name, prefix, "storage_prefix", evidence)
    if short_count:
        sample = short[0][0]
        return warn(f"{short_count} of {scope} are not cacheable for long: {_named(short)}", evidence=evidence,
                    hint=f"content files are immutable (md5 names): serve them with `public, max-age=31536000, "
                         f"immutable` (Studio's nginx sets it on /content/storage/; direct bucket reads get the "
                         f"object's own value, GCS default {GCS_DEFAULT_PUBLIC})",
                    commands=[Command(f"gcloud storage objects describe gs://{name}/{sample} "
                                      f"--format='value(cache_control)'", READ_ONLY),
                              Command(f"gcloud storage objects update gs://{name}/{sample} "
                                      f"--cache-control='public, max-age=31536000, immutable'", MUTATING)])
    unset = values.get("none", 0)
    if unset:
        return ok(f"{unset} of {scope} carry no Cache-Control of their own, as Studio uploads them (its nginx "
                  f"serves /content/storage/ immutable; direct bucket reads get GCS's {GCS_DEFAULT_PUBLIC}); "
                  "none is short-lived or private", evidence=evidence)
    return ok(f"all {scope} are public with max-age >= {minimum} s", evidence=evidence)
