"""What the gcs checks share: the check ids, Studio's Cache-Control and IAM facts, API errors mapped to
results, paginated field-restricted listings, and the bucket's public IAM roles."""

from __future__ import annotations

import re

from studiodoctor.model import READ_ONLY, Command, Reason, Stop, error, unreachable, warn
from studiodoctor.backends import gcs


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

    from studiodoctor.probes.http import describe_error

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


def _audit_listing(ctx, name: str, prefix: str, cap: int, visit, **options):
    """``_collect`` for a check: its ``Walk``, or the Result that says why the listing failed."""
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
    """Walk the listing calling ``visit(blob)`` (checks.gcs.walk: the first page, then name ranges at once).
    Returns the ``Walk``: audited, requests, complete, by_deadline and ``figures()`` for the evidence."""
    from .walk import collect

    return collect(ctx, prefix, limit, visit, fields, page_size)


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
