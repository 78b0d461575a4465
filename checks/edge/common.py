"""What the edge checks share: the check ids, CloudFlare's status codes and cache statuses, the public URLs and
one request to them through ``httpprobe``."""

from __future__ import annotations

from urllib.parse import urlsplit

from studiodoctor.probes import http as httpprobe
from studiodoctor.model import Command, unreachable


# imported by the runner before any check starts (see studiodoctor.runner.preload)
SDK_IMPORTS = ("httpx",)  # cryptography only for a certificate that does not verify (probes.tls)

HTTPS_REDIRECT = "edge.https_redirect"
CERTIFICATE = "edge.certificate"
PROXIED = "edge.proxied"
ERROR_PAGES = "edge.error_pages"
CACHE_STATUS = "edge.cache_status"
DATABASES_NOT_CACHED = "edge.databases_not_cached"

ORIGIN_LAYERS = ("traefik", "kubernetes", "nginx", "app")

# CloudFlare's own status codes: what each means for Studio's origin
CF_CODES = {
    520: "the origin sent an empty, unknown or malformed response (a crashed or reset connection, "
         "oversized headers)",
    521: "the origin refused the connection: the ingress (Traefik/nginx) is down or drops CloudFlare's IPs",
    522: "CloudFlare's connection to the origin timed out: the load balancer, node or ingress is not answering",
    523: "the origin is unreachable: the DNS record points at an address CloudFlare cannot route to",
    524: "the origin accepted the connection but sent no response within 100 s: a slow Django view, "
         "busy gunicorn workers or database locks (nginx's proxy_read_timeout must be >= 100 s)",
    525: "the TLS handshake between CloudFlare and the origin failed (origin TLS setup, SNI, no certificate)",
    526: "the origin's certificate is invalid (expired, wrong name) and SSL mode is Full (strict)",
    527: "a Railgun connection error between CloudFlare and the origin",
    530: "CloudFlare could not resolve or reach the origin (shown with a 1xxx error, e.g. 1016 origin DNS error)",
}
CF_PAGE_MARKERS = ("cf-error-details", "cf-wrapper", "cloudflare ray id", "cdn-cgi/", "performance & security by cloudflare",
                   "performance &amp; security by cloudflare")
CACHED = {"HIT", "MISS", "EXPIRED", "REVALIDATED", "UPDATING", "STALE"}
# cf-cache-status values that mean the answer came out of CloudFlare's cache (STALE/UPDATING: an expired copy)
SERVED_FROM_CACHE = {"HIT", "STALE", "UPDATING"}
# ... and those that mean it was not eligible for the cache at all
NOT_FROM_CACHE = {"BYPASS", "DYNAMIC"}


def _setting(ctx, key: str, default):
    """A key of the ``cloudflare`` section: the edge layer's settings (``static_path``, ``databases_sample``,
    ``max_redirects``, ``cert_warn_days``...) live with the zone they belong to, as in the contract."""
    value = ctx.section("cloudflare").get(key)
    return default if value in (None, "") else value


def _urls(ctx) -> list[str]:
    return [u for u in ctx.profile.value("public_urls") or [] if u]


def _host(url: str) -> str:
    return urlsplit(url).hostname or ""


def _fetch(ctx, url: str, *, method: str = "GET", headers: dict | None = None, verify: bool = False):
    """(response, None) or (None, failing Result) for a network error."""
    try:
        return httpprobe.request(ctx, method, url, headers=headers, verify=verify,
                                 timeout=float(_setting(ctx, "request_timeout", 15.0))), None
    except Exception as exc:  # httpx raises many types; describe_error classifies them
        timed_out, text = httpprobe.describe_error(exc)
        target, _, _ = httpprobe.resolved(ctx, url)
        return None, unreachable("edge", url + (f" (via {urlsplit(target).netloc})" if target != url else ""),
                                 text, timed_out=timed_out,
                                 commands=[Command(f"curl -sSI {url}")])


def _curl_i(url: str) -> Command:
    return Command(f"curl -sSI {url}")
