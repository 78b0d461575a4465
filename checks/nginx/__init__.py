"""Layer `nginx`: Studio's internal nginx at ``nginx.url`` (the ``nginx-proxy`` sidecar, :8080).

It serves ``/static/`` from disk, proxies ``/`` to gunicorn with only ``Host`` and ``X-Forwarded-For``
(``proxy_read_timeout 100s``), proxies ``/content/storage/`` to the bucket forcing
``Cache-Control: public, max-age=31536000, immutable, no-transform``, passes Google's headers through
on other ``/content/`` paths (channel databases must stay ``private``), and allows only
GET/HEAD/OPTIONS on ``/content/`` (facts file §2).

Modules by concern: ``proxy`` (reachable, app_proxy, static), ``content`` (content_storage,
content_databases, content_methods, content_listing), ``headers`` (headers)."""

from __future__ import annotations

from .common import (APP_PROXY, CACHE_STATUS_HEADERS, CLOUDFLARE_TIMEOUT_S, CONTENT_DATABASES,
                     CONTENT_LISTING, CONTENT_METHODS, CONTENT_STORAGE, DATABASE_CACHE_CONTROL, HEADERS,
                     IMMUTABLE_MAX_AGE, NGINX_DEFAULT_READ_TIMEOUT_S, REACHABLE, SDK_IMPORTS, STATIC,
                     STORAGE_CACHE_CONTROL, STUDIO_PROXY_READ_TIMEOUT_S, WRITE_METHODS, database_path)
from . import proxy  # noqa: F401 - importing it registers its checks
from . import content  # noqa: F401 - importing it registers its checks
from . import headers  # noqa: F401 - importing it registers its checks
