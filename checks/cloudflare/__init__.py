"""Layer `cloudflare` (API side): the zone, its SSL/HTTPS/TLS settings, DNS records' proxy flag and
the cache rules, read from the v4 API as plain JSON over HTTP (the engine's probe; no SDK import).

Modules by concern: ``settings`` (zone, development_mode, ssl_mode, always_use_https, min_tls_version),
``dns`` (dns_records), ``cache`` (cache_rules)."""

from __future__ import annotations

from .common import (ALWAYS_HTTPS, CACHE_RULES, DEVELOPMENT_MODE, DNS_RECORDS, MIN_TLS, NEEDS, SDK_IMPORTS,
                     SSL_MODE, TOKEN_ENV, ZONE)
from . import settings  # noqa: F401 - importing it registers its checks
from . import dns  # noqa: F401 - importing it registers its checks
from .cache import PHASE
