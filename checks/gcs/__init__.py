"""Layer `gcs`: Studio's content bucket (``studio-content``): reachable, content publicly readable,
channel databases never cacheable, content files cacheable for long, no anonymous bucket listing.

API calls go through google-cloud-storage (imported inside the checks), anonymous reads through
``httpprobe``; every call is bounded by the check's deadline and made without SDK retries, so a
dead endpoint fails within the deadline. Listings are paginated and restricted to the fields the
audit needs: 20,000 objects cost 20 requests, never one request per object, and when many pages are
left after the first, the rest is read as name ranges a few at once (``walk``).

Modules by concern: ``access`` (bucket, public_read), ``cache`` (databases_cache_control,
storage_cache_control), ``listing`` (listing_not_public), ``walk`` (how the audits read a listing)."""

from __future__ import annotations

from .common import (BUCKET, DATABASES_CACHE_CONTROL, GCS_DEFAULT_PUBLIC, LIST_FIELDS, LIST_ROLES,
                     LISTING_NOT_PUBLIC, MAX_NAMED, PUBLIC_MEMBERS, PUBLIC_READ, READ_ROLES, SDK_IMPORTS,
                     STORAGE_CACHE_CONTROL, STUDIO_DB_CACHE_CONTROL)
from . import access  # noqa: F401 - importing it registers its checks
from .cache import database_cache_problem, storage_cache_problem
from . import listing  # noqa: F401 - importing it registers its checks
