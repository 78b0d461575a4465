"""Who may read the bucket: gcs.bucket (exists, our credentials read its metadata), gcs.public_read (content
files anonymously readable)."""

from __future__ import annotations

import time
from urllib.parse import quote

from studiodoctor.model import (MUTATING, READ_ONLY, Command, Reason, Result, Stop, error, fail, ok,
                                unreachable, warn)
from studiodoctor.backends import gcs
from studiodoctor.registry import check
from .common import SDK_IMPORTS  # noqa: F401 - the runner reads it here
from .common import (BUCKET, MAX_NAMED, PUBLIC_READ, READ_ROLES, _api_problem, _audit_listing, _message,
                     _missing_permission, _named, _nothing_under, _public_roles, _public_url)


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


def _anonymous_sample(ctx, prefix: str, size: int) -> tuple[list[str], str, list[str]]:
    """(object names, where they came from, what was tried) when our credentials cannot list the bucket:
    the configured content paths (``nginx.storage_path``, ``trace.content_path``), else channel databases any
    source of the run names (the public channel API at ``nginx.url`` or the public URLs, Studio's tables).
    Channel databases are read anonymously by every Kolibri, as content files are."""
    from studiodoctor.discovery import channel_databases

    configured = [(key, str(ctx.profile.value(key) or "")) for key in ("nginx.storage_path", "trace.content_path")]
    names = [v[len("/content/"):] for _, v in configured if v.startswith("/content/")]
    if names:
        return names[:size], " and ".join(k for k, v in configured if v.startswith("/content/")), []
    bases = [str(ctx.profile.value("nginx.url") or ""), *(ctx.profile.value("public_urls") or [])]
    found = channel_databases.channel_ids(ctx, [b for b in bases if b])
    db_prefix = str(ctx.setting("databases_prefix", "databases/"))
    return [f"{db_prefix}{i}.sqlite3" for i in found.ids[:size]], f"channel databases of {found.source}", found.tried


@check(PUBLIC_READ, title="Content files are anonymously readable", needs=("gcs.bucket", "gcs.public_url"),
       permissions=("storage.objects.list", "storage.buckets.getIamPolicy (optional)"),
       produces=("content", "permissions"))
def check_public_read(ctx):
    """A sample of objects under `storage/` is readable anonymously through `gcs.public_url`.

    Kolibri and Studio's nginx fetch content files without credentials (nginx proxies
    `/content/storage/...` to GCS anonymously), and Studio's code sets no object ACLs: public read must
    come from the bucket's IAM (allUsers with roles/storage.legacyObjectReader). The check HEADs a
    spread-out sample of content objects (`gcs.public_sample`, default 10) anonymously; any object
    answering 401/403 is a `fail` naming it. Where our credentials may read the bucket IAM policy, the
    roles granted to allUsers are reported too (public read through object ACLs only is a `warn`: new
    uploads carry no ACL and would be private).

    The reads are anonymous, so the check needs no credentials: when ours cannot list the bucket (none,
    or no storage.objects.list), the sample comes from elsewhere in the run (``nginx.storage_path``, else
    channel databases named by Studio's public API or its tables), and only with no sample at all is it
    an `error` saying why."""
    from studiodoctor.probes import http as httpprobe

    name = gcs.bucket_name(ctx)
    prefix = ctx.setting("storage_prefix", "storage/")
    sample_size = max(1, int(ctx.setting("public_sample", 10)))
    names: list[str] = []
    listed = _audit_listing(ctx, name, prefix, int(ctx.setting("public_sample_pool", 1000)),
                            lambda b: names.append(b.name), fields="items(name),nextPageToken")
    source, listing_problem = f"the listing of gs://{name}/{prefix}", ""
    if isinstance(listed, Result):
        if "answered 404" in listed.summary:  # this check does not wait for gcs.bucket, which says why
            return error(f"cannot sample gs://{name}: the GCS API does not find the bucket (see {BUCKET})",
                         evidence=listed.evidence, reason=Reason.UNEXPECTED)
        if listed.reason not in (Reason.AUTH.value, Reason.FORBIDDEN.value):
            return listed
        sample, source, tried = _anonymous_sample(ctx, prefix, sample_size)
        listing_problem = listed.summary
        if not sample:
            listed.summary = (f"{listed.summary}; and no other source of this run named an object to read "
                              f"anonymously ({'; '.join(tried) or 'none configured'})")[:400]
            return listed
    elif not names:
        return _nothing_under(name, prefix, "storage_prefix", {"bucket": name, "prefix": prefix})
    else:
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
    try:
        policy = _public_roles(ctx)
    except Stop as stop:  # no credentials at all: the IAM policy is not read, the anonymous reads stand
        policy = {"iam_policy": f"not read: {stop.result.summary}"[:200]}
    evidence = {"bucket": name, "public_url": base, "sample_source": source,
                "sampled": len(readable) + len(private) + len(other),
                "readable": len(readable), "not_readable": [f"{o} ({v})" for o, v in (private + other)][:MAX_NAMED],
                **policy, **({"listing": listing_problem} if listing_problem else {})}
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
    return ok(f"{len(readable)} sampled content objects are anonymously readable through {base}"
              + (f" (sampled from {source}: our credentials cannot list the bucket)" if listing_problem else ""),
              evidence=evidence)
