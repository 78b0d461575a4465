"""Layer `edge`: CloudFlare's edge as users get it at the public URLs: the HTTPS redirect, the edge
certificate, CloudFlare's headers, its 52x error pages and its cache status (the API side, zone settings
and rules, is the `cloudflare` layer; the edge's settings live in the `cloudflare` section).
Every request goes through `httpprobe` (the run's client for its SNI name: one connection per host per run).

Modules by concern: ``https`` (https_redirect, certificate), ``proxy`` (proxied, error_pages), ``cache``
(cache_status, databases_not_cached)."""

from __future__ import annotations

import checks.cloudflare  # noqa: F401  (API checks register first: they come first in a walk)

from .common import (CACHE_STATUS, CACHED, CERTIFICATE, CF_CODES, CF_PAGE_MARKERS, DATABASES_NOT_CACHED,
                     ERROR_PAGES, HTTPS_REDIRECT, NOT_FROM_CACHE, ORIGIN_LAYERS, PROXIED, SDK_IMPORTS,
                     SERVED_FROM_CACHE)
from . import https  # noqa: F401 - importing it registers its checks
from . import proxy  # noqa: F401 - importing it registers its checks
from .cache import PUBLIC_CHANNELS
