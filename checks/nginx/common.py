"""What the nginx checks share: the check ids, Studio's proxy facts, one bounded request to the check's hop
(``nginx.url``, or each frontend pod's nginx through the API server's proxy: ``studiodoctor.discovery.reach``),
the runbook's commands, and the channel database to probe."""

from __future__ import annotations

import time

from studiodoctor import studio_facts as facts
from studiodoctor.discovery import reach
from studiodoctor.model import Command, unreachable


# imported by the runner before any check starts (see studiodoctor.runner.preload)
SDK_IMPORTS = ("httpx",)

REACHABLE = "nginx.reachable"
APP_PROXY = "nginx.app_proxy"
STATIC = "nginx.static"
CONTENT_STORAGE = "nginx.content_storage"
CONTENT_DATABASES = "nginx.content_databases"
CONTENT_METHODS = "nginx.content_methods"
CONTENT_LISTING = "nginx.content_listing"
HEADERS = "nginx.headers"

STUDIO_PROXY_READ_TIMEOUT_S = facts.STUDIO_PROXY_READ_TIMEOUT_S
NGINX_DEFAULT_READ_TIMEOUT_S = facts.NGINX_DEFAULT_READ_TIMEOUT_S
CLOUDFLARE_TIMEOUT_S = facts.CLOUDFLARE_TIMEOUT_S
IMMUTABLE_MAX_AGE = facts.IMMUTABLE_MAX_AGE
STORAGE_CACHE_CONTROL = facts.STORAGE_CACHE_CONTROL
DATABASE_CACHE_CONTROL = facts.DATABASE_CACHE_CONTROL
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
CACHE_STATUS_HEADERS = ("x-cache-status", "cf-cache-status", "x-cache", "x-proxy-cache")
# Response headers that say nothing about the proxy (they differ on every request or by transport).
_VOLATILE = {"date", "content-length", "connection", "keep-alive", "transfer-encoding", "age"}
# Headers whose loss or change between the app and nginx matters to users or caches.
_SENSITIVE = {"x-frame-options", "x-content-type-options", "referrer-policy", "strict-transport-security",
              "content-security-policy", "vary", "set-cookie", "cache-control", "content-type", "location",
              "expires"}


def _base(ctx) -> str:
    """Where this check's requests go (``nginx.url``, or a pod through the API server), for the evidence."""
    return reach.address(ctx)


def _request(ctx, method: str, path: str, headers: dict | None = None, cap: float | None = None):
    """(response or None, seconds, exception or None), from the context's hop (studiodoctor.discovery.reach)."""
    from studiodoctor.probes import http as httpprobe

    t0 = time.monotonic()
    try:
        resp = reach.request(ctx, method, path, headers=headers, timeout=cap)
        return resp, httpprobe.network_seconds(resp, t0), None  # the wire's time, not our queue's
    except Exception as exc:
        return None, time.monotonic() - t0, exc


def _commands(ctx, *extra: Command) -> list[Command]:
    from studiodoctor.backends.kubectl import command as kubectl

    return [*extra,
            Command(kubectl(ctx.profile, "logs -l tier=frontend -c nginx-proxy --tail=100"), note="nginx's error log"),
            Command(kubectl(ctx.profile, "get pods -l tier=frontend -o name") + " | head -1 | xargs -I POD "
                    + kubectl(ctx.profile, "exec POD -c nginx-proxy -- nginx -T"),
                    note="the config nginx is running")]


def _curl(ctx, path: str, method: str = "HEAD") -> Command:
    return reach.curl(ctx, path, method)


def _no_answer(ctx, path: str, exc: Exception, seconds: float, **extra):
    from studiodoctor.probes import http as httpprobe

    timed_out, text = httpprobe.describe_error(exc)
    if timed_out:
        text = f"no answer within {seconds:.1f} s"
    return unreachable("nginx", _base(ctx) + path, text, timed_out=timed_out, commands=_commands(ctx),
                       hint="Is the nginx-proxy container running? It has no probes, so Kubernetes will not "
                            "restart it: read its logs.", **extra)


def _cookie_shape(headers) -> str:
    """The Set-Cookie headers without their values (session and CSRF tokens are secrets, and new on every
    request) nor their expiry (it moves with the clock): ``"csrftoken=***; Path=/; SameSite=Lax"``."""
    shapes = []
    for value in headers.get_list("set-cookie"):
        name, _, rest = value.partition("=")
        attrs = [a.strip() for a in rest.split(";")[1:] if a.strip()]
        attrs = [a for a in attrs if a.split("=", 1)[0].strip().lower() not in ("expires", "max-age")]
        shapes.append("; ".join([f"{name.strip()}=***", *attrs]))
    return ", ".join(sorted(shapes))


def _is_nginx_error_page(resp) -> bool:
    ctype = resp.headers.get("content-type", "")
    return "text/html" in ctype and b"nginx" in resp.content[:2000].lower()


def database_path(ctx) -> tuple[str, str, bool]:
    """(path of a channel database to probe, where it came from, whether the lookup itself failed):
    ``nginx.database_path``, else a channel from any source of the run (the public channel API through
    nginx, the bucket's listing, Studio's tables: ``studiodoctor.discovery.channel_databases``);
    ("", what was tried, failed) when none gives one."""
    from studiodoctor.discovery import channel_databases

    configured = str(ctx.setting("database_path", ""))
    if configured:
        return configured, "nginx.database_path", False
    found = channel_databases.channel_ids(ctx, [_base(ctx)])
    if found.ids:
        return channel_databases.database_path(found.ids[0]), f"a channel of {found.source}", False
    return "", "nginx.database_path is not set and no source named a channel: " + "; ".join(found.tried), found.failed
