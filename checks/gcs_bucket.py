"""Layer `gcs`: Studio's content bucket (``studio-content``): reachable, content publicly readable,
channel databases never cacheable, content files cacheable for long, no anonymous bucket listing.

API calls go through google-cloud-storage (imported inside the checks), anonymous reads through
``httpprobe``; every call is bounded by the check's deadline and made without SDK retries, so a
dead endpoint fails within the deadline. Listings are paginated and restricted to the fields the
audit needs: 20,000 objects cost 20 requests, never one request per object.
"""

from __future__ import annotations

import re
import time
from urllib.parse import quote

from studiodoctor.model import (MUTATING, READ_ONLY, Command, Reason, Result, Stop, error, fail, ok, unreachable,
                                warn)
from studiodoctor.backends import gcs
from studiodoctor.cachecontrol import max_age, parse_cache_control
from studiodoctor.registry import check

# imported by the runner before any check starts (see studiodoctor.runner.preload)
SDK_IMPORTS = ("google.cloud.storage", "google.auth", "requests", "httpx")

BUCKET = "gcs.bucket"
PUBLIC_READ = "gcs.public_read"
DATABASES_CACHE_CONTROL = "gcs.databases_cache_control"
STORAGE_CACHE_CONTROL = "gcs.storage_cache_control"
LISTING_NOT_PUBLIC = "gcs.listing_not_public"

LIST_FIELDS = "items(name,cacheControl,contentEncoding,size,updated),nextPageToken"
# What Studio's code sets on every .sqlite3 it uploads (contentcuration/utils/gcs_storage.py).
STUDIO_DB_CACHE_CONTROL = "private, max-age=5, no-transform"
# GCS serves a publicly readable object that has no Cache-Control with this one (GCS docs).
GCS_DEFAULT_PUBLIC = "public, max-age=3600"
# Roles whose grant to allUsers makes objects anonymously readable.
READ_ROLES = {"roles/storage.objectViewer", "roles/storage.legacyObjectReader", "roles/storage.objectUser",
              "roles/storage.objectAdmin", "roles/storage.admin"}
# Roles whose grant to allUsers lets anyone list the bucket.
LIST_ROLES = {"roles/storage.objectViewer", "roles/storage.legacyBucketReader", "roles/storage.objectUser",
              "roles/storage.objectAdmin", "roles/storage.admin", "roles/storage.legacyBucketOwner",
              "roles/storage.legacyBucketWriter"}
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
MAX_NAMED = 10
_PERMISSION = re.compile(r"storage\.[a-zA-Z]+\.[a-zA-Z]+")


# helpers -------------------------------------------------------------------------------------

def _public_url(ctx) -> str:
    return (ctx.setting("public_url", gcs.GOOGLE_API) or gcs.GOOGLE_API).rstrip("/")


def _message(exc) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return (text.strip().splitlines() or [""])[0][:300]


def _missing_permission(exc, default: str) -> str:
    found = _PERMISSION.findall(_message(exc))
    return found[0] if found else default


def _api_problem(ctx, exc, doing: str, permission: str):
    """A result for an API call that raised: unreachable (fail), 401/403 (error naming the permission),
    anything else (error with the reason). Returns None for 404 (the caller decides what it means)."""
    from google.api_core import exceptions as api_exc
    from google.auth import exceptions as auth_exc

    from studiodoctor.httpprobe import describe_error

    bucket = gcs.bucket_name(ctx)
    if gcs.is_network_error(exc):
        timed_out, text = describe_error(exc)
        return unreachable("GCS API", gcs.api_address(ctx), text, timed_out=timed_out,
                           hint="check gcs.endpoint and the network path to the Storage API")
    if isinstance(exc, auth_exc.RefreshError):
        return error(f"could not get an access token for the GCS API: {_message(exc)}", reason=Reason.AUTH,
                     hint="check the service-account key in gcs.credentials (revoked or deleted keys fail here)")
    if isinstance(exc, api_exc.Unauthorized):
        return error(f"{doing}: our credentials were rejected (HTTP 401: {_message(exc)})", reason=Reason.AUTH,
                     hint="check gcs.credentials or refresh Application Default Credentials")
    if isinstance(exc, api_exc.Forbidden):
        perm = _missing_permission(exc, permission)
        return error(f"{doing}: our credentials lack {perm} on gs://{bucket} (HTTP 403)", reason=Reason.FORBIDDEN,
                     evidence={"missing_permission": perm, "message": _message(exc)},
                     hint=f"grant our identity a role with {perm} on the bucket (e.g. roles/storage.objectViewer "
                          f"plus roles/storage.legacyBucketReader), or run with credentials that have it",
                     commands=[Command(f"gcloud storage buckets get-iam-policy gs://{bucket}", READ_ONLY,
                                       "who may do what on the bucket")])
    if isinstance(exc, api_exc.NotFound):
        return None
    if isinstance(exc, api_exc.GoogleAPICallError):
        return error(f"{doing}: unexpected HTTP {exc.code} from the GCS API: {_message(exc)}",
                     evidence={"http_status": exc.code})
    # not an API error: the answer could not be read (not JSON, not the shape of a bucket or a listing)
    return error(f"{doing}: unreadable answer from the GCS API ({type(exc).__name__}: {_message(exc)})"[:300],
                 evidence={"endpoint": gcs.api_address(ctx)})


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


def _list(ctx, prefix: str, limit: int, fields: str = LIST_FIELDS, page_size: int | None = None):
    """The SDK's iterator over a paginated, field-restricted listing of at most ``limit`` objects
    (no retries; each page request bounded by the deadline). Callers walk it with ``_collect``."""
    client = gcs.client(ctx)
    size = int(page_size or ctx.setting("page_size", 1000))
    iterator = client.list_blobs(gcs.bucket_name(ctx), prefix=prefix, fields=fields,
                                 page_size=min(size, max(1, limit)), max_results=limit,
                                 timeout=ctx.timeout(ctx.setting("request_timeout", 30.0)), retry=None)
    return iterator


def _audit_listing(ctx, name: str, prefix: str, cap: int, visit, **options):
    """``_collect`` for a check: its figures, or the Result that says why the listing failed."""
    try:
        return _collect(ctx, prefix, cap, visit, **options)
    except Stop as exc:
        return exc.result
    except Exception as exc:
        result = _api_problem(ctx, exc, f"listing gs://{name}/{prefix}", "storage.objects.list")
        if result is not None:
            return result
        return error(f"listing gs://{name}/{prefix} answered 404 although the bucket exists")


def _collect(ctx, prefix: str, limit: int, visit, fields: str = LIST_FIELDS, page_size: int | None = None):
    """Walk the listing calling ``visit(blob)``. Returns (audited, requests, complete, stopped_by_deadline)."""
    iterator = _list(ctx, prefix, limit, fields, page_size)
    audited = requests = 0
    margin = float(ctx.setting("deadline_margin", 0.3))
    pages = iterator.pages
    while True:
        if requests and ctx.remaining() <= margin:
            return audited, requests, False, True
        try:
            page = next(pages)
        except StopIteration:
            break
        requests += 1
        for blob in page:
            audited += 1
            visit(blob)
    complete = iterator.next_page_token is None
    return audited, requests, complete, False


def _max_objects(ctx) -> int:
    try:
        return max(1, int(ctx.options.get("max_objects") or 100_000))
    except (TypeError, ValueError):
        return 100_000


def _named(items: list[tuple[str, str]]) -> str:
    shown = ", ".join(f"{name} ({value})" for name, value in items[:3])
    return shown + (f" and {len(items) - 3} more" if len(items) > 3 else "")


def _nothing_under(name: str, prefix: str, key: str, evidence: dict):
    """Zero objects examined: a warning naming the key, never ``ok`` nor a quiet skip."""
    return warn(f"no objects under gs://{name}/{prefix}: nothing was examined (Studio keeps channel databases "
                f"under databases/ and content under storage/)", evidence=evidence, reason=Reason.NOT_CONFIGURED,
                hint=f"check gcs.bucket and gcs.{key} (the prefix Studio writes these objects under)")


# checks --------------------------------------------------------------------------------------

@check(BUCKET, title="Content bucket exists and our credentials can read its metadata", needs=("gcs.bucket",),
       permissions=("storage.buckets.get",), smoke=True)
def check_bucket(ctx):
    """The content bucket exists and our credentials can read its metadata (storage.buckets.get).

    Studio's storage backend calls `client.get_bucket()` when it starts, so the app's service account
    needs storage.buckets.get, not only object permissions; without the bucket nothing can be
    uploaded or published and Kolibri gets 404s for content. A 404 means the bucket is missing (wrong
    `gcs.bucket`, deleted bucket); a 403 means *we* may not look, which says nothing about the bucket:
    the check then asks testIamPermissions which permissions we lack and names them. The bucket's
    location, storage class, uniform bucket-level access and public access prevention are reported as
    evidence (public access prevention `enforced` makes every anonymous read fail)."""
    name = gcs.bucket_name(ctx)
    try:
        client = gcs.client(ctx)
    except Stop as exc:
        return exc.result
    started = time.monotonic()
    bucket = client.bucket(name)
    try:
        bucket.reload(timeout=ctx.timeout(ctx.setting("request_timeout", 30.0)), retry=None)
    except Exception as exc:
        from google.api_core import exceptions as api_exc

        if isinstance(exc, api_exc.Forbidden):
            return _forbidden_bucket(ctx, bucket, exc)
        result = _api_problem(ctx, exc, f"reading bucket gs://{name}", "storage.buckets.get")
        if result is not None:
            return result
        return fail(f"bucket gs://{name} missing (HTTP 404 from {gcs.api_address(ctx)})",
                    evidence={"bucket": name, "endpoint": gcs.api_address(ctx), "http_status": 404},
                    hint="check gcs.bucket in the profile (production: studio-content, staging: "
                         "develop-studio-content) and that the bucket was not deleted",
                    commands=[Command("gcloud storage buckets list --format='value(name)'", READ_ONLY),
                              Command(f"gcloud storage buckets describe gs://{name}", READ_ONLY)])
    latency = round((time.monotonic() - started) * 1000, 1)
    try:  # the SDK reads its fields lazily from the answer: a body that is not a bucket's JSON fails here
        iam = bucket.iam_configuration
        ubla = bool(iam.uniform_bucket_level_access_enabled) if iam is not None else None
        pap = getattr(iam, "public_access_prevention", None) if iam is not None else None
        evidence = {"bucket": name, "endpoint": gcs.api_address(ctx), "location": bucket.location,
                    "storage_class": bucket.storage_class, "uniform_bucket_level_access": ubla,
                    "public_access_prevention": pap, "versioning": bool(bucket.versioning_enabled),
                    "latency_ms": latency}
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        return error(f"reading bucket gs://{name}: the answer is not a bucket's metadata ({type(exc).__name__})",
                     evidence={"bucket": name, "endpoint": gcs.api_address(ctx)})
    extra = f", uniform bucket-level access {'on' if ubla else 'off'}" if ubla is not None else ""
    return ok(f"gs://{name} exists ({bucket.storage_class} in {bucket.location}{extra})", evidence=evidence)


def _forbidden_bucket(ctx, bucket, exc):
    """403 on buckets.get: ask testIamPermissions which of the permissions we need we lack."""
    name = bucket.name
    wanted = ["storage.buckets.get", "storage.objects.list", "storage.objects.get", "storage.buckets.getIamPolicy"]
    evidence = {"bucket": name, "endpoint": gcs.api_address(ctx), "http_status": 403, "message": _message(exc)}
    try:
        granted = bucket.test_iam_permissions(wanted, timeout=ctx.timeout(ctx.setting("request_timeout", 30.0)),
                                              retry=None)
        missing = [p for p in wanted if p not in set(granted or [])]
        evidence.update({"granted_permissions": list(granted or []), "missing_permissions": missing})
    except Exception as inner:
        missing = [_missing_permission(exc, "storage.buckets.get")]
        evidence["test_iam_permissions"] = f"not answered: {_message(inner)}"
    missing = missing or [_missing_permission(exc, "storage.buckets.get")]
    evidence["missing_permissions"] = missing
    identity = getattr(getattr(gcs.client(ctx), "_credentials", None), "service_account_email", None)
    if not isinstance(identity, str) or "@" not in identity:
        identity = None  # user or anonymous credentials: the member has to be filled in
    if identity:
        evidence["identity"] = identity
    return error(f"cannot read gs://{name}: our credentials lack {', '.join(missing)} (HTTP 403); "
                 f"this does not mean the bucket is missing", evidence=evidence, reason=Reason.FORBIDDEN,
                 hint="grant our identity roles/storage.legacyBucketReader (storage.buckets.get) and "
                      "roles/storage.objectViewer on the bucket, or run with credentials that have them",
                 commands=[Command(f"gcloud storage buckets get-iam-policy gs://{name}", READ_ONLY),
                           Command(f"gcloud storage buckets add-iam-policy-binding gs://{name} "
                                   f"--member=serviceAccount:{identity or 'SA_EMAIL'} "
                                   f"--role=roles/storage.legacyBucketReader", MUTATING,
                                   "the identity studiodoctor runs as" if identity else
                                   "replace SA_EMAIL with the identity studiodoctor runs as")])


@check(PUBLIC_READ, title="Content files are anonymously readable", needs=("gcs.bucket", "gcs.public_url"),
       depends_on=(BUCKET,), permissions=("storage.objects.list", "storage.buckets.getIamPolicy (optional)"))
def check_public_read(ctx):
    """A sample of objects under `storage/` is readable anonymously through `gcs.public_url`.

    Kolibri and Studio's nginx fetch content files without credentials (nginx proxies
    `/content/storage/...` to GCS anonymously), and Studio's code sets no object ACLs: public read must
    come from the bucket's IAM (allUsers with roles/storage.legacyObjectReader). The check HEADs a
    spread-out sample of content objects (`gcs.public_sample`, default 10) anonymously; any object
    answering 401/403 is a `fail` naming it. Where our credentials may read the bucket IAM policy, the
    roles granted to allUsers are reported too (public read through object ACLs only is a `warn`: new
    uploads carry no ACL and would be private)."""
    from studiodoctor import httpprobe

    name = gcs.bucket_name(ctx)
    prefix = ctx.setting("storage_prefix", "storage/")
    sample_size = max(1, int(ctx.setting("public_sample", 10)))
    names: list[str] = []
    listed = _audit_listing(ctx, name, prefix, int(ctx.setting("public_sample_pool", 1000)),
                            lambda b: names.append(b.name), fields="items(name),nextPageToken")
    if isinstance(listed, Result):
        return listed
    if not names:
        return _nothing_under(name, prefix, "storage_prefix", {"bucket": name, "prefix": prefix})
    step = max(1, len(names) // sample_size)
    sample = names[::step][:sample_size]
    base = _public_url(ctx)
    readable, private, other = [], [], []
    for obj in sample:
        if ctx.remaining() < 0.5 and readable:
            break
        url = f"{base}/{quote(name)}/{quote(obj)}"
        try:
            resp = httpprobe.request(ctx, "HEAD", url, timeout=float(ctx.setting("request_timeout", 30.0)))
        except Exception as exc:
            timed_out, text = httpprobe.describe_error(exc)
            return unreachable("public GCS endpoint", base, text, timed_out=timed_out,
                               evidence={"bucket": name, "object": obj},
                               hint="check gcs.public_url and the network path to it")
        if 200 <= resp.status_code < 300:
            readable.append(obj)
        elif resp.status_code in (401, 403):
            private.append((obj, f"HTTP {resp.status_code}"))
        else:
            other.append((obj, f"HTTP {resp.status_code}"))
    policy = _public_roles(ctx)
    evidence = {"bucket": name, "public_url": base, "sampled": len(readable) + len(private) + len(other),
                "readable": len(readable), "not_readable": [f"{o} ({v})" for o, v in (private + other)][:MAX_NAMED],
                **policy}
    commands = [Command(f"curl -sI {base}/{quote(name)}/{quote((private or other or [(sample[0], '')])[0][0])}",
                        READ_ONLY, "anonymous read, as Kolibri and nginx do it"),
                Command(f"gcloud storage buckets get-iam-policy gs://{name}", READ_ONLY)]
    if private:
        return fail(f"{len(private)} of {evidence['sampled']} sampled content objects are not anonymously "
                    f"readable: {_named(private)}", evidence=evidence, commands=commands + [
                        Command(f"gcloud storage buckets add-iam-policy-binding gs://{name} --member=allUsers "
                                f"--role=roles/storage.legacyObjectReader", MUTATING,
                                "object read for everyone, without bucket listing")],
                    hint="grant allUsers roles/storage.legacyObjectReader on the bucket (not objectViewer, which "
                         "also allows listing); check public access prevention is not `enforced`")
    if other:
        return error(f"{len(other)} of {evidence['sampled']} sampled content objects answered unexpectedly "
                     f"to an anonymous read: {_named(other)}", evidence=evidence, commands=commands)
    roles = policy.get("all_users_roles")
    if roles is not None and not (set(roles) & READ_ROLES):
        return warn(f"sampled objects are readable but allUsers has no object-read role on gs://{name} "
                    f"(public through object ACLs?): new uploads carry no ACL and would be private",
                    evidence=evidence, commands=commands,
                    hint="grant allUsers roles/storage.legacyObjectReader on the bucket")
    return ok(f"{len(readable)} sampled content objects are anonymously readable through {base}",
              evidence=evidence)


def _public_roles(ctx) -> dict:
    """Roles granted to allUsers/allAuthenticatedUsers, if our credentials may read the IAM policy."""
    client = gcs.client(ctx)
    bucket = client.bucket(gcs.bucket_name(ctx))
    try:
        policy = bucket.get_iam_policy(requested_policy_version=3,
                                       timeout=ctx.timeout(ctx.setting("request_timeout", 30.0)), retry=None)
    except Exception as exc:
        from google.api_core import exceptions as api_exc

        if isinstance(exc, (api_exc.Forbidden, api_exc.Unauthorized)):
            return {"iam_policy": f"not readable with our credentials "
                                  f"({_missing_permission(exc, 'storage.buckets.getIamPolicy')})"}
        if isinstance(exc, api_exc.NotFound):
            return {"iam_policy": "not served by this endpoint (emulator?)"}
        return {"iam_policy": f"not read: {_message(exc)}"}
    roles = sorted({b["role"] for b in policy.bindings if set(b.get("members", ())) & set(PUBLIC_MEMBERS)})
    return {"all_users_roles": roles}


@check(DATABASES_CACHE_CONTROL, title="Channel databases are never cacheable", needs=("gcs.bucket",),
       depends_on=(BUCKET,), permissions=("storage.objects.list",))
def check_databases_cache_control(ctx):
    """Every object under `databases/` has `Cache-Control: private` with max-age <= 5 s, and gzip.

    Kolibri downloads `databases/<channel_id>.sqlite3` to import a channel; the unversioned name is
    overwritten on every publish. If any cache between GCS and Kolibri (CloudFlare, nginx, a proxy)
    keeps it, Kolibri imports a stale channel version (Studio incident #800, PR #1707: "nginx was
    caching our content DB"). Studio's upload code sets `private, max-age=5, no-transform` and gzips
    the bytes with `Content-Encoding: gzip` for every `.sqlite3`; objects written by other tools (a
    manual `gsutil cp`, a restore) lack it. The audit lists `databases/` page by page (1,000 objects a
    request, only name/cacheControl/contentEncoding/size/updated), up to `--max-objects`. Offenders are a
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
    audited, requests, complete, by_deadline = listed
    evidence = {"bucket": name, "prefix": prefix, "audited": audited, "requests": requests,
                "complete": complete, "max_objects": cap, "list_ms": round((time.monotonic() - started) * 1000, 1),
                "offenders": offender_count,
                "offending_objects": [{"name": n, "cache_control": v} for n, v in offenders],
                "sqlite3_without_gzip": not_gzip_count, "not_gzip_objects": not_gzip,
                "expected": STUDIO_DB_CACHE_CONTROL}
    if newest[0] is not None:
        evidence["newest"] = {"name": newest[1], "updated": newest[0].isoformat()}
    scope = f"{audited} objects under gs://{name}/{prefix}"
    if not complete:
        scope += " (stopped at the deadline)" if by_deadline else f" (first {audited}: --max-objects reached)"
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
       depends_on=(BUCKET,), permissions=("storage.objects.list",))
def check_storage_cache_control(ctx):
    """Content objects under `storage/` are publicly cacheable for long (public, long max-age).

    Content files are named by their md5 (`storage/<h0>/<h1>/<md5>.<ext>`), so they never change and
    can be cached for a year. Studio's upload code sets no Cache-Control on them, so GCS serves them as
    `public, max-age=3600`; since PR #5829 the internal nginx overrides that on `/content/storage/`,
    but anything reading the bucket directly (storage.googleapis.com, a CDN in front of it) caches for
    an hour only. The check audits up to `gcs.storage_max_objects` (default 5,000, bounded by
    `--max-objects`) objects and warns with samples when their max-age is below
    `gcs.storage_min_max_age` (default 30 days) or they are private."""
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
        if storage_cache_problem(value, minimum):
            short_count += 1
            if len(short) < MAX_NAMED:
                short.append((blob.name, value or "none"))

    listed = _audit_listing(ctx, name, prefix, cap, visit)
    if isinstance(listed, Result):
        return listed
    audited, requests, complete, by_deadline = listed
    top = dict(sorted(values.items(), key=lambda kv: -kv[1])[:5])
    evidence = {"bucket": name, "prefix": prefix, "audited": audited, "requests": requests, "complete": complete,
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
    return ok(f"all {scope} are public with max-age >= {minimum} s", evidence=evidence)


@check(LISTING_NOT_PUBLIC, title="Anonymous bucket listing is refused", needs=("gcs.bucket", "gcs.public_url"),
       depends_on=(BUCKET,), permissions=("none: anonymous requests",))
def check_listing_not_public(ctx):
    """An anonymous listing of the bucket is refused (XML `GET /<bucket>` and JSON `.../o`).

    Content must be readable by anyone who knows an object's name, but listing the bucket lets anyone
    enumerate every channel database and file, including unpublished channels' drafts (Studio issue
    #1838: `/content/` once listed the bucket). Listing comes from storage.objects.list, which
    roles/storage.objectViewer includes: grant allUsers roles/storage.legacyObjectReader instead. The
    check asks `gcs.public_url` for a one-item listing without credentials, in both the XML and the JSON
    API; a listing in the answer is a `fail`, 401/403 is `ok`; 404 from both says the endpoint does not
    serve this bucket (wrong `gcs.public_url` or `gcs.bucket`): an `error`, never `ok`."""
    from studiodoctor import httpprobe

    name = gcs.bucket_name(ctx)
    base = _public_url(ctx)
    probes = {"xml": f"{base}/{quote(name)}?max-keys=1",
              "json": f"{base}/storage/v1/b/{quote(name)}/o?maxResults=1&fields=items(name)"}
    seen: dict[str, str] = {}
    exposed, unexpected = [], []
    for api, url in probes.items():
        try:
            resp = httpprobe.request(ctx, "GET", url, timeout=float(ctx.setting("request_timeout", 30.0)))
        except Exception as exc:
            timed_out, text = httpprobe.describe_error(exc)
            return unreachable("public GCS endpoint", base, text, timed_out=timed_out,
                               hint="check gcs.public_url and the network path to it")
        body = resp.text[:4000] if resp.request.method == "GET" else ""
        listed = resp.status_code == 200 and ("<ListBucketResult" in body or '"storage#objects"' in body
                                              or '"items"' in body)
        if listed:
            first = re.search(r"<Key>([^<]+)</Key>|\"name\"\s*:\s*\"([^\"]+)\"", body)
            shown = next((g for g in (first.groups() if first else ()) if g), "")
            seen[api] = "HTTP 200, listing returned" + (f" ({shown})" if shown else "")
            exposed.append(api)
        elif resp.status_code in (401, 403):
            seen[api] = f"HTTP {resp.status_code}, refused"
        elif resp.status_code == 404:
            seen[api] = "HTTP 404, not served"
        else:
            seen[api] = f"HTTP {resp.status_code}"
            unexpected.append(api)
    evidence = {"bucket": name, "public_url": base, "answers": seen,
                "urls": {api: probes[api] for api in probes}}
    commands = [Command(f"curl -s '{probes['xml']}' | head -c 400", READ_ONLY, "what anyone sees"),
                Command(f"gcloud storage buckets get-iam-policy gs://{name}", READ_ONLY)]
    if exposed:
        return fail(f"anyone can list gs://{name} through {base} ({', '.join(exposed).upper()} API): "
                    f"{seen[exposed[0]]}", evidence=evidence, commands=commands + [
                        Command(f"gcloud storage buckets remove-iam-policy-binding gs://{name} --member=allUsers "
                                f"--role=roles/storage.objectViewer", MUTATING,
                                "only after granting roles/storage.legacyObjectReader, or content goes private"),
                        Command(f"gcloud storage buckets add-iam-policy-binding gs://{name} --member=allUsers "
                                f"--role=roles/storage.legacyObjectReader", MUTATING)],
                    hint="grant allUsers roles/storage.legacyObjectReader (objects.get only) instead of "
                         "roles/storage.objectViewer or legacyBucketReader, which include storage.objects.list")
    if unexpected:
        return error(f"anonymous listing of gs://{name} answered unexpectedly: "
                     f"{'; '.join(f'{a}: {seen[a]}' for a in unexpected)}", evidence=evidence, commands=commands)
    refused = [api for api, v in seen.items() if v.endswith("refused")]
    if not refused:  # every probe got 404: nothing was asked of this bucket, so nothing is known
        return error(f"cannot tell whether gs://{name} can be listed: {base} answered 404 to both listings "
                     f"({'; '.join(f'{a}: {v}' for a, v in seen.items())}), so it does not serve this bucket",
                     evidence=evidence, commands=commands, reason=Reason.NOT_CONFIGURED,
                     hint="check gcs.public_url (the anonymous endpoint, https://storage.googleapis.com for GCS) "
                          "and gcs.bucket")
    return ok(f"anonymous listing of gs://{name} is refused ({'; '.join(f'{a}: {v}' for a, v in seen.items())})",
              evidence=evidence)
