"""Layer `traefik`: the API's overview, a router per hostname, its service's servers, the origin
certificate served by SNI at ``traefik.entrypoint``, and Traefik's pods (through the Kubernetes API).

Traefik's OSS API lists no certificates (``/api/tls/certificates`` is 404), so certificates are read
with a TLS handshake per hostname against the entrypoint.

Modules by concern: ``api`` (api, overview), ``routing`` (routers, services), ``certificates``
(certificates), ``pods`` (pods)."""

from __future__ import annotations

from .common import (API, CERTIFICATES, OVERVIEW, PODS, ROUTERS, SDK_IMPORTS, SERVICES, rule_matches,
                     traefik_hostnames)
from . import api  # noqa: F401 - importing it registers its checks
from . import routing  # noqa: F401 - importing it registers its checks
from . import certificates  # noqa: F401 - importing it registers its checks
from . import pods  # noqa: F401 - importing it registers its checks
